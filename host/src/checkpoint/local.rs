//! The local shard's saved state: unpartitioned sources' positions and every stage's state, in
//! `<data_dir>/state/pipeline.json` (Kafka partitions have shard checkpoints: [`super::store`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::pipeline::StageCheckpoint;
use crate::sources::Offsets;

/// The local shard's state, persisted between runs in `<data_dir>/state/pipeline.json`
/// (Kafka partitions have shard checkpoints: [`crate::checkpoint`]).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SavedState {
    pub sources: BTreeMap<String, u64>,
    pub stages: BTreeMap<String, StageCheckpoint>,
    /// The next offset of every topic-partition the raw archive holds up to (older state files
    /// have none).
    #[serde(default)]
    pub archived: Offsets,
}

impl SavedState {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("state").join("pipeline.json")
    }

    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "corrupt saved state {} (delete it to start afresh)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SavedState::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn store(&self, data_dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(data_dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::create_dir_all(path.parent().expect("has parent"))
            .with_context(|| format!("creating {}", path.display()))?;
        std::fs::write(&tmp, serde_json::to_vec(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))
    }
}
