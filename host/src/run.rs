//! `host run`: wire sources -> pipeline -> sinks, watch the plugins folder, stop cleanly.
//!
//! Threads: each source on its own thread, the pipelines on one thread (plugin calls are
//! synchronous CPU work), the plugin watcher on the debouncer's thread (compiling off the hot
//! path). They meet in one bounded channel of [`Command`]s, so a hot swap, a rebalance or a
//! checkpoint lands exactly between two batches. There is one pipeline per shard (see
//! [`crate::shards`]): the local one for unpartitioned sources, one per assigned Kafka partition.
//! On SIGINT/SIGTERM sources stop at a batch boundary, the pipelines drain what is queued, flush
//! the sinks and save every stage's state with every source's position (local shard:
//! `<data_dir>/state/pipeline.json`; Kafka partitions: shard checkpoints in the object store);
//! the next run resumes from there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::checkpoint::{ShardCheckpoint, ShardStore};
use crate::config::PipelineConfig;
use crate::pipeline::{Batch, StageCheckpoint};
use crate::plugin::{LoadedPlugin, PluginEngine};
use crate::shards::{ShardId, Shards, SharedSink};
use crate::sinks::{clickhouse, Fanout, FileSink, Sink};
use crate::sources::{self, SourceBatch, StopFlag};

/// Everything the pipeline thread is told, in order.
pub enum Command {
    Batch(SourceBatch),
    SourceDone {
        source: String,
        error: Option<String>,
    },
    /// A new, compiled and validated plugin version to swap in at the next batch boundary.
    Swap(Arc<LoadedPlugin>),
    /// A plugin file was removed.
    Unload(String),
    /// The pipeline config file changed: the stages it now describes.
    Reconfigure(Vec<crate::pipeline::StageSpec>),
    /// The consumer group gave this host `partitions` of `topics`: open their shards from their
    /// checkpoints and reply with the offset each `topic:partition` resumes at (absent: the
    /// beginning).
    Assign {
        source: String,
        partitions: Vec<i32>,
        topics: Vec<String>,
        reply: std::sync::mpsc::Sender<Result<BTreeMap<String, i64>, String>>,
    },
    /// The consumer group takes `partitions` away: flush, checkpoint and close their shards and
    /// reply with their offsets (to commit). `end_of_input`: the source ended on its own, so
    /// windows may close first (`close_windows_at_end`). `lost`: the group already gave them to
    /// another host (this one was silent longer than the session timeout): close them without
    /// a checkpoint, which would overwrite the new owner's, and reply with no offsets.
    Revoke {
        source: String,
        partitions: Vec<i32>,
        end_of_input: bool,
        lost: bool,
        reply: std::sync::mpsc::Sender<BTreeMap<String, i64>>,
    },
}

pub struct RunOptions {
    pub plugins_dir: PathBuf,
    pub config: PipelineConfig,
    pub watch: bool,
    /// The config file, watched for parameter changes when `watch` is on.
    pub config_path: Option<PathBuf>,
    /// Print a live summary line every second.
    pub summary: bool,
}

/// What a run did, also printed at the end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub records_in: u64,
    pub outputs: BTreeMap<String, u64>,
    pub dead_letters: u64,
    /// Alerts emitted by any stage.
    pub alerts: u64,
    pub swaps: u64,
    pub failures: u64,
    pub elapsed_secs: f64,
    /// Seconds from the start of the run to the first partition assignment (shards open, the
    /// consumer may fetch), to the first batch and to the end of the last batch: the busy span
    /// is without start-up, joining a consumer group and idle waits.
    pub assigned_secs: Option<f64>,
    pub first_batch_secs: Option<f64>,
    pub last_batch_secs: Option<f64>,
    pub source_errors: Vec<String>,
}

/// The local shard's state, persisted between runs in `<data_dir>/state/pipeline.json`
/// (Kafka partitions have shard checkpoints: [`crate::checkpoint`]).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SavedState {
    pub sources: BTreeMap<String, u64>,
    pub stages: BTreeMap<String, StageCheckpoint>,
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

