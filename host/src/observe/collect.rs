//! The pipeline thread's side: fold the stages' counters into series per plugin version, keep
//! partition positions, history and recent alerts, and publish a [`Live`] snapshot.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    now_ms, CheckpointLive, DeadLetterSeen, HistoryEntry, Live, PartitionLive, RatePoint,
    Readiness, SinkMeter, SourceNode, StageLive, StageSeries, Telemetry,
};
use crate::pipeline::{Outputs, ShardId, Shards, StageStats, Status};
use crate::plugin::{Event, Timestamp};
use crate::sources::{HighWatermarks, SourceConfig};

/// How often the snapshot is refreshed.
pub const EVERY: Duration = Duration::from_secs(1);
const KEEP_HISTORY: usize = 200;
const KEEP_RECENT: usize = 50;
/// Rate points kept: five minutes at one a second.
const KEEP_RATES: usize = 300;

/// (stage, plugin, version)
type SeriesKey = (String, String, String);

pub struct Collector {
    telemetry: Arc<Telemetry>,
    started: Instant,
    sources: Vec<SourceNode>,
    partitioned: bool,
    sinks: Vec<Arc<SinkMeter>>,
    high_watermarks: Option<HighWatermarks>,
    /// Every stage seen this run, in the order first seen (the page's rows).
    known: Vec<StageLive>,
    /// What each open shard's stages had counted at the last collection.
    seen: HashMap<(ShardId, String), StageStats>,
    series: BTreeMap<SeriesKey, StageStats>,
    positions: BTreeMap<(String, i32), i64>,
    checkpointed: BTreeMap<i32, (Instant, Duration)>,
    checkpoints: CheckpointLive,
    last_checkpoint: Option<Instant>,
    assigned: bool,
    history: VecDeque<HistoryEntry>,
    /// The shadows' last reports.
    shadows: Vec<super::ShadowLive>,
    alerts: VecDeque<serde_json::Value>,
    dead_letters: VecDeque<DeadLetterSeen>,
    rates: VecDeque<RatePoint>,
    last_publish: Option<(Instant, u64, BTreeMap<String, u64>)>,
    stopping: bool,
}

impl Collector {
    pub fn new(telemetry: Arc<Telemetry>, sources: &[SourceConfig]) -> Collector {
        Collector {
            telemetry,
            started: Instant::now(),
            sources: sources.iter().map(source_node).collect(),
            partitioned: sources.iter().any(|s| s.is_partitioned()),
            sinks: Vec::new(),
            high_watermarks: None,
            known: Vec::new(),
            seen: HashMap::new(),
            series: BTreeMap::new(),
            positions: BTreeMap::new(),
            checkpointed: BTreeMap::new(),
            checkpoints: CheckpointLive::default(),
            last_checkpoint: None,
            assigned: false,
            history: VecDeque::new(),
            shadows: Vec::new(),
            alerts: VecDeque::new(),
            dead_letters: VecDeque::new(),
            rates: VecDeque::new(),
            last_publish: None,
            stopping: false,
        }
    }

    pub fn with_sinks(mut self, meters: Vec<Arc<SinkMeter>>) -> Self {
        self.sinks = meters;
        self
    }

    pub fn with_high_watermarks(mut self, marks: Option<HighWatermarks>) -> Self {
        self.high_watermarks = marks;
        self
    }

    /// A batch of `topic`'s `partition` was read up to `last_offset`.
    pub fn read(&mut self, topic: &str, partition: i32, last_offset: i64) {
        match self.positions.get_mut(&(topic.to_string(), partition)) {
            Some(p) => *p = last_offset + 1,
            None => {
                self.positions
                    .insert((topic.to_string(), partition), last_offset + 1);
            }
        }
    }

