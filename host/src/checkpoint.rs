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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::pipeline::StageCheckpoint;
use crate::sinks::raw::{open_store, RawStoreConfig, RawStoreError};

/// One shard's resume point: offsets and stage state, consistent with each other.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardCheckpoint {
    /// `topic:partition` -> the next offset to read.
    pub offsets: BTreeMap<String, i64>,
    /// Stage name -> its state after every message before `offsets`.
    pub stages: BTreeMap<String, StageCheckpoint>,
    /// `topic:partition` -> the newest record timestamp (ms) before `offsets`: raw objects
    /// written after this checkpoint are dated from about then on, which bounds what a new
    /// owner looks through to remove them (absent in older checkpoints: it looks through all).
    #[serde(default)]
    pub newest_record_ms: BTreeMap<String, i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint store: {0}")]
    Open(#[from] RawStoreError),
    #[error("corrupt checkpoint {path} (delete it to restart the partition from the beginning): {error}")]
    Corrupt {
        path: String,
        error: serde_json::Error,
    },
}

/// Shard checkpoints of one consumer group, in an object store.
pub struct ShardStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    runtime: tokio::runtime::Handle,
}

impl ShardStore {
    pub fn new(
        config: &RawStoreConfig,
        data_dir: &std::path::Path,
        group_id: &str,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, CheckpointError> {
        Ok(ShardStore {
            store: open_store(config, data_dir)?,
            prefix: format!("checkpoints/{group_id}"),
            runtime,
        })
    }

    pub fn path(&self, partition: i32) -> Path {
        Path::from(format!("{}/partition-{partition}.json.gz", self.prefix))
    }

    /// The partition's checkpoint, or `None` if it was never checkpointed. Retries while the
    /// store is unreachable. Call from a thread outside the runtime.
    pub fn load(&self, partition: i32) -> Result<Option<ShardCheckpoint>, CheckpointError> {
        let path = self.path(partition);
        let bytes = retry("loading a shard checkpoint", &path, || {
            self.runtime.block_on(async {
                match self.store.get(&path).await {
                    Ok(got) => got.bytes().await.map(Some),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
        });
        bytes
            .map(|b| {
                serde_json::from_reader(flate2::read::GzDecoder::new(&b[..])).map_err(|error| {
                    CheckpointError::Corrupt {
                        path: path.to_string(),
                        error,
                    }
                })
            })
            .transpose()
    }

    /// Store the partition's checkpoint, replacing the previous one; retries until stored.
    pub fn store(&self, partition: i32, checkpoint: &ShardCheckpoint) {
        let path = self.path(partition);
        let json = serde_json::to_vec(checkpoint).expect("checkpoints serialise");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &json).expect("in-memory write");
        let body = gz.finish().expect("in-memory write");
        retry("storing a shard checkpoint", &path, || {
            let payload = PutPayload::from(body.clone());
            self.runtime
                .block_on(self.store.put(&path, payload))
                .map(|_| ())
        })
    }
}

/// Give every partition of `ends` (`topic:partition` -> offset) without a checkpoint an empty
/// one at that offset: its shard then starts there instead of at the beginning. Returns how many
/// partitions were set.
pub fn start_at(
    store: &ShardStore,
    ends: &BTreeMap<String, i64>,
) -> Result<usize, CheckpointError> {
    let mut by_partition: BTreeMap<i32, BTreeMap<String, i64>> = BTreeMap::new();
    for (key, &offset) in ends {
        if let Some(p) = key.rsplit_once(':').and_then(|(_, p)| p.parse().ok()) {
            by_partition
                .entry(p)
                .or_default()
                .insert(key.clone(), offset);
        }
    }
    let mut set = 0;
    for (p, offsets) in by_partition {
        if store.load(p)?.is_none() {
            store.store(
                p,
                &ShardCheckpoint {
                    offsets,
                    ..ShardCheckpoint::default()
                },
            );
            set += 1;
        }
    }
    Ok(set)
}

fn retry<T>(
    what: &'static str,
    path: &Path,
    mut f: impl FnMut() -> Result<T, object_store::Error>,
) -> T {
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 1u32;
    loop {
        match f() {
            Ok(v) => {
                if attempt > 1 {
                    tracing::info!(%path, attempt, what, "object store answered after retries");
                }
                return v;
            }
            Err(error) => {
                tracing::warn!(%path, attempt, retry_in_ms = backoff.as_millis() as u64, %error, what,
                    "object store failed; retrying (the pipeline waits, nothing is dropped)");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = ShardStore::new(
            &RawStoreConfig::default(),
            dir.path(),
            "g",
            rt.handle().clone(),
        )
        .unwrap();
        assert!(store.load(1).unwrap().is_none());
        let checkpoint = ShardCheckpoint {
            offsets: BTreeMap::from([("t:1".to_string(), 42)]),
            ..ShardCheckpoint::default()
        };
        store.store(1, &checkpoint);
        assert_eq!(store.load(1).unwrap().unwrap().offsets["t:1"], 42);
        assert!(store.load(0).unwrap().is_none());
        assert!(dir
            .path()
            .join("raw/checkpoints/g/partition-1.json.gz")
            .is_file());
    }
}
