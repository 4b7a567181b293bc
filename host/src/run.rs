//! `host run`: wire sources -> pipeline -> sinks, watch the plugins folder, stop cleanly.
//!
//! Threads: each source on its own thread, the pipeline on one thread (plugin calls are
//! synchronous CPU work), the plugin watcher on the debouncer's thread (compiling off the hot
//! path). They meet in one bounded channel of [`Command`]s, so a hot swap lands exactly between
//! two batches. On SIGINT/SIGTERM sources stop at a batch boundary, the pipeline drains what is
//! queued, flushes the sinks and saves every stage's state and every source's position; the next
//! run resumes from there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::PipelineConfig;
use crate::pipeline::{Batch, Pipeline, Stage, StageCheckpoint};
use crate::plugin::{LoadedPlugin, PluginEngine};
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
    /// A partitioned source will deliver `topic` from these partitions.
    Lanes {
        topic: String,
        partitions: Vec<i32>,
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
    pub source_errors: Vec<String>,
}

/// State persisted between runs in `<data_dir>/state/pipeline.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SavedState {
    pub sources: BTreeMap<String, u64>,
    /// Per partitioned source (Kafka): `topic:partition` -> the next offset to read.
    #[serde(default)]
    pub offsets: BTreeMap<String, BTreeMap<String, i64>>,
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
    let mut saved = SavedState::load(&data_dir)?;

    let mut stages = Vec::new();
    for spec in opts.config.stage_specs()? {
        let Some(plugin) = plugins.get(&spec.plugin) else {
            match failed.get(&spec.plugin) {
                Some(why) => bail!("stage {:?} needs plugin {:?}, which failed to load: {why}", spec.name, spec.plugin),
                None => bail!(
                    "stage {:?} needs plugin {:?}: there is no {}/{}.wasm (build plugins with plugins/build.sh)",
                    spec.name, spec.plugin, opts.plugins_dir.display(), spec.plugin
                ),
            }
        };
        let checkpoint = saved.stages.remove(&spec.name);
        if let Some(c) = &checkpoint {
            tracing::info!(stage = %spec.name, saved_by = %c.plugin_version, running = %plugin.version,
                watermark = c.watermark, lanes = ?c.lanes, "restoring saved state");
        }
        stages.push(Stage::start(spec, plugin.clone(), checkpoint)?);
    }
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(FileSink::new(&data_dir.join("out"))?)];
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
    let pipeline = Pipeline::new(stages, Box::new(Fanout(sinks)));

    // Raw batches of partitioned sources go to object storage before they are checkpointed.
    let has_kafka = opts
        .config
        .sources
        .iter()
        .any(|s| matches!(s, crate::config::SourceConfig::Kafka(_)));
    let raw = if has_kafka {
        let config = opts.config.raw_store.clone().unwrap_or_default();
        let raw = crate::sinks::raw::RawStore::new(
            &config,
            &data_dir,
            tokio::runtime::Handle::current(),
        )?;
        for offsets in saved.offsets.values() {
            for (key, &next) in offsets {
                if let Some((topic, Ok(partition))) =
                    key.rsplit_once(':').map(|(t, p)| (t, p.parse::<i32>()))
                {
                    let deleted = raw.discard_after(topic, partition, next).await?;
                    if deleted > 0 {
                        tracing::info!(
                            topic,
                            partition,
                            next,
                            deleted,
                            "removed raw batches written after the last checkpoint"
                        );
                    }
                }
            }
        }
        Some(raw)
    } else {
        None
    };

    let (tx, rx) = mpsc::channel::<Command>(8);
    let stop = StopFlag::default();
    let mut source_threads = Vec::new();
    let mut commit_senders = BTreeMap::new();
    for source in &opts.config.sources {
        let resume = sources::Resume {
            position: saved.sources.get(source.name()).copied().unwrap_or(0),
            offsets: saved
                .offsets
                .get(source.name())
                .cloned()
                .unwrap_or_default(),
        };
        if resume.position > 0 || !resume.offsets.is_empty() {
            tracing::info!(source = %source.name(), position = resume.position, offsets = ?resume.offsets, "resuming source");
        }
        let commits = match source {
            crate::config::SourceConfig::Kafka(_) => {
                let (commit_tx, commit_rx) = std::sync::mpsc::channel();
                commit_senders.insert(source.name().to_string(), commit_tx);
                Some(commit_rx)
            }
            _ => None,
        };
        source_threads.push(sources::spawn(
            source.clone(),
            runtime.batch_size.max(1),
            resume,
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
        commit_senders,
        every: Duration::from_secs(1),
        sources: saved.sources,
        offsets: saved.offsets,
        raw,
    };
    let summary = opts.summary;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let thread_stop = stop.clone();
    let worker = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            let result = pipeline_loop(
                pipeline,
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
    let (mut pipeline, mut checkpoints, mut report) =
        tokio::task::spawn_blocking(move || worker.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))??;
    for t in source_threads {
        let _ = t.join();
    }
    // Sinks may block on their own I/O (ClickHouse retries): not on a runtime thread.
    let dead_letters = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        checkpoints.take(&mut pipeline)?;
        Ok(pipeline.dead_letters)
    })
    .await??;
    report.dead_letters = dead_letters;
    tracing::info!(state = %SavedState::path(&data_dir).display(), "state saved");
    Ok(report)
}

/// Checkpoints: every sink flushed, then every stage's state and every source's position saved
/// together in one file, then (Kafka) the offsets committed to the consumer group.
struct Checkpoints {
    data_dir: PathBuf,
    commit_senders: BTreeMap<String, std::sync::mpsc::Sender<BTreeMap<String, i64>>>,
    every: Duration,
    sources: BTreeMap<String, u64>,
    offsets: BTreeMap<String, BTreeMap<String, i64>>,
    /// Raw batches of partitioned sources, stored before any checkpoint covers them.
    raw: Option<crate::sinks::raw::RawStore>,
}

