//! Shard checkpoints: what lets another host of the same consumer group take a partition over.
//!
//! A Kafka source's partitions are the shards of the pipeline: every message of one store and
//! product lands in the same partition number of every retail topic (the topics are
//! co-partitioned), so partition `p` of all topics goes through its own chain of plugin instances,
//! and its state is partition-local. A shard's checkpoint holds the next offset of each of its
//! topic-partitions and the state of each of its stages, saved together after every sink flushed.
//! It lives in the object store (the same as the raw batches, S3 when hosts share work) at
//!
//! `checkpoints/{group_id}/partition-{p}.json.gz` (gzip-compressed JSON)
//!
//! so whichever host the group assigns `p` to resumes it exactly where the last owner stopped:
//! the state and the offsets always match. Writes are retried until they succeed (an object
//! store outage slows the pipeline, it never loses a checkpoint).
//!
//! - [`coordinator`]: when and in which order checkpoints are taken (sinks and archive first);
//! - [`local`]: the local shard's state file (simulator and NDJSON sources);
//! - [`store`]: shard checkpoints of Kafka partitions in the object store.

mod coordinator;
mod local;
mod store;

pub use coordinator::Checkpoints;
pub use local::SavedState;
pub use store::{start_at, CheckpointError, ShardCheckpoint, ShardStore};
