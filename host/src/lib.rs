//! shelfstream: a stream processor for retail inventory analytics whose business logic runs as
//! hot-swappable WebAssembly plugins.
//!
//! # Layout
//! The host reads as sources -> plugin chain -> sinks:
//!
//! - [`sources`]: where records come from (the retail simulator, NDJSON files or stdin).
//! - [`pipeline`]: stages wired by named streams; each [`pipeline::Stage`] runs one plugin with
//!   event time (watermarks, lateness), isolation (re-create from last good state,
//!   quarantine) and hot swap. Dead letters live here too.
//! - [`plugin`]: the WIT bindings (the one `bindgen!`), loading and caching components, and
//!   running instances under memory and CPU limits.
//! - [`sinks`]: where results go (NDJSON files per stream; in memory for tests).
//! - [`run`]: `host run`: threads, the command channel, shutdown and saved state.
//! - [`shards`]: one pipeline per Kafka partition (or one local one), so partitions can move
//!   between hosts of a consumer group; [`checkpoint`]: their checkpoints in the object store.
//! - [`hotswap`]: watching the plugins folder.
//! - [`config`]: the strict pipeline config.
//! - [`harness`]: unit-testing a plugin in isolation.

/// mimalloc for every binary linking the host library (the `host` binary, tests, benchmarks): the
/// pipeline allocates and frees many small strings per event (lifting plugin outputs), where it
/// measured faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod checkpoint;
pub mod config;
pub mod harness;
pub mod hotswap;
pub mod pipeline;
pub mod plugin;
pub mod run;
pub mod shards;
pub mod sinks;
pub mod sources;