/// The plugins found in a folder: the ones that loaded, and why the others did not.
#[derive(Default)]
pub struct PluginSet {
    pub loaded: BTreeMap<String, Arc<LoadedPlugin>>,
    pub failed: BTreeMap<String, String>,
}

/// Load every `*.wasm` directly in `dir`. A plugin that fails to load is reported and skipped;
/// only a stage that needs it makes the run fail.
pub fn load_plugins(engine: &PluginEngine, dir: &Path) -> anyhow::Result<PluginSet> {
    let mut loaded = BTreeMap::new();
    let mut failed = BTreeMap::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading the plugins folder {}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    paths.sort();
    for path in paths {
        match engine.load(&path) {
            Ok(p) => {
                tracing::info!(plugin = %p.name, version = %p.version, kind = ?p.info.kind, "plugin loaded");
                loaded.insert(p.name.clone(), p);
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "plugin rejected");
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                failed.insert(name, e.to_string());
            }
        }
    }
    Ok(PluginSet { loaded, failed })
}

/// Run the pipeline until every source ends or `shutdown` resolves.
pub async fn run(
    opts: RunOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<RunReport> {
    let runtime = opts.config.runtime.clone();
    let data_dir = runtime.data_dir.clone();
    let engine = Arc::new(PluginEngine::new(Some(data_dir.join("cache")))?);
    let PluginSet {
        loaded: plugins,
        failed,
    } = load_plugins(&engine, &opts.plugins_dir)?;
    let saved = SavedState::load(&data_dir)?;

    let specs = opts.config.stage_specs()?;
    for spec in &specs {
        if plugins.contains_key(&spec.plugin) {
            continue;
        }
        match failed.get(&spec.plugin) {
            Some(why) => bail!("stage {:?} needs plugin {:?}, which failed to load: {why}", spec.name, spec.plugin),
            None => bail!(
                "stage {:?} needs plugin {:?}: there is no {}/{}.wasm (build plugins with plugins/build.sh)",
                spec.name, spec.plugin, opts.plugins_dir.display(), spec.plugin
            ),
        }
    }
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if runtime.file_outputs {
        sinks.push(Box::new(FileSink::new(&data_dir.join("out"))?));
    }
    if let Some(ch) = &opts.config.clickhouse {
        let client = ch.client();
        let applied = clickhouse::migrate_when_reachable(&client, &ch.database, &ch.url)
            .await
            .with_context(|| format!("applying sql/schema.sql to ClickHouse at {}", ch.url))?;
        tracing::info!(url = %ch.url, statements = applied, "ClickHouse schema applied");
        for source in &opts.config.sources {
            if let crate::config::SourceConfig::Simulator(sim) = source {
                let sim = crate::sources::simulator::Simulator::new(sim, 0);
                let (stores, products) = clickhouse::load_dimensions(&client, &ch.database, &sim)
                    .await
                    .context("loading store and product dimensions into ClickHouse")?;
                tracing::info!(stores, products, "dimensions loaded into ClickHouse");
            }
        }
        let sink = clickhouse::ClickHouseSink::new(ch.clone(), tokio::runtime::Handle::current())
            .map_err(anyhow::Error::msg)?;
        sinks.push(Box::new(sink));
    }
    if let Some(k) = &opts.config.kafka_sink {
        sinks.push(Box::new(crate::sinks::kafka::KafkaSink::new(k.clone())?));
    }
    let used: BTreeMap<String, Arc<LoadedPlugin>> = specs
        .iter()
        .map(|s| (s.plugin.clone(), plugins[&s.plugin].clone()))
        .collect();
    let mut shards = Shards::new(specs, used, SharedSink::new(Box::new(Fanout(sinks))));
    let has_local = opts
        .config
        .sources
        .iter()
        .any(|s| !matches!(s, crate::config::SourceConfig::Kafka(_)));
    if has_local {
        shards.open(ShardId::Local, saved.stages)?;
    }

    // Partitioned sources: raw batches go to object storage before they are checkpointed, and
    // each partition's shard is checkpointed there too.
    let kafka = opts.config.sources.iter().find_map(|s| match s {
        crate::config::SourceConfig::Kafka(k) => Some(k.clone()),
        _ => None,
    });
    let (raw, shard_store) = match &kafka {
        Some(k) => {
            let config = opts.config.raw_store.clone().unwrap_or_default();
            let handle = tokio::runtime::Handle::current();
            let raw = crate::sinks::raw::RawStore::new(&config, &data_dir, handle.clone())?;
            let store = ShardStore::new(&config, &data_dir, &k.group_id, handle)?;
            (Some(raw), Some(Arc::new(store)))
        }
        None => (None, None),
    };

    let (tx, rx) = mpsc::channel::<Command>(8);
    let stop = StopFlag::default();
    let mut source_threads = Vec::new();
    let mut commit_sender = None;
    for source in &opts.config.sources {
        let position = saved.sources.get(source.name()).copied().unwrap_or(0);
        if position > 0 {
            tracing::info!(source = %source.name(), position, "resuming source");
        }
        let commits = match source {
            crate::config::SourceConfig::Kafka(_) => {
                let (commit_tx, commit_rx) = std::sync::mpsc::channel();
                commit_sender = Some(commit_tx);
                Some(commit_rx)
            }
            _ => None,
        };
        source_threads.push(sources::spawn(
            source.clone(),
            runtime.batch_size.max(1),
            position,
            tx.clone(),
            stop.clone(),
            commits,
        )?);
    }
    let _watcher = if opts.watch {
        Some(crate::hotswap::watch(
            &opts.plugins_dir,
            engine.clone(),
            tx.clone(),
        )?)
    } else {
        None
    };
    let _config_watcher = match (&opts.config_path, opts.watch) {
        (Some(path), true) => Some(crate::hotswap::watch_config(path, tx.clone())?),
        _ => None,
    };
    drop(tx);

    let n_sources = opts.config.sources.len();
    let checkpoints = Checkpoints {
        data_dir: data_dir.clone(),
        commit_sender,
        every: Duration::from_secs(1),
        sources: saved.sources,
        offsets: BTreeMap::new(),
        record_times: BTreeMap::new(),
        dirty: BTreeSet::new(),
        raw,
        shard_store,
        in_flight: None,
    };
    let summary = opts.summary;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let thread_stop = stop.clone();
    let worker = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            let result = pipeline_loop(
                shards,
                rx,
                n_sources,
                checkpoints,
                summary,
                &thread_stop,
                runtime.close_windows_at_end,
            );
            let _ = done_tx.send(());
            result
        })?;

    tokio::select! {
        _ = shutdown => {
            tracing::info!("stopping: draining in-flight batches, then saving state");
            stop.stop();
        }
        _ = done_rx => {}
    }
    let (mut shards, mut checkpoints, mut report) =
        tokio::task::spawn_blocking(move || worker.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))??;
    for t in source_threads {
        let _ = t.join();
    }
    // Sinks may block on their own I/O (ClickHouse retries): not on a runtime thread.
    let dead_letters = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        checkpoints.take_now(&mut shards)?;
        Ok(shards.retired.dead_letters + shards.iter().map(|(_, p)| p.dead_letters).sum::<u64>())
    })
    .await??;
    report.dead_letters = dead_letters;
    tracing::info!(state = %SavedState::path(&data_dir).display(), "state saved");
    Ok(report)
}