    /// Keep the newest alerts and dead letters of a push.
    pub fn outputs(&mut self, outputs: &Outputs) {
        for o in outputs.batches.iter().filter(|o| o.events.alerts() > 0) {
            for event in o.events.rows() {
                if let Event::Alert(_) = &event {
                    let mut json = crate::pipeline::event_json(&event);
                    if let serde_json::Value::Object(map) = &mut json {
                        map.insert("_stage".into(), (&*o.provenance.stage).into());
                    }
                    push_bounded(&mut self.alerts, json, KEEP_RECENT);
                }
            }
        }
        let skip = outputs.dead_letters.len().saturating_sub(KEEP_RECENT);
        for d in &outputs.dead_letters[skip..] {
            let seen = DeadLetterSeen {
                kind: d.kind.label().to_string(),
                reason: d.reason.clone(),
                stage: d.stage.clone(),
                source: (d.source.as_ref())
                    .map(|s| format!("{}:{}@{}", s.topic, s.partition, s.offset)),
            };
            push_bounded(&mut self.dead_letters, seen, KEEP_RECENT);
        }
    }

    /// The consumer group assigned partitions (the source is connected).
    pub fn assigned(&mut self) {
        self.assigned = true;
    }

    /// A checkpoint covering `partitions` took `took`.
    pub fn checkpointed(&mut self, partitions: impl IntoIterator<Item = i32>, took: Duration) {
        let now = Instant::now();
        for p in partitions {
            self.checkpointed.insert(p, (now, took));
        }
        self.checkpoints.count += 1;
        self.checkpoints.last_duration_secs = Some(took.as_secs_f64());
        self.last_checkpoint = Some(now);
    }

    /// Something changed a stage (hot swap, parameters, unload): recorded in the history.
    pub fn history(&mut self, mut entry: HistoryEntry) {
        entry.at_ms = now_ms();
        tracing::debug!(kind = %entry.kind, stage = %entry.stage, version = %entry.version, "pipeline history");
        push_bounded(&mut self.history, entry, KEEP_HISTORY);
    }

    /// The host is stopping: not ready any more.
    pub fn stopping(&mut self) {
        self.stopping = true;
    }

    /// Fold what every open stage counted since the last collection into the series of its
    /// current plugin version. Call before anything changes versions or closes shards.
    pub fn collect(&mut self, shards: &Shards) {
        let mut open = HashMap::with_capacity(self.seen.len());
        for (shard, pipeline) in shards.iter() {
            for stage in pipeline.stages() {
                let key = (*shard, stage.spec().name.clone());
                let delta = match self.seen.remove(&key) {
                    Some(before) => stage.stats.since(&before),
                    None => stage.stats.clone(),
                };
                let plugin = stage.plugin();
                if delta.quarantines > 0 {
                    let rolled_back = delta.rollbacks > 0;
                    self.history(HistoryEntry {
                        kind: if rolled_back {
                            "rollback"
                        } else {
                            "quarantine"
                        }
                        .into(),
                        stage: stage.spec().name.clone(),
                        plugin: plugin.name.clone(),
                        version: plugin.version.clone(),
                        detail: match rolled_back {
                            true => format!(
                                "shard {shard}: repeated failures; rolled back to {}",
                                plugin.version
                            ),
                            false => format!(
                                "shard {shard}: repeated failures; input goes to the dead letters"
                            ),
                        },
                        ..Default::default()
                    });
                }
                let series = (
                    stage.spec().name.clone(),
                    plugin.name.clone(),
                    plugin.version.clone(),
                );
                self.series.entry(series).or_default().add(&delta);
                open.insert(key, stage.stats.clone());
            }
        }
        self.seen = open;
    }

    /// The shadows' reports as of now (published with the next snapshot).
    pub fn shadows(&mut self, reports: Vec<super::ShadowLive>) {
        self.shadows = reports;
    }

    /// Collect and publish when a second has passed since the last snapshot.
    pub fn tick(&mut self, shards: &Shards, records_in: u64) {
        if self
            .last_publish
            .as_ref()
            .is_none_or(|(t, ..)| t.elapsed() >= EVERY)
        {
            self.publish(shards, records_in);
        }
    }

