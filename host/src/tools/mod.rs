//! Tools beside the runtime: what `host simulate`, `host demo`, the tests and the benchmarks
//! use to feed and look at a pipeline. `host run` never depends on them.

pub mod demo;
pub mod kafka;
pub mod queries;
pub mod simulate;
