//! shelfstream: a stream processor for retail inventory analytics whose business logic runs as
//! hot-swappable WebAssembly plugins.
//!
//! # Layout
//! The host reads as sources -> plugin chain -> sinks, wired by the runtime:
//!
//! - [`sources`]: where records come from, behind the [`sources::Source`] trait: the Kafka
//!   consumer group ([`sources::kafka`], with its group events on their own channel), NDJSON
//!   files or stdin, and the retail simulator; typed positions ([`sources::TopicPartition`],
//!   [`sources::Position`]).
//! - [`plugin`]: the plugin runtime: the WIT bindings (the one `bindgen!`), loading and caching
//!   components, the plugins folder ([`plugin::registry`]), instances under memory and CPU
//!   limits.
//! - [`pipeline`]: stages wired by named streams; each [`pipeline::Stage`] runs one plugin with
//!   event time (watermarks, lateness), isolation (re-create from last good state, quarantine)
//!   and hot swap; dead letters; one pipeline per shard ([`pipeline::shards`]). A push returns
//!   its [`pipeline::Outputs`]; the pipeline writes nothing itself.
//! - [`sinks`]: where results go: NDJSON files, ClickHouse ([`sinks::clickhouse`]), Kafka
//!   alerts and dead letters, memory (tests).
//! - [`archive`]: raw batches of partitioned sources to object storage (S3/MinIO or a folder).
//! - [`checkpoint`]: the coordinator (sinks and archive durable, then state with positions,
//!   then offsets committed), the local saved state, shard checkpoints in the object store.
//! - [`runtime`]: `host run`: wires the above, runs the pipeline thread, stops cleanly.
//! - [`observe`]: metrics, health, the live page and `host top`, from one snapshot the
//!   pipeline thread publishes every second; [`meter`]: the counters stages and sinks keep.
//! - [`hotswap`]: watching the plugins folder and the config file.
//! - [`config`]: the strict pipeline config; [`units`]: durations and sizes; [`topics`]: the
//!   retail topic names.
//! - [`harness`]: unit-testing a plugin in isolation.
//!
//! Beside the runtime, never used by it: [`sim`], the retail simulator with ground truth, and
//! [`tools`], what `host simulate`, `host demo` and the benchmarks use (a Kafka producer, topic
//! admin, the demo, the sample queries).

/// mimalloc for every binary linking the host library (the `host` binary, tests, benchmarks): the
/// pipeline allocates and frees many small strings per event (lifting plugin outputs), where it
/// measured faster than the system allocator. Built without transparent huge pages (the
/// `no_thp` feature in host/Cargo.toml): zeroing 2 MiB pages on every fault cost more than the
/// pages saved.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod sources;

pub mod plugin;

pub mod pipeline;

pub mod sinks;

pub mod archive;
pub mod checkpoint;

pub mod replay;
pub mod runtime;

pub mod meter;
pub mod observe;

pub mod config;
pub mod diff;
pub mod harness;
pub mod hotswap;
pub mod topics;
pub mod units;

pub mod sim;
pub mod tools;