    /// Collect and publish now.
    pub fn publish(&mut self, shards: &Shards, records_in: u64) {
        self.collect(shards);
        let now = Instant::now();
        let uptime = self.started.elapsed().as_secs_f64();
        let (elapsed, records_before, mut events_before) = match self.last_publish.take() {
            Some((t, r, e)) => ((now - t).as_secs_f64(), r, e),
            None => (uptime, 0, BTreeMap::new()),
        };
        let stages = self.stages(shards, elapsed, &mut events_before);
        let partitions = self.partitions(shards, now);
        let lag: i64 = partitions.iter().filter_map(|p| p.lag).sum();
        let point = RatePoint {
            uptime_secs: uptime,
            records_per_sec: (records_in - records_before) as f64 / elapsed.max(1e-9),
            lag,
        };
        push_bounded(&mut self.rates, point, KEEP_RATES);
        let sinks: Vec<_> = self.sinks.iter().map(|m| m.read()).collect();
        let ready = self.readiness(&sinks);
        let mut checkpoints = self.checkpoints.clone();
        checkpoints.last_age_secs = self.last_checkpoint.map(|t| (now - t).as_secs_f64());
        let series = self.series(shards);
        self.telemetry.publish(Live {
            uptime_secs: uptime,
            at_ms: now_ms(),
            records_in,
            sources: self.sources.clone(),
            stages,
            sinks,
            partitions,
            checkpoints,
            history: self.history.iter().cloned().collect(),
            alerts: self.alerts.iter().cloned().collect(),
            dead_letters: self.dead_letters.iter().cloned().collect(),
            rates: self.rates.iter().cloned().collect(),
            ready,
            shadows: self.shadows.clone(),
            series,
        });
        self.last_publish = Some((now, records_in, events_before));
    }

    /// One row per stage name, over shards and versions; `events_before` (events in per stage
    /// at the last snapshot) is updated for the next rate.
    fn stages(
        &mut self,
        shards: &Shards,
        elapsed: f64,
        events_before: &mut BTreeMap<String, u64>,
    ) -> Vec<StageLive> {
        // Every stage seen this run stays on the page, `idle` while no shard is open (a host
        // with no partitions assigned, between rebalances, after the end of the input).
        let mut rows: BTreeMap<String, StageLive> = (self.known.iter())
            .map(|k| (k.name.clone(), k.clone()))
            .collect();
        for (_, pipeline) in shards.iter() {
            for stage in pipeline.stages() {
                let spec = stage.spec();
                let row = rows.entry(spec.name.clone()).or_insert_with(|| {
                    let template = StageLive {
                        name: spec.name.clone(),
                        plugin: stage.plugin().name.clone(),
                        kind: kind_name(stage.plugin().info.kind),
                        inputs: spec.inputs.clone(),
                        output: spec.output.clone(),
                        status: "idle".into(),
                        ..Default::default()
                    };
                    self.known.push(template.clone());
                    template
                });
                if row.shards == 0 {
                    row.status = "running".into();
                    row.version = stage.plugin().version.clone();
                }
                row.shards += 1;
                row.state_bytes += stage.state_bytes() as u64;
                match stage.status() {
                    Status::Running => {}
                    Status::Quarantined => row.status = "quarantined".into(),
                    Status::Unloaded if row.status == "running" => row.status = "unloaded".into(),
                    Status::Unloaded => {}
                }
            }
        }
        for known in &mut self.known {
            if let Some(row) = rows.get(&known.name).filter(|r| r.shards > 0) {
                known.version = row.version.clone(); // shown while idle: the version that ran last
            }
        }
        // Totals from the series, so the page and /metrics agree.
        let mut calls: BTreeMap<&str, super::Latency> = BTreeMap::new();
        for ((stage, ..), s) in &self.series {
            let Some(row) = rows.get_mut(stage) else {
                continue;
            };

            row.events_in += s.events_in;
            row.events_out += s.events_out;
            row.failures += s.failures;
            row.dead_letters += s.dead_letters;
            row.swaps += s.swaps;
            calls.entry(stage).or_default().add(&s.calls);
        }
        for row in rows.values_mut() {
            let before = events_before
                .insert(row.name.clone(), row.events_in)
                .unwrap_or(0);
            row.rate_in = row.events_in.saturating_sub(before) as f64 / elapsed.max(1e-9);
            row.mean_call_ms = calls
                .get(row.name.as_str())
                .map_or(0.0, |l| l.mean_secs() * 1e3);
        }
        (self.known.iter())
            .filter_map(|k| rows.remove(&k.name))
            .collect()
    }

