//! `host replay`: archived raw batches through a pipeline, as the live run processed them.
//!
//! The archive ([`crate::archive`]) holds every batch a run read, tagged with its arrival order.
//! A replay rebuilds each shard's batches (one shard per partition when the config's source is
//! Kafka, the local shard otherwise, as `host run` does), runs them through fresh plugin
//! instances with the same event time (watermarks, allowed lateness), and closes the windows
//! still open at the end of the range. Outputs go to a replay folder (NDJSON per stream, dead
//! letters, `summary.json` with the data-quality counts) and, if asked, to a ClickHouse
//! database of its own (`<database>_replay_<id>`): never to the live tables, the alerts topic or
//! the dead-letter topic. One input gives byte-identical outputs on every replay.

mod batches;
mod dead_letters;
mod progress;
pub mod quality;
mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::archive::{ArchiveReader, Range};
use crate::config::PipelineConfig;
use crate::pipeline::{Batch, Outputs, ShardId, Shards, StageSpec};
use crate::plugin::registry::load_plugins;
use crate::plugin::{LoadedPlugin, PluginEngine};
use crate::sinks::{clickhouse, Fanout, FileSink, Sink};
use batches::{Cursor, ShardBatches};
pub use dead_letters::{DeadLetterSource, Redrive};
use progress::Progress;
pub use quality::{DayQuality, Quality};
pub use report::report;

pub struct ReplayOptions {
    /// The live run's pipeline config (sources say how it was sharded, `raw_store` where the
    /// archive is).
    pub config: PipelineConfig,
    pub plugins_dir: PathBuf,
    /// Topics to read (default: the config's source topics).
    pub topics: Option<Vec<String>>,
    pub partitions: Option<Vec<i32>>,
    pub range: Range,
    /// Run only these stages (and the stages that feed them).
    pub stages: Option<Vec<String>>,
    /// `(stage, component)`: run the stage with this plugin file instead.
    pub candidates: Vec<(String, PathBuf)>,
    /// `(stage, key, value)`: parameter overrides.
    pub params: Vec<(String, String, String)>,
    /// The replay's id: names its folder and its ClickHouse database.
    pub id: String,
    /// The replay folder (must be empty or absent).
    pub out_dir: PathBuf,
    /// Also write to ClickHouse (the config's `[clickhouse]` server), database
    /// `<database>_replay_<id>`.
    pub clickhouse: bool,
    pub progress: bool,
    /// Write only these output streams (dead letters always): a rule's alerts, say, without
    /// every cleaned event upstream of it.
    pub streams: Option<Vec<String>>,
    /// Re-drive dead letters from here instead of replaying the archive.
    pub dead_letters: Option<DeadLetterSource>,
    /// With `dead_letters`: write what the fix recovers to the live ClickHouse tables.
    pub recover: bool,
}

/// What a replay did; also `summary.json` in its folder.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplaySummary {
    pub id: String,
    pub archive: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub shards: Vec<String>,
    pub objects: usize,
    pub records: u64,
    pub batches: u64,
    /// Records in the objects read but outside the range.
    pub skipped: u64,
    pub outputs: BTreeMap<String, u64>,
    pub dead_letters: u64,
    /// Stage -> plugin and version that ran it.
    pub plugins: BTreeMap<String, String>,
    pub params: BTreeMap<String, String>,
    pub clickhouse_database: Option<String>,
    /// With `--streams`: the stages whose outputs were written (a diff compares only those).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_by: Option<Vec<String>>,
    /// A re-drive of dead letters: what it read and recovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive: Option<Redrive>,
    pub elapsed_secs: f64,
    /// Seconds from the first object read to the last output written (without loading plugins
    /// and listing the archive): what the rate is over.
    pub processing_secs: f64,
    pub quality: Quality,
}

impl ReplaySummary {
    pub const FILE: &'static str = "summary.json";

    /// What a replay with these options and plugins starts with.
    fn new(
        opts: &ReplayOptions,
        specs: &[StageSpec],
        plugins: &BTreeMap<String, Arc<LoadedPlugin>>,
    ) -> Self {
        ReplaySummary {
            id: opts.id.clone(),
            from: opts.range.from_ms.map(crate::units::datetime),
            to: opts.range.to_ms.map(crate::units::datetime),
            plugins: (specs.iter())
                .map(|s| {
                    let p = &plugins[&s.plugin];
                    (s.name.clone(), format!("{} {}", p.name, p.version))
                })
                .collect(),
            params: (opts.params.iter())
                .map(|(s, k, v)| (format!("{s}.{k}"), v.clone()))
                .collect(),
            ..Default::default()
        }
    }

