//! One stage of a pipeline: a plugin instance plus everything that makes it safe to run.
//!
//! - Event time: the stage's watermark is the latest event time it accepted minus the allowed
//!   lateness. Events older than the watermark are late and go to the dead letters; when the
//!   watermark advances the plugin is told (`on-watermark`), so windows close.
//! - Isolation: a failing call (trap, deadline, memory, stack) dead-letters the batch with the
//!   reason and re-creates the instance from its last good state: the last checkpoint plus a
//!   replay of the calls that succeeded since (plugins are deterministic: no clock, no I/O).
//!   Replayed outputs were already delivered and are discarded.
//! - Quarantine: after `max_failures` failures in a row the stage rolls back to the previous
//!   plugin version if there is one, else stops calling the plugin and dead-letters its input.
//! - Hot swap: [`Stage::swap`] moves the state into a new version at a batch boundary.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::dead_letter::{DeadLetter, DeadLetterKind, SourceRef};
use super::Batch;
use crate::plugin::{
    EventBatch, LoadedPlugin, PluginError, PluginInstance, RawBatch, State, Timestamp,
};

mod spec;
mod swap;

use swap::build;

pub use spec::{StageCheckpoint, StageSpec, StageStats, StartError, Status, SwapError};

enum Call {
    Batch(Batch, Timestamp),
    Watermark(Timestamp),
}

pub struct Stage {
    spec: StageSpec,
    plugin: Arc<LoadedPlugin>,
    previous: Option<Arc<LoadedPlugin>>,
    instance: Option<PluginInstance>,
    status: Status,
    /// Newest event time accepted per input lane; the watermark follows the slowest lane.
    lanes: BTreeMap<i32, Timestamp>,
    watermark: Timestamp,
    checkpoint: State,
    replay_log: Vec<Call>,
    /// Events plus calls in `replay_log`.
    replay_weight: usize,
    consecutive_failures: u32,
    /// For a cleaner: the source record of each event of the last batch's output.
    origins: Vec<SourceRef>,
    pub stats: StageStats,
}

impl Stage {
    /// Start the stage's plugin, restoring `saved` state (from a previous run) if given.
    pub fn start(
        spec: StageSpec,
        plugin: Arc<LoadedPlugin>,
        saved: Option<StageCheckpoint>,
    ) -> Result<Self, StartError> {
        let (checkpoint, lanes, watermark) = match saved {
            Some(s) => (
                State {
                    version: s.state_version,
                    data: s.state,
                },
                s.lanes,
                s.watermark,
            ),
            None => (
                State {
                    version: plugin.info.state_version,
                    data: Vec::new(),
                },
                BTreeMap::new(),
                Timestamp::MIN,
            ),
        };
        let instance =
            build(&spec, &plugin, &checkpoint, watermark).map_err(|(step, error)| StartError {
                stage: spec.name.clone(),
                plugin: format!("{}@{}", plugin.name, plugin.version),
                step,
                error,
            })?;
        Ok(Stage {
            spec,
            plugin,
            previous: None,
            instance: Some(instance),
            status: Status::Running,
            lanes,
            watermark,
            checkpoint,
            replay_log: Vec::new(),
            replay_weight: 0,
            consecutive_failures: 0,
            origins: Vec::new(),
            stats: StageStats::default(),
        })
    }

    /// The source record of each event the last call emitted (cleaners only; empty otherwise).
    pub fn origins(&self) -> &[SourceRef] {
        &self.origins
    }

    /// The source records of the last output (taken: the next call collects anew).
    pub fn take_origins(&mut self) -> Vec<SourceRef> {
        let capacity = self.origins.len();
        std::mem::replace(&mut self.origins, Vec::with_capacity(capacity))
    }

    pub fn spec(&self) -> &StageSpec {
        &self.spec
    }