    fn partitions(&self, shards: &Shards, now: Instant) -> Vec<PartitionLive> {
        let marks = self
            .high_watermarks
            .as_ref()
            .map(|m| m.lock().clone())
            .unwrap_or_default();
        let mut watermarks: BTreeMap<i32, Timestamp> = BTreeMap::new();
        for (shard, pipeline) in shards.iter() {
            if let ShardId::Partition(p) = shard {
                let slowest = (pipeline.stages().iter())
                    .map(|s| s.watermark())
                    .filter(|&w| w > Timestamp::MIN && w < Timestamp::MAX)
                    .min();
                if let Some(w) = slowest {
                    watermarks.insert(*p, w);
                }
            }
        }
        let open: Vec<i32> = (shards.ids().into_iter())
            .filter_map(|s| match s {
                ShardId::Partition(p) => Some(p),
                ShardId::Local => None,
            })
            .collect();
        let mut keys: Vec<(String, i32)> = self.positions.keys().cloned().collect();
        for (topic, p) in marks.keys() {
            if open.contains(p) && !self.positions.contains_key(&(topic.clone(), *p)) {
                keys.push((topic.clone(), *p));
            }
        }
        keys.sort();
        keys.into_iter()
            .filter(|(_, p)| open.contains(p))
            .map(|(topic, partition)| {
                let high = marks.get(&(topic.clone(), partition)).copied();
                let position = self.positions.get(&(topic.clone(), partition)).copied();
                let checkpoint = self.checkpointed.get(&partition);
                PartitionLive {
                    lag: high.map(|h| (h - position.unwrap_or(0)).max(0)),
                    position: position.unwrap_or(0),
                    high_watermark: high,
                    watermark_ms: watermarks.get(&partition).copied(),
                    checkpoint_age_secs: checkpoint.map(|(t, _)| (now - *t).as_secs_f64()),
                    checkpoint_duration_secs: checkpoint.map(|(_, d)| d.as_secs_f64()),
                    topic,
                    partition,
                }
            })
            .collect()
    }

    fn series(&self, shards: &Shards) -> Vec<StageSeries> {
        let mut state: HashMap<SeriesKey, u64> = HashMap::new();
        for (_, pipeline) in shards.iter() {
            for stage in pipeline.stages() {
                let p = stage.plugin();
                let key = (stage.spec().name.clone(), p.name.clone(), p.version.clone());
                *state.entry(key).or_default() += stage.state_bytes() as u64;
            }
        }
        (self.series.iter())
            .map(|(key, stats)| StageSeries {
                stage: key.0.clone(),
                plugin: key.1.clone(),
                version: key.2.clone(),
                stats: stats.clone(),
                state_bytes: state.get(key).copied().unwrap_or(0),
            })
            .collect()
    }

    fn readiness(&self, sinks: &[super::SinkReading]) -> Readiness {
        let mut reasons = Vec::new();
        if self.stopping {
            reasons.push("the host is stopping".to_string());
        }
        if self.partitioned && !self.assigned {
            reasons.push("the Kafka source has no partitions assigned yet".to_string());
        }
        for s in sinks.iter().filter(|s| s.failing) {
            reasons.push(format!("sink {} is retrying a failed write", s.name));
        }
        Readiness {
            ready: reasons.is_empty(),
            reasons,
        }
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, keep: usize) {
    if queue.len() == keep {
        queue.pop_front();
    }
    queue.push_back(item);
}

fn source_node(source: &SourceConfig) -> SourceNode {
    let (kind, topics) = match source {
        SourceConfig::Simulator(_) => (
            "simulator",
            crate::topics::RETAIL
                .iter()
                .map(|t| t.to_string())
                .collect(),
        ),
        SourceConfig::Ndjson(n) => ("ndjson", vec![n.topic.clone()]),
        SourceConfig::Kafka(k) => ("kafka", k.topics.clone()),
    };
    SourceNode {
        name: source.name().to_string(),
        kind: kind.into(),
        topics,
    }
}

/// `cleaner`, `aggregator`, ... (the WIT enum's case name).
fn kind_name(kind: crate::plugin::PluginKind) -> String {
    let debug = format!("{kind:?}");
    let case = debug.rsplit("::").next().unwrap_or(&debug);
    case.to_lowercase()
}