impl Checkpoints {
    /// A source batch went through the pipeline: its source may resume after it.
    fn record(&mut self, source: &str, position: u64, offset: Option<(String, i64)>) {
        match offset {
            Some((partition, next)) => {
                self.offsets
                    .entry(source.to_string())
                    .or_default()
                    .insert(partition, next);
            }
            None => {
                self.sources.insert(source.to_string(), position);
            }
        }
    }

    fn take(&mut self, pipeline: &mut Pipeline) -> anyhow::Result<()> {
        pipeline.flush_sink().context("flushing outputs")?;
        let stages = pipeline.save().context("saving plugin state")?;
        if tracing::enabled!(tracing::Level::DEBUG) {
            let lanes: BTreeMap<&String, (&BTreeMap<i32, i64>, i64)> = stages
                .iter()
                .map(|(name, c)| (name, (&c.lanes, c.watermark)))
                .collect();
            tracing::debug!(offsets = ?self.offsets, lanes = ?lanes, "checkpoint");
        }
        SavedState {
            sources: self.sources.clone(),
            offsets: self.offsets.clone(),
            stages,
        }
        .store(&self.data_dir)?;
        for (source, sender) in &self.commit_senders {
            if let Some(offsets) = self.offsets.get(source) {
                let _ = sender.send(offsets.clone());
            }
        }
        Ok(())
    }
}

type LoopResult = anyhow::Result<(Pipeline, Checkpoints, RunReport)>;

fn pipeline_loop(
    mut pipeline: Pipeline,
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
                report.records_in += records.len() as u64;
                if let (Some(raw), Some(_)) = (&checkpoints.raw, &offset) {
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
                // Partitioned sources deliver one partition per batch: that is the lane.
                let lane = match &offset {
                    Some(_) => records.first().map_or(0, |r| r.partition),
                    None => 0,
                };
                pipeline
                    .push_lane(&topic, Batch::Raw(records), lane)
                    .context("writing pipeline outputs")?;
                checkpoints.record(&source, position, offset);
            }
            Command::SourceDone { source, error } => {
                sources_running -= 1;
                if let Some(e) = error {
                    report.source_errors.push(format!("{source}: {e}"));
                }
            }
            Command::Swap(plugin) => {
                for outcome in pipeline.swap(&plugin) {
                    match outcome.result {
                        Ok(pause) => tracing::info!(
                            stage = %outcome.stage, plugin = %plugin.name, version = %plugin.version,
                            pause_us = pause.as_micros() as u64, "hot-swapped plugin"
                        ),
                        Err(error) => tracing::error!(
                            stage = %outcome.stage, plugin = %plugin.name, version = %plugin.version,
                            %error, "new plugin version rejected; the running version stays"
                        ),
                    }
                }
            }
            Command::Lanes { topic, partitions } => pipeline.expect_lanes(&topic, &partitions),
            Command::Reconfigure(specs) => {
                let (outcomes, restart) = pipeline.reconfigure(&specs);
                for outcome in outcomes {
                    match outcome.result {
                        Ok(pause) => tracing::info!(stage = %outcome.stage,
                            pause_us = pause.as_micros() as u64, "new parameters applied with the stage's state"),
                        Err(error) => tracing::error!(stage = %outcome.stage, %error,
                            "new parameters rejected; the stage keeps the old ones"),
                    }
                }
                for change in restart {
                    tracing::warn!(%change, "pipeline config change needs a restart to apply");
                }
            }
            Command::Unload(name) => {
                for stage in pipeline.unload(&name) {
                    tracing::warn!(%stage, plugin = %name, "plugin file removed: stage stopped (state kept); its input goes to the dead letters");
                }
            }
        }
        if !checkpoints.commit_senders.is_empty() && last_checkpoint.elapsed() >= checkpoints.every
        {
            checkpoints.take(&mut pipeline)?;
            last_checkpoint = Instant::now();
        }
        if summary && last_print.elapsed() >= Duration::from_secs(1) {
            let rate =
                (report.records_in - last_records) as f64 / last_print.elapsed().as_secs_f64();
            eprintln!(
                "{}",
                summary_line(&pipeline, started.elapsed(), report.records_in, rate)
            );
            last_print = Instant::now();
            last_records = report.records_in;
        }
    }
    if close_windows_at_end && !stop.is_stopped() {
        pipeline
            .flush_windows()
            .context("closing windows at end of input")?;
    }
    report.alerts = pipeline.alerts;
    for s in pipeline.stages() {
        *report.outputs.entry(s.spec().output.clone()).or_default() += s.stats.events_out;
        report.swaps += s.stats.swaps;
        report.failures += s.stats.failures;
    }
    report.elapsed_secs = started.elapsed().as_secs_f64();
    if summary {
        let rate = report.records_in as f64 / report.elapsed_secs.max(1e-9);
        eprintln!(
            "{}",
            summary_line(&pipeline, started.elapsed(), report.records_in, rate)
        );
    }
    Ok((pipeline, checkpoints, report))
}

fn summary_line(pipeline: &Pipeline, elapsed: Duration, records: u64, rate: f64) -> String {
    let mut line = format!(
        "[{:>5.1}s] {records} records ({rate:.0}/s)",
        elapsed.as_secs_f64()
    );
    for s in pipeline.stages() {
        line.push_str(&format!(" | {} {}", s.spec().output, s.stats.events_out));
    }
    line.push_str(&format!(" | dead letters {}", pipeline.dead_letters));
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
