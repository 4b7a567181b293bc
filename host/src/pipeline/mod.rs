//! The plugin chain: stages wired by named streams, in dependency order.
//!
//! A batch pushed into a stream goes to every stage reading that stream; each stage's output is
//! returned under the stage's output stream ([`Outputs`]) and pushed on to the stages reading
//! that one, so `cleaner -> aggregator -> alert rule` is three stages and two streams.
//! Everything a stage could not process is returned as a dead letter. The pipeline writes
//! nothing itself: the caller hands the outputs to the sinks.
//!
//! [`shards`] keeps one pipeline per shard (Kafka partition, or the local one).

pub mod dead_letter;
mod output;
pub mod shadow;
pub mod shards;
pub mod stage;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

pub use dead_letter::{event_from_value, event_json, DeadLetter, DeadLetterKind, SourceRef};
pub use output::{Output, Outputs, Provenance};
pub use shadow::{ShadowDeadLetter, ShadowOutput, ShadowSpec};
pub use shards::{OnBadState, ShardId, Shards};
pub use stage::{Stage, StageCheckpoint, StageSpec, StageStats, StartError, Status, SwapError};

use crate::plugin::{Event, EventBatch, LoadedPlugin, RawRecord};
use crate::sources::TopicPartition;

/// The lane of events emitted on watermark advances (already in event-time order).
pub const DERIVED_LANE: i32 = -1;

/// Lanes of a stage's second, third... input are kept apart from its first input's:
/// lane `l` of input `k` is `k * LANE_STRIDE + l` inside the stage.
pub const LANE_STRIDE: i32 = 100_000;

fn lane_of_input(input: usize, lane: i32) -> i32 {
    input as i32 * LANE_STRIDE + lane
}

/// A batch of records: raw (for cleaners) or typed events, in columns. Events are shared: every
/// stage reading a stream gets the same batch (and keeps it in its replay log) without a copy.
#[derive(Debug, Clone)]
pub enum Batch {
    Raw(Vec<RawRecord>),
    Events(Arc<EventBatch>),
}

impl Batch {
    /// A batch of these rows, in columns (typed sources, the harness, tests).
    pub fn events(events: Vec<Event>) -> Self {
        Batch::Events(Arc::new(EventBatch::from_rows(&events)))
    }

