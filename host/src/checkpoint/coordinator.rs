//! The checkpoint coordinator: every sink flushed (and every raw batch archived), then each
//! shard's stage state saved together with its sources' positions, then the offsets committed.
//! Checkpoints are written on a background thread while the pipeline goes on, one at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::Sender;

use super::{CheckpointError, SavedState, ShardCheckpoint, ShardStore};
use crate::archive::RawStore;
use crate::pipeline::{OnBadState, ShardId, Shards};
use crate::sinks::Sink;
use crate::sources::{Offsets, Position, TopicPartition};

/// Checkpoints: every sink flushed, then each shard's stage state saved together with its
/// sources' positions (the local shard in one file, each Kafka partition as a shard checkpoint),
/// then (Kafka) the offsets committed to the consumer group.
pub struct Checkpoints {
    data_dir: PathBuf,
    /// Where checkpointed offsets are committed to the consumer group (Kafka sources).
    commits: Option<Sender<Offsets>>,
    pub every: Duration,
    /// Unpartitioned sources' positions (the local shard).
    sources: BTreeMap<String, u64>,
    /// The local shard's archived records: the next offset per topic-partition.
    archived: Offsets,
    /// Per Kafka partition (shard): the next offset to read of each of its topic-partitions.
    offsets: BTreeMap<i32, Offsets>,
    /// Per Kafka partition: the newest record timestamp processed per topic-partition.
    record_times: BTreeMap<i32, Offsets>,
    /// Partitions that processed a batch since their last checkpoint.
    dirty: BTreeSet<i32>,
    /// Raw batches of partitioned sources, stored before any checkpoint covers them.
    pub archive: Option<RawStore>,
    shard_store: Option<Arc<ShardStore>>,
    /// The checkpoint being written in the background.
    in_flight: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Checkpoints {
    /// `saved`: the local shard's source positions from the last run. `shard_store`: where
    /// partitions are checkpointed (partitioned sources only), `archive` their raw batches,
    /// `commits` the group the offsets go to.
    pub fn new(
        data_dir: PathBuf,
        (saved, archived): (BTreeMap<String, u64>, Offsets),
        shard_store: Option<Arc<ShardStore>>,
        archive: Option<RawStore>,
        commits: Option<Sender<Offsets>>,
    ) -> Self {
        Checkpoints {
            data_dir,
            commits,
            every: Duration::from_secs(1),
            sources: saved,
            archived,
            offsets: BTreeMap::new(),
            record_times: BTreeMap::new(),
            dirty: BTreeSet::new(),
            archive,
            shard_store,
            in_flight: None,
        }
    }

    /// Whether checkpoints are taken while running (partitioned sources), not only at the end.
    pub fn periodic(&self) -> bool {
        self.commits.is_some()
    }

    /// A source batch went through the pipeline: its source may resume after it.
    pub fn record(&mut self, source: &str, position: Position, newest_ms: Option<i64>) {
        match position {
            Position::Offset { partition, next } => {
                let p = partition.partition;
                if let Some(ms) = newest_ms {
                    let newest = self
                        .record_times
                        .entry(p)
                        .or_default()
                        .entry(partition.clone())
                        .or_insert(ms);
                    *newest = (*newest).max(ms);
                }
                self.offsets.entry(p).or_default().insert(partition, next);
                self.dirty.insert(p);
            }
            Position::Count(n) => {
                self.sources.insert(source.to_string(), n);
            }
        }
    }

    /// Records of the local shard went to the archive: what it holds after a checkpoint.
    pub fn archived(&mut self, records: &[crate::plugin::RawRecord]) {
        for r in records {
            let next = (self.archived)
                .entry(TopicPartition::new(r.topic.as_str(), r.partition))
                .or_insert(0);
            *next = (*next).max(r.offset + 1);
        }
    }

    /// Open the shards of newly assigned partitions from their checkpoints; the offsets they
    /// resume at.
    pub fn assign(
        &mut self,
        shards: &mut Shards,
        partitions: &[i32],
        topics: &[String],
    ) -> anyhow::Result<Offsets> {
        let store = self
            .shard_store
            .as_ref()
            .context("partitions assigned without a checkpoint store")?;
        let mut resume = BTreeMap::new();
        for &p in partitions {
            let shard = ShardId::Partition(p);
            if shards.get_mut(shard).is_some() {
                resume.extend(self.offsets.get(&p).cloned().unwrap_or_default());
                continue; // still open (never revoked)
            }
            let checkpoint = match store.load(p) {
                Ok(checkpoint) => checkpoint.unwrap_or_default(),
                Err(e @ CheckpointError::Corrupt { .. })
                    if shards.on_bad_state() == OnBadState::StartEmpty =>
                {
                    let kept = store.set_aside(p);
                    tracing::error!(partition = p, error = %e, kept_as = %kept,
                        "shard checkpoint unreadable; set aside, the partition is read again from the beginning of its topics with empty state (runtime.on_bad_state = \"start-empty\")");
                    ShardCheckpoint::default()
                }
                Err(e @ CheckpointError::Corrupt { .. }) => anyhow::bail!(
                    "{e}. Partition {p} is not started (runtime.on_bad_state = \"stop\"), and the object is left as it is. Choices: put back a good copy of the object; or set runtime.on_bad_state = \"start-empty\" to set it aside and read partition {p} again from the beginning of its topics with empty state (ClickHouse rows are replaced by their identity; alerts and NDJSON rows are written again)"
                ),
                Err(e) => {
                    return Err(e).with_context(|| format!("loading the checkpoint of partition {p}"))
                }
            };
            tracing::info!(partition = p, offsets = ?checkpoint.offsets, stages = checkpoint.stages.len(),
                "opening partition shard");
            if let Some(raw) = &self.archive {
                // Raw objects from each topic-partition's saved offset on were stored after the
                // checkpoint and are read (and stored) again: remove them. Without a saved
                // offset that is from 0: a predecessor killed before the partition's first
                // checkpoint may have stored some (found by the chaos soak).
                let mut next_of: BTreeMap<TopicPartition, i64> = topics
                    .iter()
                    .map(|t| (TopicPartition::new(t.as_str(), p), 0))
                    .collect();
                next_of.extend(checkpoint.offsets.iter().map(|(tp, &n)| (tp.clone(), n)));
                for (tp, next) in next_of {
                    let since = checkpoint.newest_record_ms.get(&tp).copied();
                    let deleted = raw
                        .discard_after_blocking(&tp.topic, p, next, since)
                        .with_context(|| format!("removing raw batches of {tp} after {next}"))?;
                    if deleted > 0 {
                        tracing::info!(topic = %tp.topic, partition = p, next, deleted,
                            "removed raw batches written after the last checkpoint");
                    }
                }
            }
            let pipeline = shards
                .open(shard, checkpoint.stages)
                .with_context(|| format!("starting the stages of partition {p}"))?;
            for topic in topics {
                pipeline.expect_lanes(topic, &[p]);
            }
            resume.extend(checkpoint.offsets.clone());
            self.offsets.insert(p, checkpoint.offsets);
            self.record_times.insert(p, checkpoint.newest_record_ms);
        }
        Ok(resume)
    }

    /// Checkpoint and close the shards of revoked partitions; their offsets.
    pub fn revoke(
        &mut self,
        shards: &mut Shards,
        sinks: &mut dyn Sink,
        partitions: &[i32],
    ) -> anyhow::Result<Offsets> {
        self.settle()?;
        sinks.flush().context("flushing outputs")?;
        if let Some(raw) = &mut self.archive {
            raw.wait();
        }
        let mut offsets = Offsets::new();
        for &p in partitions {
            self.save_partition(shards, p)?;
            shards.close(ShardId::Partition(p));
            self.dirty.remove(&p);
            offsets.extend(self.offsets.remove(&p).unwrap_or_default());
            self.record_times.remove(&p);
        }
        Ok(offsets)
    }

    /// Close the shards of partitions another host owns now, without saving anything: their
    /// state and offsets are stale. (A checkpoint already being written is waited for first; it
    /// was taken before the loss.)
    pub fn drop_lost(&mut self, shards: &mut Shards, partitions: &[i32]) -> anyhow::Result<()> {
        self.settle()?;
        for &p in partitions {
            shards.close(ShardId::Partition(p));
            if let Some(raw) = &mut self.archive {
                let dropped = raw.forget(p);
                tracing::debug!(
                    partition = p,
                    records = dropped,
                    "raw records of a lost partition dropped before upload"
                );
            }
            self.dirty.remove(&p);
            self.offsets.remove(&p);
            self.record_times.remove(&p);
        }
        // Uploads of the lost partitions already under way finish before anyone reopens them:
        // an object stored after the reopening's removal of what follows the checkpoint would
        // cover offsets that are read (and archived) again. (Found by the chaos soak: a broker
        // restart during an object-store outage.)
        if let Some(raw) = &mut self.archive {
            raw.wait();
        }
        Ok(())
    }

    fn save_partition(&mut self, shards: &mut Shards, p: i32) -> anyhow::Result<()> {
        if let (Some(store), Some(checkpoint)) = (&self.shard_store, self.snapshot(shards, p)?) {
            store.store(p, &checkpoint);
        }
        Ok(())
    }

    /// The partition's checkpoint as of now (its shard's state and offsets).
    fn snapshot(&self, shards: &mut Shards, p: i32) -> anyhow::Result<Option<ShardCheckpoint>> {
        let Some(pipeline) = shards.get_mut(ShardId::Partition(p)) else {
            return Ok(None);
        };
        let checkpoint = ShardCheckpoint {
            offsets: self.offsets.get(&p).cloned().unwrap_or_default(),
            newest_record_ms: self.record_times.get(&p).cloned().unwrap_or_default(),
            stages: pipeline
                .save()
                .with_context(|| format!("saving the plugin state of partition {p}"))?,
        };
        if tracing::enabled!(tracing::Level::DEBUG) {
            let lanes: BTreeMap<&String, (&BTreeMap<i32, i64>, i64)> = checkpoint
                .stages
                .iter()
                .map(|(name, c)| (name, (&c.lanes, c.watermark)))
                .collect();
            tracing::debug!(partition = p, offsets = ?checkpoint.offsets, lanes = ?lanes, "checkpoint");
        }
        Ok(Some(checkpoint))
    }

    /// Wait for the checkpoint being written in the background, if any.
    fn settle(&mut self) -> anyhow::Result<()> {
        match self.in_flight.take() {
            Some(writer) => writer
                .join()
                .map_err(|_| anyhow::anyhow!("the checkpoint writer panicked"))?,
            None => Ok(()),
        }
    }

    /// Take a checkpoint: every stage's state now, written once the sinks hold everything
    /// written before it. The waiting and writing happen on a background thread while the
    /// pipeline goes on (one checkpoint at a time, in order); [`Checkpoints::settle`] waits.
    pub fn take(&mut self, shards: &mut Shards, sinks: &mut dyn Sink) -> anyhow::Result<()> {
        self.settle()?;
        let mut durable = sinks.start_flush().context("flushing outputs")?;
        if let Some(raw) = &mut self.archive {
            durable.push(raw.start_wait());
        }
        let mut local = None;
        let mut partitions = Vec::new();
        for shard in shards.ids() {
            match shard {
                ShardId::Local => {
                    let pipeline = shards.get_mut(shard).expect("listed");
                    let stages = pipeline.save().context("saving plugin state")?;
                    local = Some(SavedState {
                        sources: self.sources.clone(),
                        stages,
                        archived: self.archived.clone(),
                    });
                }
                ShardId::Partition(p) if self.dirty.contains(&p) => {
                    if let Some(checkpoint) = self.snapshot(shards, p)? {
                        partitions.push((p, checkpoint));
                    }
                }
                ShardId::Partition(_) => {}
            }
        }
        self.dirty.clear();
        let commits: Offsets = self
            .offsets
            .values()
            .flatten()
            .map(|(k, &v)| (k.clone(), v))
            .collect();
        let (data_dir, store, sender) = (
            self.data_dir.clone(),
            self.shard_store.clone(),
            self.commits.clone(),
        );
        let writer = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || -> anyhow::Result<()> {
                for wait in durable {
                    wait();
                }
                if let Some(local) = local {
                    local.store(&data_dir)?;
                }
                if let Some(store) = &store {
                    for (p, checkpoint) in &partitions {
                        store.store(*p, checkpoint);
                    }
                }
                if let Some(sender) = sender {
                    if !commits.is_empty() {
                        let _ = sender.send(commits);
                    }
                }
                Ok(())
            })
            .context("starting the checkpoint writer")?;
        self.in_flight = Some(writer);
        Ok(())
    }

    /// A checkpoint, written before returning.
    pub fn take_now(&mut self, shards: &mut Shards, sinks: &mut dyn Sink) -> anyhow::Result<()> {
        self.take(shards, sinks)?;
        self.settle()
    }
}
