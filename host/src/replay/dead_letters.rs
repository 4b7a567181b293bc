//! `host replay --dead-letters SOURCE`: the raw records a cleaner rejected, re-driven through
//! the stages that rejected them (usually with a fixed plugin: `--plugin STAGE=fixed.wasm` or
//! `--params`), so a bug fix recovers what was lost.
//!
//! Dead letters come from the dead-letter topic (`kafka`: each message is the original record
//! with the error context in headers), the `dead_letters` table (`clickhouse`) or a
//! `dead_letters.ndjson` file; `--from`/`--to` select them by the time they were recorded.
//! Only raw records can be re-driven (a typed event's dead letter, a late event, has no cleaner
//! to fix), nor can a repeat a cleaner dropped as a duplicate (its first copy was taken); a
//! record dead-lettered more than once is re-driven once. Outputs go to the replay
//! folder and, with `--clickhouse`, the replay's database; with `--recover` the recovered rows
//! go to the live tables instead. Every table's sorting key is the row's identity, so
//! re-driving the same letters twice leaves each recovered row once (read with FINAL); the
//! letters that fail again go to the replay folder only (the live table already has them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{prepare_out_dir, stage_plugins, ReplayOptions, ReplaySummary};
use crate::archive::Range;
use crate::config::PipelineConfig;
use crate::pipeline::{dead_letter, Batch, DeadLetter, ShardId, Shards};
use crate::plugin::RawRecord;
use crate::sinks::{clickhouse, Fanout, FileSink, Sink, SinkError};

/// Where dead letters are read from.
#[derive(Debug, Clone, PartialEq)]
pub enum DeadLetterSource {
    /// The config's `[kafka_sink]` dead-letter topic.
    Kafka,
    /// The config's ClickHouse `dead_letters` table.
    ClickHouse,
    /// A `dead_letters.ndjson` file (a run's or replay's output folder).
    File(PathBuf),
}

impl std::str::FromStr for DeadLetterSource {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "kafka" => DeadLetterSource::Kafka,
            "clickhouse" => DeadLetterSource::ClickHouse,
            path => DeadLetterSource::File(path.into()),
        })
    }
}

/// What a re-drive read and recovered (in `summary.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Redrive {
    pub source: String,
    /// Dead letters read (in the range).
    pub letters: u64,
    /// Of those, typed events and notes, which have no raw record to re-drive.
    pub not_raw: u64,
    /// Of those, repeats a cleaner dropped as duplicates (not re-driven: the first copy was
    /// taken).
    pub duplicates: u64,
    /// Of those, repeats of a record already taken (dead-lettered more than once).
    pub repeats: u64,
    /// Raw records the fixed stages accepted.
    pub recovered: u64,
    /// Raw records dead-lettered again.
    pub failed_again: u64,
    /// Where the recovered rows went: the live ClickHouse database, with `--recover`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_into: Option<String>,
}

/// A dead letter and when it was recorded (ms; 0 when unknown).
type Letter = (DeadLetter, i64);