    pub fn len(&self) -> usize {
        match self {
            Batch::Raw(r) => r.len(),
            Batch::Events(e) => e.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The outcome of offering a new plugin version to the stages that run it.
#[derive(Debug)]
pub struct SwapOutcome {
    pub stage: String,
    pub result: Result<Duration, SwapError>,
}

#[derive(Debug, Clone)]
struct Labels {
    stage: Arc<str>,
    stream: Arc<str>,
    plugin: Arc<str>,
    version: Arc<str>,
}

impl Labels {
    fn of(stage: &Stage) -> Self {
        Labels {
            stage: stage.spec().name.as_str().into(),
            stream: stage.spec().output.as_str().into(),
            plugin: stage.plugin().name.as_str().into(),
            version: stage.plugin().version.as_str().into(),
        }
    }
}

pub struct Pipeline {
    stages: Vec<Stage>,
    /// Stream -> (stage, which of the stage's inputs it is).
    consumers: HashMap<String, Vec<(usize, usize)>>,
    pub dead_letters: u64,
    /// Alert events emitted, over all stages.
    pub alerts: u64,
    /// Per stage: its name, output stream, plugin and version as shared strings, for the
    /// provenance of every output batch (refreshed when a swap changes the version).
    labels: Vec<Labels>,
    /// The highest offset read per topic-partition (shared with the outputs' provenance).
    positions: Arc<BTreeMap<TopicPartition, i64>>,
    /// The source partition this pipeline is the shard of (`None`: unpartitioned sources).
    partition: Option<i32>,
    shadows: Vec<shadow::Shadow>,
}

impl Pipeline {
    /// `stages` must be in dependency order (see `config::PipelineConfig::validate`).
    pub fn new(mut stages: Vec<Stage>) -> Self {
        let mut consumers: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (i, stage) in stages.iter().enumerate() {
            for (k, input) in stage.spec().inputs.iter().enumerate() {
                consumers.entry(input.clone()).or_default().push((i, k));
            }
        }
        // A stream emitted on watermark advances (an aggregator's windows) is one lane; wait
        // for it from the start, or a stage reading it beside a faster stream would see the
        // faster one push its watermark past everything the slow one sends.
        let derived: Vec<String> = stages
            .iter()
            .filter(|s| s.plugin().info.kind != crate::plugin::PluginKind::Cleaner)
            .map(|s| s.spec().output.clone())
            .collect();
        for stream in derived {
            for &(i, k) in consumers.get(&stream).into_iter().flatten() {
                stages[i].expect_lanes(&[lane_of_input(k, DERIVED_LANE)]);
            }
        }
        Pipeline {
            labels: stages.iter().map(Labels::of).collect(),
            stages,
            consumers,
            dead_letters: 0,
            alerts: 0,
            positions: Arc::default(),
            partition: None,
            shadows: Vec::new(),
        }
    }

    /// Make this pipeline the shard of a source partition (recorded with its outputs).
    pub fn with_partition(mut self, partition: Option<i32>) -> Self {
        self.partition = partition;
        self
    }

    pub fn partition(&self) -> Option<i32> {
        self.partition
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Run a batch from `stream` through every stage downstream of it.
    pub fn push(&mut self, stream: &str, batch: Batch) -> Outputs {
        self.push_lane(stream, batch, 0)
    }

    /// Run a batch from one lane (source partition) of `stream`. Cleaners keep the lane (their
    /// output is as ordered as their input); other stages emit in watermark order, one lane.
    pub fn push_lane(&mut self, stream: &str, batch: Batch, lane: i32) -> Outputs {
        if let Batch::Raw(records) = &batch {
            self.track_positions(records);
        }
        let mut outputs = Outputs::default();
        let mut dead = Vec::new();
        let mut queue = VecDeque::from([(stream.to_string(), batch, lane)]);
        while let Some((stream, batch, lane)) = queue.pop_front() {
            let Some(consumers) = self.consumers.get(&stream) else {
                continue;
            };
            let n = consumers.len();
            let mut batch = Some(batch);
            for (c, &(i, k)) in consumers.clone().iter().enumerate() {
                let input = if c + 1 == n {
                    batch.take().expect("moved once")
                } else {
                    batch.as_ref().expect("still here").clone()
                };
                let shadowed = self
                    .shadows
                    .iter()
                    .any(|s| s.of == i)
                    .then(|| input.clone());
                let out = self.stages[i].process_lane(input, lane_of_input(k, lane), &mut dead);
                if let Some(input) = shadowed {
                    self.run_shadows(i, &input, lane_of_input(k, lane), &mut outputs);
                }
                let out_lane = match self.stages[i].plugin().info.kind {
                    crate::plugin::PluginKind::Cleaner => lane,
                    _ => DERIVED_LANE,
                };
                self.emit(i, out, out_lane, &mut queue, &mut outputs);
            }
        }
        self.count_dead(&dead);
        outputs.dead_letters.extend(dead);
        outputs
    }

    fn track_positions(&mut self, records: &[RawRecord]) {
        // Batches hold runs of one topic-partition: one map update per run, not per record.
        let mut i = 0;
        while i < records.len() {
            let (topic, partition) = (&records[i].topic, records[i].partition);
            let mut newest = records[i].offset;
            let mut j = i + 1;
            while j < records.len()
                && records[j].partition == partition
                && &records[j].topic == topic
            {
                newest = newest.max(records[j].offset);
                j += 1;
            }
            let key = TopicPartition::new(topic.as_str(), partition);
            if self.positions.get(&key).is_none_or(|&at| newest > at) {
                // Copied on write: outputs already returned keep the positions they had.
                Arc::make_mut(&mut self.positions).insert(key, newest);
            }
            i = j;
        }
    }

    /// A partitioned source will deliver `stream` in these lanes: stages reading it (directly or
    /// through cleaners) hold their watermark until every lane has delivered.
    pub fn expect_lanes(&mut self, stream: &str, lanes: &[i32]) {
        let Some(consumers) = self.consumers.get(stream).cloned() else {
            return;
        };
        for (i, k) in consumers {
            let keyed: Vec<i32> = lanes.iter().map(|&l| lane_of_input(k, l)).collect();
            self.stages[i].expect_lanes(&keyed);
            for s in self.shadows.iter_mut().filter(|s| s.of == i) {
                s.stage.expect_lanes(&keyed);
            }
            if self.stages[i].plugin().info.kind == crate::plugin::PluginKind::Cleaner {
                let output = self.stages[i].spec().output.clone();
                self.expect_lanes(&output, lanes);
            }
        }
    }

    /// End of input: close every window, upstream stages first.
    pub fn flush_windows(&mut self) -> Outputs {
        let mut outputs = Outputs::default();
        for i in 0..self.stages.len() {
            let mut dead = Vec::new();
            let out = self.stages[i].flush(&mut dead);
            self.flush_shadows(i, &mut outputs);
            self.count_dead(&dead);
            outputs.dead_letters.extend(dead);
            let mut queue = VecDeque::new();
            self.emit(i, out, DERIVED_LANE, &mut queue, &mut outputs);
            for (stream, batch, lane) in queue {
                let more = self.push_lane(&stream, batch, lane);
                outputs.extend(more);
            }
        }
        outputs
    }

    fn emit(
        &mut self,
        stage: usize,
        out: EventBatch,
        lane: i32,
        queue: &mut VecDeque<(String, Batch, i32)>,
        outputs: &mut Outputs,
    ) {
        if out.is_empty() {
            return;
        }
        let s = &mut self.stages[stage];
        let origins = s.take_origins();
        if *self.labels[stage].version != s.plugin().version {
            self.labels[stage] = Labels::of(s); // a new plugin version since the last output
        }
        let labels = &self.labels[stage];
        let provenance = Provenance {
            stage: labels.stage.clone(),
            plugin: labels.plugin.clone(),
            version: labels.version.clone(),
            origins: if origins.len() == out.len() {
                origins
            } else {
                Vec::new()
            },
            positions: self.positions.clone(),
            partition: self.partition,
        };
        self.alerts += out.alerts() as u64;
        let events = Arc::new(out);
        outputs.batches.push(Output {
            stream: labels.stream.clone(),
            provenance,
            events: events.clone(),
        });
        queue.push_back((labels.stream.to_string(), Batch::Events(events), lane));
    }

    fn count_dead(&mut self, dead: &[DeadLetter]) {
        self.dead_letters += dead.len() as u64;
    }

    /// Offer a new version of a plugin to every stage running it.
    pub fn swap(&mut self, plugin: &Arc<LoadedPlugin>) -> Vec<SwapOutcome> {
        self.stages
            .iter_mut()
            .chain(self.shadows.iter_mut().map(|s| &mut s.stage))
            .filter(|s| s.spec().plugin == plugin.name && s.plugin().version != plugin.version)
            .map(|s| SwapOutcome {
                stage: s.spec().name.clone(),
                result: s.swap(plugin.clone()),
            })
            .collect()
    }

    /// The pipeline config changed: stages whose parameters changed take the new ones (with their
    /// state). Anything else that changed (new stages, wiring, plugins, limits) needs a restart
    /// and is returned as a note per stage.
    pub fn reconfigure(&mut self, specs: &[StageSpec]) -> (Vec<SwapOutcome>, Vec<String>) {
        let current: Vec<StageSpec> = self.stages.iter().map(|s| s.spec().clone()).collect();
        let restart = Self::restart_notes(&current, specs);
        let mut outcomes = Vec::new();
        for spec in specs {
            let Some(stage) = self.stages.iter_mut().find(|s| s.spec().name == spec.name) else {
                continue;
            };
            let current = stage.spec();
            let same_wiring = current.plugin == spec.plugin
                && current.inputs == spec.inputs
                && current.output == spec.output;
            if same_wiring && current.params != spec.params {
                outcomes.push(SwapOutcome {
                    stage: spec.name.clone(),
                    result: stage.reconfigure(spec.params.clone()),
                });
            }
        }
        (outcomes, restart)
    }

    /// What in `new` differs from `current` beyond parameters: applied only by a restart.
    pub fn restart_notes(current: &[StageSpec], new: &[StageSpec]) -> Vec<String> {
        let mut notes = Vec::new();
        for spec in new {
            match current.iter().find(|s| s.name == spec.name) {
                None => notes.push(format!("stage {} is new", spec.name)),
                Some(c)
                    if c.plugin != spec.plugin
                        || c.inputs != spec.inputs
                        || c.output != spec.output =>
                {
                    notes.push(format!("stage {} is wired differently", spec.name))
                }
                Some(_) => {}
            }
        }
        notes
    }

    /// The plugin's file was removed: its stages stop (keeping state) until it comes back.
    pub fn unload(&mut self, plugin: &str) -> Vec<String> {
        self.stages
            .iter_mut()
            .filter(|s| s.spec().plugin == plugin && s.status() != Status::Unloaded)
            .map(|s| {
                s.unload();
                s.spec().name.clone()
            })
            .collect()
    }

    /// Every stage's state, for persisting at shutdown.
    pub fn save(&mut self) -> Result<BTreeMap<String, StageCheckpoint>, SwapError> {
        self.stages
            .iter_mut()
            .chain(self.shadows.iter_mut().map(|s| &mut s.stage))
            .map(|s| Ok((s.spec().name.clone(), s.save()?)))
            .collect()
    }
}