    pub fn plugin(&self) -> &Arc<LoadedPlugin> {
        &self.plugin
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The size of the plugin's state at the stage's last snapshot.
    pub fn state_bytes(&self) -> usize {
        self.checkpoint.data.len()
    }

    /// The input lanes the stage knows (waited for or seen).
    pub fn lane_ids(&self) -> Vec<i32> {
        self.lanes.keys().copied().collect()
    }

    /// Wait for these input lanes: the watermark does not pass a lane that has sent nothing yet.
    pub fn expect_lanes(&mut self, lanes: &[i32]) {
        for lane in lanes {
            self.lanes.entry(*lane).or_insert(Timestamp::MIN);
        }
    }

    /// Run one batch; returns the events the stage emits (including windows the batch closed).
    pub fn process(&mut self, batch: Batch, dead: &mut Vec<DeadLetter>) -> EventBatch {
        self.process_lane(batch, 0, dead)
    }

    /// Run one batch from input lane `lane` (a source partition: event time is ordered within a
    /// lane, not across lanes, so the watermark is the slowest lane's).
    pub fn process_lane(
        &mut self,
        batch: Batch,
        lane: i32,
        dead: &mut Vec<DeadLetter>,
    ) -> EventBatch {
        self.stats.batches += 1;
        self.stats.events_in += batch.len() as u64;
        self.origins.clear();
        let before = dead.len();
        let out = match self.instance.is_some() {
            false => {
                let kind = match self.status {
                    Status::Unloaded => DeadLetterKind::Unloaded,
                    _ => DeadLetterKind::Quarantined,
                };
                let reason = format!("stage {} is {:?}", self.spec.name, self.status);
                self.dead_letter_batch(&batch, kind, &reason, dead);
                EventBatch::empty()
            }
            true => match batch {
                Batch::Raw(_) => self.run_clean(batch, dead),
                Batch::Events(events) => self.run_process(events, lane, dead),
            },
        };
        self.stats.dead_letters += (dead.len() - before) as u64;
        for d in &dead[before..] {
            self.stats.dead_by_kind[d.kind.index()] += 1;
        }
        self.stats.events_out += out.len() as u64;
        self.maybe_checkpoint(dead);
        out
    }

    /// Move the watermark to `to` if it is ahead (tests and tools; normally event times drive it).
    pub fn advance_to(&mut self, to: Timestamp, dead: &mut Vec<DeadLetter>) -> EventBatch {
        let mut out = EventBatch::empty();
        if to > self.watermark {
            let seen = to.saturating_add(self.spec.allowed_lateness_ms);
            if self.lanes.is_empty() {
                self.lanes.insert(0, seen);
            }
            for lane in self.lanes.values_mut() {
                *lane = (*lane).max(seen);
            }
            self.advance(to, &mut out, dead);
        }
        self.stats.events_out += out.len() as u64;
        out
    }

    /// End of input: advance the watermark past everything so every open window closes.
    pub fn flush(&mut self, dead: &mut Vec<DeadLetter>) -> EventBatch {
        let mut out = EventBatch::empty();
        if self.instance.is_some() && self.watermark < Timestamp::MAX {
            self.advance(Timestamp::MAX, &mut out, dead);
        }
        self.stats.events_out += out.len() as u64;
        out
    }

    fn run_clean(&mut self, batch: Batch, dead: &mut Vec<DeadLetter>) -> EventBatch {
        let Batch::Raw(records) = &batch else {
            unreachable!()
        };
        let instance = self.instance.as_mut().expect("running");
        instance.set_watermark(self.watermark);
        let started = Instant::now();
        let result = instance.clean(&RawBatch::from_records(records));
        self.stats.calls.observe(started.elapsed());
        match result {
            Ok(cleaned) => {
                self.consecutive_failures = 0;
                let mut topic: Option<Arc<str>> = None;
                self.origins.reserve(cleaned.origins.len());
                for &i in &cleaned.origins {
                    let record = &records[i as usize];
                    let topic = match &topic {
                        Some(t) if **t == *record.topic => t.clone(),
                        _ => topic.insert(record.topic.as_str().into()).clone(),
                    };
                    self.origins.push(SourceRef {
                        topic,
                        partition: record.partition,
                        offset: record.offset,
                    });
                }
                for rejection in cleaned.rejections {
                    dead.push(DeadLetter::raw(
                        &self.spec.name,
                        &self.plugin,
                        DeadLetterKind::Rejected,
                        rejection.reason,
                        &records[rejection.index as usize],
                    ));
                }
                self.log(Call::Batch(batch, self.watermark));
                cleaned.events
            }
            Err(error) => {
                self.fail(error, Some(batch), dead);
                EventBatch::empty()
            }
        }
    }

    fn run_process(
        &mut self,
        events: Arc<EventBatch>,
        lane: i32,
        dead: &mut Vec<DeadLetter>,
    ) -> EventBatch {
        let watermark = self.watermark;
        let all_on_time = events.times().all(|t| t >= watermark);
        let on_time = match all_on_time {
            true => events,
            false => {
                let keep: Vec<bool> = events.times().map(|t| t >= watermark).collect();
                let late: Vec<bool> = keep.iter().map(|k| !k).collect();
                for event in events.select(&late).rows() {
                    let reason = format!(
                        "event time {} is before the watermark {} (allowed lateness {} ms)",
                        crate::plugin::event_time(&event),
                        watermark,
                        self.spec.allowed_lateness_ms
                    );
                    dead.push(DeadLetter::event(
                        &self.spec.name,
                        &self.plugin,
                        DeadLetterKind::Late,
                        reason,
                        &event,
                    ));
                }
                Arc::new(events.select(&keep))
            }
        };
        let mut out = EventBatch::empty();
        let Some(newest) = on_time.times().max() else {
            return out;
        };
        let instance = self.instance.as_mut().expect("running");
        instance.set_watermark(watermark);
        let started = Instant::now();
        let result = instance.process(&on_time);
        self.stats.calls.observe(started.elapsed());
        match result {
            Ok(emitted) => {
                self.consecutive_failures = 0;
                out = emitted;
                self.log(Call::Batch(Batch::Events(on_time), watermark));
                let seen = self.lanes.entry(lane).or_insert(Timestamp::MIN);
                *seen = (*seen).max(newest);
                let slowest = self.lanes.values().copied().min().unwrap_or(newest);
                let next = slowest.saturating_sub(self.spec.allowed_lateness_ms);
                if next > self.watermark {
                    self.advance(next, &mut out, dead);
                }
            }
            Err(error) => self.fail(error, Some(Batch::Events(on_time)), dead),
        }
        out
    }

    fn advance(&mut self, to: Timestamp, out: &mut EventBatch, dead: &mut Vec<DeadLetter>) {
        let Some(instance) = self.instance.as_mut() else {
            return;
        };
        match instance.on_watermark(to) {
            Ok(emitted) => {
                self.consecutive_failures = 0;
                self.watermark = to;
                self.log(Call::Watermark(to));
                out.append(emitted);
            }
            Err(error) => {
                // The watermark stays where it was: the next batch retries closing the windows.
                dead.push(DeadLetter::note(
                    &self.spec.name,
                    &self.plugin,
                    DeadLetterKind::PluginFailure,
                    format!("advancing the watermark to {to} failed: {error}"),
                ));
                self.fail(error, None, dead);
            }
        }
    }

    fn log(&mut self, call: Call) {
        self.replay_weight += 1 + match &call {
            Call::Batch(batch, _) => batch.len(),
            Call::Watermark(_) => 0,
        };
        self.replay_log.push(call);
    }

    fn clear_log(&mut self) {
        self.replay_log.clear();
        self.replay_weight = 0;
    }

    fn maybe_checkpoint(&mut self, dead: &mut Vec<DeadLetter>) {
        if self.replay_weight < self.spec.checkpoint_every {
            return;
        }
        let Some(instance) = self.instance.as_mut() else {
            return;
        };
        match instance.snapshot() {
            Ok(state) => {
                self.checkpoint = state;
                self.clear_log();
            }
            Err(error) => self.fail(error, None, dead),
        }
    }

    fn dead_letter_batch(
        &self,
        batch: &Batch,
        kind: DeadLetterKind,
        reason: &str,
        dead: &mut Vec<DeadLetter>,
    ) {
        match batch {
            Batch::Raw(records) => dead.extend(records.iter().map(|r| {
                DeadLetter::raw(&self.spec.name, &self.plugin, kind, reason.to_string(), r)
            })),
            Batch::Events(events) => dead.extend(events.rows().iter().map(|e| {
                DeadLetter::event(&self.spec.name, &self.plugin, kind, reason.to_string(), e)
            })),
        }
    }

    /// A call failed: dead-letter its batch, then re-create the instance or quarantine.
    fn fail(&mut self, error: PluginError, batch: Option<Batch>, dead: &mut Vec<DeadLetter>) {
        self.stats.failures += 1;
        self.stats.failures_by_kind[error.kind()] += 1;
        self.consecutive_failures += 1;
        if let Some(batch) = &batch {
            let reason = format!("plugin failed: {error}");
            self.dead_letter_batch(batch, DeadLetterKind::PluginFailure, &reason, dead);
        }
        tracing::warn!(
            stage = %self.spec.name,
            plugin = %self.plugin.name,
            version = %self.plugin.version,
            %error,
            consecutive = self.consecutive_failures,
            "plugin call failed; batch dead-lettered"
        );
        self.instance = None;
        if self.consecutive_failures >= self.spec.max_failures {
            self.quarantine();
        } else if let Err((step, error)) = self.rebuild() {
            tracing::error!(stage = %self.spec.name, step, %error, "could not re-create the plugin instance");
            self.quarantine();
        }
    }

    /// Instance from the last checkpoint, then replay of the calls since (outputs discarded).
    fn rebuild(&mut self) -> Result<(), (&'static str, PluginError)> {
        let mut instance = build(&self.spec, &self.plugin, &self.checkpoint, Timestamp::MIN)?;
        for call in &self.replay_log {
            match call {
                Call::Batch(Batch::Raw(records), wm) => {
                    instance.set_watermark(*wm);
                    (instance.clean(&RawBatch::from_records(records)))
                        .map_err(|e| ("replay", e))?;
                }
                Call::Batch(Batch::Events(events), wm) => {
                    instance.set_watermark(*wm);
                    instance.process(events).map_err(|e| ("replay", e))?;
                }
                Call::Watermark(wm) => {
                    instance.on_watermark(*wm).map_err(|e| ("replay", e))?;
                }
            }
        }
        instance.set_watermark(self.watermark);
        self.instance = Some(instance);
        Ok(())
    }

    fn quarantine(&mut self) {
        self.consecutive_failures = 0;
        self.stats.quarantines += 1;
        if let Some(previous) = self.previous.take() {
            self.stats.rollbacks += 1;
            tracing::error!(
                stage = %self.spec.name,
                plugin = %self.plugin.name,
                failed_version = %self.plugin.version,
                restored_version = %previous.version,
                "plugin quarantined after repeated failures; rolled back to the previous version"
            );
            self.plugin = previous;
            if let Err((step, error)) = self.rebuild() {
                tracing::error!(stage = %self.spec.name, step, %error, "previous version cannot take the state either");
                self.stop(Status::Quarantined);
            } else {
                self.status = Status::Running;
            }
        } else {
            self.stop(Status::Quarantined);
            tracing::error!(
                stage = %self.spec.name,
                plugin = %self.plugin.name,
                version = %self.plugin.version,
                "plugin quarantined after repeated failures and there is no previous version; its input goes to the dead letters until a new version is installed"
            );
        }
    }

    fn stop(&mut self, status: Status) {
        self.instance = None;
        self.status = status;
    }
}