/// Checkpoints: every sink flushed, then each shard's stage state saved together with its
/// sources' positions (the local shard in one file, each Kafka partition as a shard checkpoint),
/// then (Kafka) the offsets committed to the consumer group.
struct Checkpoints {
    data_dir: PathBuf,
    commit_sender: Option<std::sync::mpsc::Sender<BTreeMap<String, i64>>>,
    every: Duration,
    /// Unpartitioned sources' positions (the local shard).
    sources: BTreeMap<String, u64>,
    /// Per Kafka partition (shard): `topic:partition` -> the next offset to read.
    offsets: BTreeMap<i32, BTreeMap<String, i64>>,
    /// Per Kafka partition: `topic:partition` -> the newest record timestamp processed.
    record_times: BTreeMap<i32, BTreeMap<String, i64>>,
    /// Partitions that processed a batch since their last checkpoint.
    dirty: BTreeSet<i32>,
    /// Raw batches of partitioned sources, stored before any checkpoint covers them.
    raw: Option<crate::sinks::raw::RawStore>,
    shard_store: Option<Arc<ShardStore>>,
    /// The checkpoint being written in the background.
    in_flight: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Checkpoints {
    /// A source batch went through the pipeline: its source may resume after it.
    fn record(
        &mut self,
        source: &str,
        position: u64,
        offset: Option<(String, i64)>,
        newest_ms: Option<i64>,
    ) {
        match offset {
            Some((key, next)) => {
                let partition = key
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse().ok())
                    .unwrap_or_default();
                if let Some(ms) = newest_ms {
                    let newest = self
                        .record_times
                        .entry(partition)
                        .or_default()
                        .entry(key.clone())
                        .or_insert(ms);
                    *newest = (*newest).max(ms);
                }
                self.offsets.entry(partition).or_default().insert(key, next);
                self.dirty.insert(partition);
            }
            None => {
                self.sources.insert(source.to_string(), position);
            }
        }
    }