    pub fn load(dir: &std::path::Path) -> anyhow::Result<Self> {
        let path = dir.join(Self::FILE);
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Run a replay to the end of its range.
pub fn replay(mut opts: ReplayOptions) -> anyhow::Result<ReplaySummary> {
    if let Some(source) = opts.dead_letters.take() {
        return dead_letters::redrive(opts, source);
    }
    let started = Instant::now();
    prepare_out_dir(&opts.out_dir)?;
    let config = &mut opts.config;
    if let Some(stages) = &opts.stages {
        config.keep_stages_feeding(stages)?;
    }
    for (stage, key, value) in &opts.params {
        config.set_param(stage, key, value)?;
    }
    let config = &opts.config;
    let data_dir = config.runtime.data_dir.clone();
    let (specs, plugins) = stage_plugins(config, &opts.plugins_dir, &opts.candidates)?;
    let mut summary = ReplaySummary::new(&opts, &specs, &plugins);
    summary.written_by = written_by(&specs, opts.streams.as_deref())?;
    let cleaners = readers_by_topic(config, &specs);

    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let store_config = config.raw_store.clone().unwrap_or_default();
    let reader = ArchiveReader::open(&store_config, &data_dir)?;
    summary.archive = ArchiveReader::describe(&store_config, &data_dir);
    let wanted: Vec<String> = match &opts.topics {
        Some(t) => t.clone(),
        None => config.source_topics().into_iter().collect(),
    };
    let stored = rt.block_on(reader.topics())?;
    let mut objects = BTreeMap::new(); // (topic, partition) -> objects
    for topic in wanted.iter().filter(|t| stored.contains(t)) {
        let found = rt.block_on(reader.objects(topic, opts.partitions.as_deref(), opts.range))?;
        for (p, o) in found {
            objects.insert((topic.clone(), p), o);
        }
    }
    if objects.is_empty() {
        bail!(
            "the archive at {} holds nothing of {:?} in that range (it holds topics {:?})",
            summary.archive,
            wanted,
            stored
        );
    }
    summary.objects = objects.values().map(Vec::len).sum();

    let partitioned = config.sources.iter().any(|s| s.is_partitioned());
    let mut shard_cursors: BTreeMap<ShardId, Vec<Cursor>> = BTreeMap::new();
    for ((_, p), objects) in objects {
        let shard = match partitioned {
            true => ShardId::Partition(p),
            false => ShardId::Local,
        };
        shard_cursors
            .entry(shard)
            .or_default()
            .push(Cursor::new(objects));
    }

    let ch = opts.clickhouse.then(|| {
        let mut ch = config.clickhouse.clone().unwrap_or_default();
        ch.database = replay_database(&ch.database, &opts.id);
        ch
    });
    let mut sinks = open_sinks(&opts.out_dir, ch, &rt, &mut summary)?;
    let mut shards = Shards::new(specs, plugins);
    let progress = Progress::new(opts.progress, summary.objects);
    let batch_size = config.runtime.batch_size.max(1);
    let processing = Instant::now();
    // Three threads: one reads and decompresses the archive ahead, this one runs the chain,
    // one writes the outputs (the plugins' thread never waits on either while they keep up).
    // The writer also counts what it writes (data quality, rows per stream): work off the
    // plugins' thread.
    let (out_tx, out_rx) = crossbeam_channel::bounded::<(Outputs, Option<quality::Seen>)>(16);
    let streams = opts.streams.as_deref();
    let tally = std::thread::scope(|scope| -> anyhow::Result<Tally> {
        let cleaners = &cleaners;
        let writer = scope.spawn(move || -> anyhow::Result<Tally> {
            let mut tally = Tally::default();
            for (mut outputs, seen) in out_rx {
                tally.add(&mut outputs, seen.as_ref(), cleaners, streams);
                sinks
                    .write_outputs(&outputs)
                    .context("writing the replay's outputs")?;
            }
            sinks.flush().context("flushing the replay's outputs")?;
            Ok(tally)
        });
        'shards: for (shard, cursors) in shard_cursors {
            summary.shards.push(shard.to_string());
            let pipeline = shards.open(shard, BTreeMap::new())?;
            if let ShardId::Partition(p) = shard {
                for topic in &wanted {
                    pipeline.expect_lanes(topic, &[p]);
                }
            }
            let lane = match shard {
                ShardId::Partition(p) => p,
                ShardId::Local => 0,
            };
            let mut batches = ShardBatches {
                cursors,
                batch_size,
                range: opts.range,
                skipped: 0,
            };
            let read_before = progress.objects_done();
            // Up to 64 batches ahead: more than an object's worth (8 MB of lines, about 27 batches of
            // sales), so the chain never waits while the reader opens the next object.
            let (batch_tx, batch_rx) = crossbeam_channel::bounded(64);
            let (rt, reader) = (&rt, &reader);
            let reading = scope.spawn(move || {
                loop {
                    let next = rt.block_on(batches.next(reader));
                    let objects = batches.objects_read();
                    let end = !matches!(next, Ok(Some(_)));
                    let item = next.map(|b| b.map(|(topic, records)| (topic, records, objects)));
                    if batch_tx.send(item).is_err() || end {
                        break;
                    }
                }
                (batches.skipped, batches.objects_read())
            });
            for item in batch_rx {
                let Some((topic, records, objects)) = item? else {
                    break;
                };
                summary.records += records.len() as u64;
                summary.batches += 1;
                let newest = records.last().map(|r| r.timestamp);
                let pipeline = shards.get_mut(shard).expect("opened above");
                let seen = quality::Seen::of(&records);
                let outputs = pipeline.push_lane(&topic, Batch::Raw(records), lane);
                if out_tx.send((outputs, Some(seen))).is_err() {
                    break 'shards; // the writer failed: its error ends the replay
                }
                progress.update(read_before + objects, summary.records, newest);
            }
            let (skipped, objects) = reading.join().expect("the archive reader panicked");
            summary.skipped += skipped;
            let pipeline = shards.get_mut(shard).expect("opened above");
            let outputs = pipeline.flush_windows();
            if out_tx.send((outputs, None)).is_err() {
                break;
            }
            progress.set_objects(read_before + objects);
            shards.close(shard);
        }
        drop(out_tx);
        writer.join().expect("the replay's writer panicked")
    })?;
    tally.into_summary(&mut summary);
    summary.processing_secs = processing.elapsed().as_secs_f64();
    progress.finish();
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    let path = opts.out_dir.join(ReplaySummary::FILE);
    std::fs::write(&path, serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(summary)
}

/// Plugin name (or `name@stage` for a candidate) -> the loaded plugin.
type Plugins = BTreeMap<String, Arc<LoadedPlugin>>;

/// The config's stages and the plugin each runs (a candidate file where one is given).
fn stage_plugins(
    config: &PipelineConfig,
    plugins_dir: &std::path::Path,
    candidates: &[(String, PathBuf)],
) -> anyhow::Result<(Vec<StageSpec>, Plugins)> {
    let mut specs = config.stage_specs()?;
    let engine = PluginEngine::new(Some(config.runtime.data_dir.join("cache")))?;
    let set = load_plugins(&engine, plugins_dir)?;
    let mut plugins: BTreeMap<String, Arc<LoadedPlugin>> = BTreeMap::new();
    for (stage, path) in candidates {
        let spec = (specs.iter_mut())
            .find(|s| &s.name == stage)
            .with_context(|| {
                format!("--plugin {stage}=...: the pipeline has no stage {stage:?}")
            })?;
        let candidate = engine
            .load(path)
            .with_context(|| format!("loading the candidate {}", path.display()))?;
        spec.plugin = format!("{}@{stage}", candidate.name);
        plugins.insert(spec.plugin.clone(), candidate);
    }
    for spec in &specs {
        if plugins.contains_key(&spec.plugin) {
            continue;
        }
        let plugin = set.loaded.get(&spec.plugin).with_context(|| {
            format!(
                "stage {:?} needs plugin {:?}, which is not in {} ({})",
                spec.name,
                spec.plugin,
                plugins_dir.display(),
                set.failed
                    .get(&spec.plugin)
                    .map_or("no such file", |e| e.as_str())
            )
        })?;
        plugins.insert(spec.plugin.clone(), plugin.clone());
    }
    Ok((specs, plugins))
}

/// The stages that read each source topic (the cleaners).
fn readers_by_topic(config: &PipelineConfig, specs: &[StageSpec]) -> BTreeMap<String, Vec<String>> {
    let topics = config.source_topics();
    let mut by_topic: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in specs
        .iter()
        .filter(|s| s.inputs.iter().any(|i| topics.contains(i)))
    {
        for i in &s.inputs {
            by_topic.entry(i.clone()).or_default().push(s.name.clone());
        }
    }
    by_topic
}

/// The stages that write `streams` (all of them: `None`); a stream no stage writes is an error.
fn written_by(
    specs: &[StageSpec],
    streams: Option<&[String]>,
) -> anyhow::Result<Option<Vec<String>>> {
    let Some(streams) = streams else {
        return Ok(None);
    };
    if let Some(unknown) = streams
        .iter()
        .find(|s| !specs.iter().any(|x| &x.output == *s))
    {
        let known: Vec<&str> = specs.iter().map(|s| s.output.as_str()).collect();
        bail!("--streams: no stage of this replay writes {unknown:?} (they write {known:?})");
    }
    Ok(Some(
        (specs.iter())
            .filter(|s| streams.contains(&s.output))
            .map(|s| s.name.clone())
            .collect(),
    ))
}

/// Drop the outputs of streams not asked for (dead letters stay).
fn keep_streams(outputs: &mut Outputs, streams: Option<&[String]>) {
    if let Some(streams) = streams {
        outputs
            .batches
            .retain(|o| streams.iter().any(|s| **s == *o.stream));
    }
}

/// What the summary counts of the outputs: data quality, rows per stream and dead letters.
#[derive(Default)]
struct Tally {
    quality: Quality,
    outputs: BTreeMap<String, u64>,
    dead_letters: u64,
}

impl Tally {
    /// Count what one push returned (`seen`: the records it pushed, `None` for closing windows)
    /// and drop the streams not asked for.
    fn add(
        &mut self,
        outputs: &mut Outputs,
        seen: Option<&quality::Seen>,
        cleaners: &BTreeMap<String, Vec<String>>,
        streams: Option<&[String]>,
    ) {
        if let Some(seen) = seen {
            let readers: Vec<&str> = (cleaners.get(seen.topic()).into_iter().flatten())
                .map(String::as_str)
                .collect();
            quality::count(&mut self.quality, seen, outputs, &readers);
        }
        keep_streams(outputs, streams);
        for o in &outputs.batches {
            *self.outputs.entry(o.stream.to_string()).or_default() += o.events.len() as u64;
        }
        self.dead_letters += outputs.dead_letters.len() as u64;
    }

    fn into_summary(self, summary: &mut ReplaySummary) {
        summary.quality = self.quality;
        summary.outputs = self.outputs;
        summary.dead_letters = self.dead_letters;
    }
}

/// The replay folder must not hold an earlier replay's files (outputs are appended).
fn prepare_out_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            bail!(
                "the replay folder {} is not empty: give another --id or --out, or remove it",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// NDJSON files in the replay folder, and ClickHouse under the replay's own database if asked.
fn open_sinks(
    out_dir: &std::path::Path,
    clickhouse: Option<clickhouse::ClickHouseConfig>,
    rt: &tokio::runtime::Runtime,
    summary: &mut ReplaySummary,
) -> anyhow::Result<Box<dyn Sink>> {
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(FileSink::new(out_dir)?)];
    if let Some(ch) = clickhouse {
        let client = ch.client();
        rt.block_on(clickhouse::migrate(&client, &ch.database))
            .with_context(|| {
                format!("creating the replay database {} at {}", ch.database, ch.url)
            })?;
        tracing::info!(database = %ch.database, "replay outputs also go to ClickHouse");
        summary.clickhouse_database = Some(ch.database.clone());
        let sink =
            clickhouse::ClickHouseSink::new(ch, rt.handle().clone()).map_err(anyhow::Error::msg)?;
        sinks.push(Box::new(sink));
    }
    Ok(Box::new(Fanout(sinks)))
}

/// The ClickHouse database of a replay: `<live database>_replay_<id>` (id letters, digits and
/// `_` only).
pub fn replay_database(live: &str, id: &str) -> String {
    let id: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{live}_replay_{id}")
}