pub(super) fn redrive(
    mut opts: ReplayOptions,
    source: DeadLetterSource,
) -> anyhow::Result<ReplaySummary> {
    let started = Instant::now();
    if opts.recover && opts.clickhouse {
        bail!(
            "--recover writes to the live tables and --clickhouse to a replay database: choose one"
        );
    }
    prepare_out_dir(&opts.out_dir)?;
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let letters = read(&source, &opts.config, opts.range, &rt)?;
    let mut redrive = Redrive {
        source: describe(&source, &opts.config),
        letters: letters.len() as u64,
        ..Default::default()
    };
    // Each raw record once, in offset order per topic and partition.
    let mut records: BTreeMap<(String, i32, i64), RawRecord> = BTreeMap::new();
    let mut stages = BTreeSet::new();
    for (letter, at) in letters {
        let Ok(mut record) = letter.raw_record() else {
            redrive.not_raw += 1;
            continue;
        };
        if letter.is_duplicate() {
            redrive.duplicates += 1; // dropped on purpose: re-driving would take it twice
            continue;
        }
        let topic_wanted = (opts.topics.as_ref()).is_none_or(|t| t.contains(&record.topic));
        let partition_wanted =
            (opts.partitions.as_ref()).is_none_or(|p| p.contains(&record.partition));
        if !topic_wanted || !partition_wanted {
            continue;
        }
        record.timestamp = at;
        stages.insert(letter.stage.clone());
        let key = (record.topic.clone(), record.partition, record.offset);
        if records.insert(key, record).is_some() {
            redrive.repeats += 1;
        }
    }
    if records.is_empty() {
        bail!(
            "{} holds no dead letters of raw records to re-drive{}",
            redrive.source,
            match opts.range.from_ms.or(opts.range.to_ms) {
                Some(_) => " in that range",
                None => "",
            }
        );
    }

    let config = &mut opts.config;
    let stages: Vec<String> = opts.stages.clone().unwrap_or(stages.into_iter().collect());
    config
        .keep_stages_feeding(&stages)
        .context("the stages that rejected the dead letters")?;
    for (stage, key, value) in &opts.params {
        config.set_param(stage, key, value)?;
    }
    let (specs, plugins) = stage_plugins(config, &opts.plugins_dir, &opts.candidates)?;
    let mut summary = ReplaySummary::new(&opts, &specs, &plugins);
    summary.written_by = super::written_by(&specs, opts.streams.as_deref())?;
    let config = &opts.config;
    let cleaners = super::readers_by_topic(config, &specs);
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(FileSink::new(&opts.out_dir)?)];
    let live = config.clickhouse.clone();
    match (opts.recover, opts.clickhouse, live) {
        (true, _, None) => bail!("--recover needs a [clickhouse] section in the config"),
        (true, _, Some(ch)) => {
            redrive.recovered_into = Some(ch.database.clone());
            let sink = open_clickhouse(ch, &rt)?;
            sinks.push(Box::new(WithoutDeadLetters(sink)));
        }
        (false, true, live) => {
            let mut ch = live.unwrap_or_default();
            ch.database = super::replay_database(&ch.database, &opts.id);
            summary.clickhouse_database = Some(ch.database.clone());
            sinks.push(open_clickhouse(ch, &rt)?);
        }
        (false, false, _) => {}
    }
    let mut sinks = Fanout(sinks);

    let partitioned = config.sources.iter().any(|s| s.is_partitioned());
    let mut by_shard: BTreeMap<ShardId, BTreeMap<String, Vec<RawRecord>>> = BTreeMap::new();
    for ((topic, partition, _), record) in records {
        let shard = match partitioned {
            true => ShardId::Partition(partition),
            false => ShardId::Local,
        };
        (by_shard.entry(shard).or_default().entry(topic))
            .or_default()
            .push(record);
    }
    let batch_size = config.runtime.batch_size.max(1);
    let mut shards = Shards::new(specs, plugins);
    let processing = Instant::now();
    let (mut tally, streams) = (super::Tally::default(), opts.streams.as_deref());
    for (shard, topics) in by_shard {
        summary.shards.push(shard.to_string());
        let pipeline = shards.open(shard, BTreeMap::new())?;
        let lane = match shard {
            ShardId::Partition(p) => p,
            ShardId::Local => 0,
        };
        for (topic, records) in topics {
            for chunk in records.chunks(batch_size) {
                summary.records += chunk.len() as u64;
                summary.batches += 1;
                let seen = super::quality::Seen::of(chunk);
                let mut outputs = pipeline.push_lane(&topic, Batch::Raw(chunk.to_vec()), lane);
                let failed: BTreeSet<(i32, i64)> = (outputs.dead_letters.iter())
                    .filter_map(|d| d.source.as_ref().map(|s| (s.partition, s.offset)))
                    .collect();
                redrive.failed_again += failed.len() as u64;
                redrive.recovered += (chunk.len() - failed.len()) as u64;
                tally.add(&mut outputs, Some(&seen), &cleaners, streams);
                sinks
                    .write_outputs(&outputs)
                    .context("writing the re-driven outputs")?;
            }
        }
        let mut outputs = pipeline.flush_windows();
        tally.add(&mut outputs, None, &cleaners, streams);
        sinks
            .write_outputs(&outputs)
            .context("writing the re-driven outputs")?;
        shards.close(shard);
    }
    sinks.flush().context("flushing the re-driven outputs")?;
    tally.into_summary(&mut summary);
    summary.processing_secs = processing.elapsed().as_secs_f64();
    summary.archive = redrive.source.clone();
    summary.redrive = Some(redrive);
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    let path = opts.out_dir.join(ReplaySummary::FILE);
    std::fs::write(&path, serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(summary)
}