    /// Open the shards of newly assigned partitions from their checkpoints; the offsets they
    /// resume at.
    fn assign(
        &mut self,
        shards: &mut Shards,
        partitions: &[i32],
        topics: &[String],
    ) -> anyhow::Result<BTreeMap<String, i64>> {
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
            let checkpoint = store
                .load(p)
                .with_context(|| format!("loading the checkpoint of partition {p}"))?
                .unwrap_or_default();
            tracing::info!(partition = p, offsets = ?checkpoint.offsets, stages = checkpoint.stages.len(),
                "opening partition shard");
            if let Some(raw) = &self.raw {
                for (key, &next) in &checkpoint.offsets {
                    let Some((topic, _)) = key.rsplit_once(':') else {
                        continue;
                    };
                    let since = checkpoint.newest_record_ms.get(key).copied();
                    let deleted = raw
                        .discard_after_blocking(topic, p, next, since)
                        .with_context(|| format!("removing raw batches of {key} after {next}"))?;
                    if deleted > 0 {
                        tracing::info!(
                            topic,
                            partition = p,
                            next,
                            deleted,
                            "removed raw batches written after the last checkpoint"
                        );
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
    fn revoke(
        &mut self,
        shards: &mut Shards,
        partitions: &[i32],
    ) -> anyhow::Result<BTreeMap<String, i64>> {
        self.settle()?;
        shards.flush_sink().context("flushing outputs")?;
        if let Some(raw) = &mut self.raw {
            raw.wait();
        }
        let mut offsets = BTreeMap::new();
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
    fn drop_lost(&mut self, shards: &mut Shards, partitions: &[i32]) -> anyhow::Result<()> {
        self.settle()?;
        for &p in partitions {
            shards.close(ShardId::Partition(p));
            if let Some(raw) = &mut self.raw {
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
    fn take(&mut self, shards: &mut Shards) -> anyhow::Result<()> {
        self.settle()?;
        let mut durable = shards.start_flush_sink().context("flushing outputs")?;
        if let Some(raw) = &mut self.raw {
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
        let commits: BTreeMap<String, i64> = self
            .offsets
            .values()
            .flatten()
            .map(|(k, &v)| (k.clone(), v))
            .collect();
        let (data_dir, store, sender) = (
            self.data_dir.clone(),
            self.shard_store.clone(),
            self.commit_sender.clone(),
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
    fn take_now(&mut self, shards: &mut Shards) -> anyhow::Result<()> {
        self.take(shards)?;
        self.settle()
    }
}

type LoopResult = anyhow::Result<(Shards, Checkpoints, RunReport)>;

fn pipeline_loop(
    mut shards: Shards,
    mut rx: mpsc::Receiver<Command>,
    mut sources_running: usize,
    mut checkpoints: Checkpoints,
    summary: bool,
    stop: &StopFlag,
    close_windows_at_end: bool,
) -> LoopResult {
    let started = Instant::now();
    let mut report = RunReport::default();
    let mut last_print = Instant::now();
    let mut last_records = 0;
    let mut last_checkpoint = Instant::now();
    let mut first_batches = std::collections::HashSet::new();
    while sources_running > 0 {
        let Some(command) = rx.blocking_recv() else {
            break;
        };
        match command {
            Command::Batch(SourceBatch {
                source,
                topic,
                records,
                position,
                offset,
            }) => {
                // Partitioned sources deliver one partition per batch: that is the shard and
                // the lane.
                let (shard, lane) = match (&offset, records.first()) {
                    (Some(_), Some(r)) => (ShardId::Partition(r.partition), r.partition),
                    _ => (ShardId::Local, 0),
                };
                let Some(pipeline) = shards.get_mut(shard) else {
                    tracing::warn!(topic, %shard, records = records.len(),
                        "batch of a partition this host does not hold; left to its owner");
                    continue;
                };
                report.records_in += records.len() as u64;
                report
                    .first_batch_secs
                    .get_or_insert_with(|| started.elapsed().as_secs_f64());
                if let (Some(raw), Some(_)) = (&mut checkpoints.raw, &offset) {
                    raw.write(&records);
                }
                if let (Some(first), Some(last)) = (records.first(), records.last()) {
                    if offset.is_some() && first_batches.insert((topic.clone(), first.partition)) {
                        tracing::info!(
                            topic,
                            partition = first.partition,
                            first = first.offset,
                            first_time = first.timestamp,
                            "first batch of the partition in this run"
                        );
                    }
                    tracing::debug!(
                        topic,
                        partition = first.partition,
                        first = first.offset,
                        last = last.offset,
                        first_time = first.timestamp,
                        last_time = last.timestamp,
                        "batch"
                    );
                }
                let newest_ms = records.iter().map(|r| r.timestamp).max();
                pipeline
                    .push_lane(&topic, Batch::Raw(records), lane)
                    .context("writing pipeline outputs")?;
                checkpoints.record(&source, position, offset, newest_ms);
                report.last_batch_secs = Some(started.elapsed().as_secs_f64());
            }
            Command::SourceDone { source, error } => {
                sources_running -= 1;
                if let Some(e) = error {
                    report.source_errors.push(format!("{source}: {e}"));
                }
            }
            Command::Assign {
                source,
                partitions,
                topics,
                reply,
            } => {
                let result = checkpoints.assign(&mut shards, &partitions, &topics);
                if let Err(error) = &result {
                    tracing::error!(%source, ?partitions, error = format!("{error:#}"), "opening assigned partitions failed");
                }
                report
                    .assigned_secs
                    .get_or_insert_with(|| started.elapsed().as_secs_f64());
                let _ = reply.send(result.map_err(|e| format!("{e:#}")));
            }
            Command::Revoke {
                source,
                partitions,
                lost: true,
                reply,
                ..
            } => {
                checkpoints.drop_lost(&mut shards, &partitions)?;
                tracing::warn!(%source, ?partitions,
                    "partitions lost to another host (silent past the session timeout): closed without a checkpoint; the new owner resumes from the last one");
                let _ = reply.send(BTreeMap::new());
            }
            Command::Revoke {
                source,
                partitions,
                end_of_input,
                lost: false,
                reply,
            } => {
                if end_of_input && close_windows_at_end && !stop.is_stopped() {
                    for &p in &partitions {
                        if let Some(pipeline) = shards.get_mut(ShardId::Partition(p)) {
                            pipeline
                                .flush_windows()
                                .context("closing windows at end of input")?;
                        }
                    }
                }
                let offsets = checkpoints.revoke(&mut shards, &partitions)?;
                tracing::debug!(%source, ?partitions, ?offsets, "partitions checkpointed and closed");
                let _ = reply.send(offsets);
            }
            Command::Swap(plugin) => {
                for (shard, outcome) in shards.swap(&plugin) {
                    match outcome.result {
                        Ok(pause) => tracing::info!(
                            %shard, stage = %outcome.stage, plugin = %plugin.name, version = %plugin.version,
                            pause_us = pause.as_micros() as u64, "hot-swapped plugin"
                        ),
                        Err(error) => tracing::error!(
                            %shard, stage = %outcome.stage, plugin = %plugin.name, version = %plugin.version,
                            %error, "new plugin version rejected; the running version stays"
                        ),
                    }
                }
            }
            Command::Reconfigure(specs) => {
                let (outcomes, restart) = shards.reconfigure(&specs);
                for (shard, outcome) in outcomes {
                    match outcome.result {
                        Ok(pause) => tracing::info!(%shard, stage = %outcome.stage,
                            pause_us = pause.as_micros() as u64, "new parameters applied with the stage's state"),
                        Err(error) => tracing::error!(%shard, stage = %outcome.stage, %error,
                            "new parameters rejected; the stage keeps the old ones"),
                    }
                }
                for change in restart {
                    tracing::warn!(%change, "pipeline config change needs a restart to apply");
                }
            }
            Command::Unload(name) => {
                for stage in shards.unload(&name) {
                    tracing::warn!(%stage, plugin = %name, "plugin file removed: stage stopped (state kept); its input goes to the dead letters");
                }
            }
        }
        if checkpoints.commit_sender.is_some() && last_checkpoint.elapsed() >= checkpoints.every {
            checkpoints.take(&mut shards)?;
            last_checkpoint = Instant::now();
        }
        if summary && last_print.elapsed() >= Duration::from_secs(1) {
            let rate =
                (report.records_in - last_records) as f64 / last_print.elapsed().as_secs_f64();
            eprintln!(
                "{}",
                summary_line(&shards, started.elapsed(), report.records_in, rate)
            );
            last_print = Instant::now();
            last_records = report.records_in;
        }
    }
    if close_windows_at_end && !stop.is_stopped() {
        for (_, pipeline) in shards.iter_mut() {
            pipeline
                .flush_windows()
                .context("closing windows at end of input")?;
        }
    }
    let totals = totals(&shards);
    report.alerts = totals.alerts;
    report.outputs = totals.outputs;
    report.swaps = totals.swaps;
    report.failures = totals.failures;
    report.elapsed_secs = started.elapsed().as_secs_f64();
    if summary {
        let rate = report.records_in as f64 / report.elapsed_secs.max(1e-9);
        eprintln!(
            "{}",
            summary_line(&shards, started.elapsed(), report.records_in, rate)
        );
    }
    Ok((shards, checkpoints, report))
}

/// Counters over every shard, open or closed.
fn totals(shards: &Shards) -> crate::shards::Retired {
    let mut t = shards.retired.clone();
    for (_, pipeline) in shards.iter() {
        t.alerts += pipeline.alerts;
        t.dead_letters += pipeline.dead_letters;
        for s in pipeline.stages() {
            *t.outputs.entry(s.spec().output.clone()).or_default() += s.stats.events_out;
            t.swaps += s.stats.swaps;
            t.failures += s.stats.failures;
        }
    }
    t
}

fn summary_line(shards: &Shards, elapsed: Duration, records: u64, rate: f64) -> String {
    let mut line = format!(
        "[{:>5.1}s] {records} records ({rate:.0}/s)",
        elapsed.as_secs_f64()
    );
    let t = totals(shards);
    for (stream, n) in &t.outputs {
        line.push_str(&format!(" | {stream} {n}"));
    }
    line.push_str(&format!(" | dead letters {}", t.dead_letters));
    line
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Used by `FileSink` users and tests: the output file of a stream.
pub fn output_path(data_dir: &Path, stream: &str) -> PathBuf {
    data_dir.join("out").join(format!("{stream}.ndjson"))
}
