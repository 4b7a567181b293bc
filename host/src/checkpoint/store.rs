//! Shard checkpoints in the object store: `checkpoints/{group_id}/partition-{p}.json.gz`,
//! written with retries until stored.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::archive::{open_store, RawStoreConfig, RawStoreError};
use crate::pipeline::StageCheckpoint;
use crate::sources::Offsets;

/// One shard's resume point: offsets and stage state, consistent with each other.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardCheckpoint {
    /// The next offset to read per topic-partition (written `"topic:partition"`).
    pub offsets: Offsets,
    /// Stage name -> its state after every message before `offsets`.
    pub stages: BTreeMap<String, StageCheckpoint>,
    /// The newest record timestamp (ms) before `offsets` per topic-partition: raw objects
    /// written after this checkpoint are dated from about then on, which bounds what a new
    /// owner looks through to remove them (absent in older checkpoints: it looks through all).
    #[serde(default)]
    pub newest_record_ms: Offsets,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint store: {0}")]
    Open(#[from] RawStoreError),
    /// The object exists but does not decode (truncated, corrupted, not a checkpoint).
    #[error("corrupt shard checkpoint {object}: {error}")]
    Corrupt {
        object: String,
        error: serde_json::Error,
    },
}

/// Shard checkpoints of one consumer group, in an object store.
pub struct ShardStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// Where the store is, for messages: `s3://bucket/` or a local folder.
    location: String,
    runtime: tokio::runtime::Handle,
}

impl ShardStore {
    pub fn new(
        config: &RawStoreConfig,
        data_dir: &std::path::Path,
        group_id: &str,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, CheckpointError> {
        let location = match config.kind.as_str() {
            "s3" => format!("s3://{}/", config.bucket),
            _ => {
                let dir = config.path.clone().unwrap_or_else(|| data_dir.join("raw"));
                format!("{}/", dir.display())
            }
        };
        Ok(ShardStore {
            store: open_store(config, data_dir)?,
            prefix: format!("checkpoints/{group_id}"),
            location,
            runtime,
        })
    }

    /// The object's full name, e.g. `s3://retail-data/checkpoints/shelfstream/partition-0.json.gz`.
    pub fn describe(&self, path: &Path) -> String {
        format!("{}{path}", self.location)
    }

    /// Move a (corrupt) checkpoint out of the way, to `<name>.corrupt-<unix ms>`, so that the
    /// partition starts without it and the object is kept for a look. Returns the new name.
    pub fn set_aside(&self, partition: i32) -> String {
        let path = self.path(partition);
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let kept = Path::from(format!("{path}.corrupt-{ms}"));
        retry("setting a corrupt shard checkpoint aside", &path, || {
            self.runtime.block_on(async {
                self.store.copy(&path, &kept).await?;
                self.store.delete(&path).await
            })
        });
        self.describe(&kept)
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
                        object: self.describe(&path),
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

/// Give every partition of `ends` without a checkpoint an empty one at that offset: its shard
/// then starts there instead of at the beginning. Returns how many partitions were set.
pub fn start_at(store: &ShardStore, ends: &Offsets) -> Result<usize, CheckpointError> {
    let mut by_partition: BTreeMap<i32, Offsets> = BTreeMap::new();
    for (tp, &offset) in ends {
        by_partition
            .entry(tp.partition)
            .or_default()
            .insert(tp.clone(), offset);
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
    use crate::sources::TopicPartition;

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
            offsets: Offsets::from([(TopicPartition::new("t", 1), 42)]),
            ..ShardCheckpoint::default()
        };
        store.store(1, &checkpoint);
        let loaded = store.load(1).unwrap().unwrap();
        assert_eq!(loaded.offsets[&TopicPartition::new("t", 1)], 42);
        assert!(store.load(0).unwrap().is_none());
        assert!(dir
            .path()
            .join("raw/checkpoints/g/partition-1.json.gz")
            .is_file());
    }
}