fn open_clickhouse(
    ch: clickhouse::ClickHouseConfig,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Box<dyn Sink>> {
    let client = ch.client();
    rt.block_on(clickhouse::migrate(&client, &ch.database))
        .with_context(|| format!("preparing the database {} at {}", ch.database, ch.url))?;
    let sink =
        clickhouse::ClickHouseSink::new(ch, rt.handle().clone()).map_err(anyhow::Error::msg)?;
    Ok(Box::new(sink))
}

/// A sink that takes outputs but not dead letters (the live table already holds them).
struct WithoutDeadLetters(Box<dyn Sink>);

impl Sink for WithoutDeadLetters {
    fn write(
        &mut self,
        stream: &str,
        provenance: &crate::pipeline::Provenance,
        events: &[crate::plugin::Event],
    ) -> Result<(), SinkError> {
        self.0.write(stream, provenance, events)
    }

    fn write_batch(
        &mut self,
        stream: &str,
        provenance: &crate::pipeline::Provenance,
        batch: &crate::sinks::OutputBatch<'_>,
    ) -> Result<(), SinkError> {
        self.0.write_batch(stream, provenance, batch)
    }

    fn dead_letters(&mut self, _: &[DeadLetter]) -> Result<(), SinkError> {
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.0.flush()
    }
}

fn describe(source: &DeadLetterSource, config: &PipelineConfig) -> String {
    match source {
        DeadLetterSource::Kafka => {
            let k = config.kafka_sink.clone().unwrap_or_default();
            format!("kafka://{}/{}", k.brokers, k.dead_letter_topic)
        }
        DeadLetterSource::ClickHouse => {
            let ch = config.clickhouse.clone().unwrap_or_default();
            format!("{}/{}.dead_letters", ch.url, ch.database)
        }
        DeadLetterSource::File(path) => path.display().to_string(),
    }
}

/// The dead letters of a source recorded in the range.
fn read(
    source: &DeadLetterSource,
    config: &PipelineConfig,
    range: Range,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Vec<Letter>> {
    let letters = match source {
        DeadLetterSource::Kafka => {
            let Some(k) = &config.kafka_sink else {
                bail!("--dead-letters kafka needs a [kafka_sink] section in the config");
            };
            read_topic(k)?
        }
        DeadLetterSource::ClickHouse => {
            let Some(ch) = &config.clickhouse else {
                bail!("--dead-letters clickhouse needs a [clickhouse] section in the config");
            };
            rt.block_on(read_table(ch))?
        }
        DeadLetterSource::File(path) => {
            if range.from_ms.is_some() || range.to_ms.is_some() {
                bail!("a dead-letter file does not say when each letter was recorded: --from and --to need kafka or clickhouse");
            }
            read_file(path)?
        }
    };
    Ok(letters
        .into_iter()
        .filter(|(_, at)| {
            range.from_ms.is_none_or(|f| *at >= f) && range.to_ms.is_none_or(|t| *at < t)
        })
        .collect())
}

fn read_file(path: &std::path::Path) -> anyhow::Result<Vec<Letter>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    (text.lines().enumerate())
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let d = serde_json::from_str(l)
                .with_context(|| format!("{} line {}: not a dead letter", path.display(), i + 1))?;
            Ok((d, 0))
        })
        .collect()
}

/// Every message of the dead-letter topic, up to the end each partition had when reading began.
fn read_topic(k: &crate::sinks::kafka::KafkaSinkConfig) -> anyhow::Result<Vec<Letter>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &k.brokers)
        .set("group.id", "shelfstream-redrive")
        .set("enable.auto.commit", "false");
    for (key, value) in &k.properties {
        client.set(key, value);
    }
    let consumer: BaseConsumer = client.create().context("creating a Kafka consumer")?;
    let topic = &k.dead_letter_topic;
    let timeout = Duration::from_secs(15);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("reading the metadata of {topic} from {}", k.brokers))?;
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), timeout)
            .with_context(|| format!("reading the offsets of {topic}/{}", p.id()))?;
        if high > low {
            ends.insert(p.id(), high);
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer
        .assign(&tpl)
        .context("assigning the dead-letter topic")?;
    let mut letters = Vec::new();
    let mut last = Instant::now();
    // Done when every partition reached the end it had, and a second passed without a message
    // (some brokers report the end of the last batch read, not of the last message).
    loop {
        let quiet = last.elapsed();
        if ends.is_empty() && quiet > Duration::from_secs(1) {
            break;
        }
        if quiet > Duration::from_secs(60) {
            bail!("reading {topic}: no message for 60 s with partitions {ends:?} unfinished");
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.with_context(|| format!("reading {topic}"))?;
        last = Instant::now();
        if ends
            .get(&m.partition())
            .is_some_and(|end| m.offset() + 1 >= *end)
        {
            ends.remove(&m.partition());
        }
        let headers = crate::sources::kafka::headers_of(&m);
        let d = dead_letter::kafka::decode(m.key(), m.payload(), &headers)
            .with_context(|| format!("{topic}/{} offset {}", m.partition(), m.offset()))?;
        letters.push((d, m.timestamp().to_millis().unwrap_or(0)));
    }
    Ok(letters)
}

/// The `dead_letters` rows of raw records.
async fn read_table(ch: &clickhouse::ClickHouseConfig) -> anyhow::Result<Vec<Letter>> {
    let sql = format!(
        "SELECT kind, reason, stage, plugin, plugin_version, source_topic, source_partition, \
         source_offset, record, payload_base64, record_key, key_base64, headers, \
         toUnixTimestamp(recorded_at) AS at FROM {}.dead_letters FINAL WHERE source_topic != ''",
        ch.database
    );
    let bytes = (ch.client().query(&sql).fetch_bytes("JSONEachRow"))
        .context("querying dead_letters")?
        .collect()
        .await
        .with_context(|| format!("reading {}.dead_letters at {}", ch.database, ch.url))?;
    (bytes.split(|b| *b == b'\n'))
        .filter(|l| !l.is_empty())
        .map(|line| {
            let row: serde_json::Map<String, Value> =
                serde_json::from_slice(line).context("a dead_letters row is not JSON")?;
            from_row(&row)
                .with_context(|| format!("dead_letters row {}", String::from_utf8_lossy(line)))
        })
        .collect()
}

/// A `dead_letters` row (see [`clickhouse::dead_letter_row`]) as a dead letter.
fn from_row(row: &serde_json::Map<String, Value>) -> anyhow::Result<Letter> {
    let text = |c: &str| {
        row.get(c)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    // 64-bit integers come quoted in JSONEachRow.
    let int = |c: &str| -> i64 {
        match row.get(c) {
            Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
            Some(Value::String(s)) => s.parse().unwrap_or(0),
            _ => 0,
        }
    };
    let kind = serde_json::from_value(Value::String(text("kind"))).context("kind")?;
    let key = text("record_key");
    let headers = text("headers");
    let d = DeadLetter {
        kind,
        reason: text("reason"),
        stage: text("stage"),
        plugin: text("plugin"),
        plugin_version: text("plugin_version"),
        source: Some(crate::pipeline::SourceRef {
            topic: text("source_topic").into(),
            partition: int("source_partition") as i32,
            offset: int("source_offset"),
        }),
        record: Some(Value::String(text("record"))),
        payload_base64: int("payload_base64") != 0,
        // The table cannot tell no key from an empty one.
        key: (!key.is_empty()).then_some(key),
        key_base64: int("key_base64") != 0,
        headers: match headers.as_str() {
            "" => Vec::new(),
            json => serde_json::from_str(json).context("headers")?,
        },
    };
    Ok((d, int("at") * 1000))
}
