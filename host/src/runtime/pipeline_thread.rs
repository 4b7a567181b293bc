//! The pipeline thread: every shard's plugin chain, fed from three typed channels and
//! writing what the chains return to the sinks.
//!
//! - source events (batches, end of a source), in each source's order;
//! - group events of a partitioned source (assign, revoke, lost), answered once applied;
//! - changes from the watchers (hot swap, unload, new parameters).
//!
//! Plugin calls are synchronous CPU work, so they run on this one thread. A group event is
//! applied only after every batch already sent: the source waits for the answer inside its
//! rebalance callback, so the batches queued before the event are all it sent, and they are
//! processed first. Changes land between two batches.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Receiver, Select};

mod changes;

use super::report::{summary_line, totals, RunReport};
use crate::checkpoint::Checkpoints;
use crate::hotswap::Change;
use crate::observe::Collector;
use crate::pipeline::{Batch, Outputs, ShardId, Shards};
use crate::sinks::Sink;
use crate::sources::{GroupEvent, Position, SourceBatch, SourceEvent, StopFlag};

/// The channels the pipeline thread reads.
pub struct Inputs {
    pub sources: Receiver<SourceEvent>,
    /// How many sources send on `sources` (the thread ends when all are done).
    pub running: usize,
    /// Group events of the partitioned source, if there is one.
    pub group: Option<Receiver<GroupEvent>>,
    pub changes: Receiver<Change>,
}

pub struct PipelineThread {
    pub shards: Shards,
    pub sinks: Box<dyn Sink>,
    pub checkpoints: Checkpoints,
    pub report: RunReport,
    pub collector: Collector,
    summary: bool,
    close_windows_at_end: bool,
    stop: StopFlag,
    started: Instant,
    first_batches: HashSet<(String, i32)>,
    shadows: Option<super::shadows::ShadowWatch>,
}

impl PipelineThread {
    pub fn new(
        shards: Shards,
        sinks: Box<dyn Sink>,
        checkpoints: Checkpoints,
        collector: Collector,
        (summary, close_windows_at_end): (bool, bool),
        stop: StopFlag,
    ) -> Self {
        PipelineThread {
            shards,
            sinks,
            checkpoints,
            report: RunReport::default(),
            collector,
            summary,
            close_windows_at_end,
            stop,
            started: Instant::now(),
            first_batches: HashSet::new(),
            shadows: None,
        }
    }

    /// Shadow outputs and reports (see [`super::shadows`]).
    pub fn with_shadows(mut self, shadows: super::shadows::ShadowWatch) -> Self {
        self.shadows = Some(shadows);
        self
    }

    /// Process until every source is done, then close windows (end of input, if configured)
    /// and fill in the report. The final checkpoint is the caller's ([`Self::finish`]).
    pub fn run(&mut self, inputs: Inputs) -> anyhow::Result<()> {
        let Inputs {
            sources,
            mut running,
            group,
            changes,
        } = inputs;
        let group = group.unwrap_or_else(crossbeam_channel::never);
        let mut changes = Some(changes);
        let mut last_print = Instant::now();
        let mut last_records = 0;
        let mut last_checkpoint = Instant::now();
        while running > 0 {
            let never = crossbeam_channel::never();
            let changes_rx = changes.as_ref().unwrap_or(&never);
            let mut select = Select::new();
            let (s, g, c) = (
                select.recv(&sources),
                select.recv(&group),
                select.recv(changes_rx),
            );
            let Ok(op) = select.select_timeout(crate::observe::collect::EVERY) else {
                self.collector.tick(&self.shards, self.report.records_in);
                continue;
            };
            match op.index() {
                i if i == s => match op.recv(&sources) {
                    Ok(event) => running -= self.on_source(event)?,
                    Err(_) => break,
                },
                i if i == g => {
                    if let Ok(event) = op.recv(&group) {
                        // Everything the source sent before the event goes first.
                        while let Ok(event) = sources.try_recv() {
                            running -= self.on_source(event)?;
                        }
                        self.collector.collect(&self.shards);
                        self.on_group(event)?;
                    }
                }
                i if i == c => match op.recv(changes_rx) {
                    Ok(change) => {
                        self.collector.collect(&self.shards);
                        self.on_change(change);
                        self.collector.publish(&self.shards, self.report.records_in);
                    }
                    Err(_) => changes = None, // no watchers
                },
                _ => unreachable!("three operations"),
            }
            if self.checkpoints.periodic() && last_checkpoint.elapsed() >= self.checkpoints.every {
                let started = Instant::now();
                self.checkpoints.take(&mut self.shards, &mut *self.sinks)?;
                let partitions = self.shards.ids().into_iter().filter_map(|s| match s {
                    ShardId::Partition(p) => Some(p),
                    ShardId::Local => None,
                });
                self.collector.checkpointed(partitions, started.elapsed());
                last_checkpoint = Instant::now();
            }
            self.collector.tick(&self.shards, self.report.records_in);
            if let Some(reports) = self.shadows.as_mut().and_then(|s| s.tick()) {
                self.collector.shadows(super::shadows::live_view(&reports));
            }
            if self.summary && last_print.elapsed() >= Duration::from_secs(1) {
                let records = self.report.records_in;
                let rate = (records - last_records) as f64 / last_print.elapsed().as_secs_f64();
                eprintln!(
                    "{}",
                    summary_line(&self.shards, self.started.elapsed(), records, rate)
                );
                last_print = Instant::now();
                last_records = records;
            }
        }
        if self.close_windows_at_end && !self.stop.is_stopped() {
            let ids = self.shards.ids();
            for shard in ids {
                self.flush_windows(shard)?;
            }
        }
        self.collector.stopping();
        self.collector.publish(&self.shards, self.report.records_in);
        let totals = totals(&self.shards);
        let report = &mut self.report;
        report.alerts = totals.alerts;
        report.outputs = totals.outputs;
        report.swaps = totals.swaps;
        report.failures = totals.failures;
        report.elapsed_secs = self.started.elapsed().as_secs_f64();
        if self.summary {
            let rate = report.records_in as f64 / report.elapsed_secs.max(1e-9);
            eprintln!(
                "{}",
                summary_line(
                    &self.shards,
                    self.started.elapsed(),
                    report.records_in,
                    rate
                )
            );
        }
        Ok(())
    }

    /// The last checkpoint (every sink flushed first), and the dead letters of the whole run.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        self.checkpoints
            .take_now(&mut self.shards, &mut *self.sinks)?;
        self.collector.checkpointed([], started.elapsed());
        self.collector.publish(&self.shards, self.report.records_in);
        if let Some(shadows) = &mut self.shadows {
            let reports = shadows.write_reports();
            self.collector.shadows(super::shadows::live_view(&reports));
            self.collector.publish(&self.shards, self.report.records_in);
        }
        let shards = &self.shards;
        self.report.dead_letters =
            shards.retired.dead_letters + shards.iter().map(|(_, p)| p.dead_letters).sum::<u64>();
        Ok(())
    }

    fn write(&mut self, outputs: &Outputs) -> anyhow::Result<()> {
        self.collector.outputs(outputs);
        self.shadows.iter_mut().for_each(|s| s.observe(outputs));
        self.sinks
            .write_outputs(outputs)
            .context("writing pipeline outputs")
    }

    fn flush_windows(&mut self, shard: ShardId) -> anyhow::Result<()> {
        if let Some(pipeline) = self.shards.get_mut(shard) {
            let outputs = pipeline.flush_windows();
            self.write(&outputs)
                .context("closing windows at end of input")?;
        }
        Ok(())
    }

    /// A source event; returns how many sources ended with it (0 or 1).
    fn on_source(&mut self, event: SourceEvent) -> anyhow::Result<usize> {
        match event {
            SourceEvent::Batch(batch) => {
                self.on_batch(batch)?;
                Ok(0)
            }
            SourceEvent::Done { source, error } => {
                if let Some(e) = error {
                    self.report.source_errors.push(format!("{source}: {e}"));
                }
                Ok(1)
            }
        }
    }

    fn on_batch(&mut self, batch: SourceBatch) -> anyhow::Result<()> {
        let SourceBatch {
            source,
            topic,
            records,
            position,
        } = batch;
        // Partitioned sources deliver one partition per batch: that is the shard and the lane.
        let (shard, lane) = match &position {
            Position::Offset { partition, .. } => {
                (ShardId::Partition(partition.partition), partition.partition)
            }
            Position::Count(_) => (ShardId::Local, 0),
        };
        let Some(pipeline) = self.shards.get_mut(shard) else {
            tracing::warn!(topic, %shard, records = records.len(),
                "batch of a partition this host does not hold; left to its owner");
            return Ok(());
        };
        let started = self.started;
        self.report.records_in += records.len() as u64;
        self.report
            .first_batch_secs
            .get_or_insert_with(|| started.elapsed().as_secs_f64());
        let partitioned = matches!(position, Position::Offset { .. });
        if let Some(archive) = &mut self.checkpoints.archive {
            archive.write(&records);
        }
        if !partitioned {
            self.checkpoints.archived(&records);
        }
        if let (Some(first), Some(last)) = (records.first(), records.last()) {
            if partitioned {
                self.collector.read(&topic, last.partition, last.offset);
            }
            if partitioned && self.first_batches.insert((topic.clone(), first.partition)) {
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
        let outputs = pipeline.push_lane(&topic, Batch::Raw(records), lane);
        self.write(&outputs)?;
        self.checkpoints.record(&source, position, newest_ms);
        self.report.last_batch_secs = Some(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn on_group(&mut self, event: GroupEvent) -> anyhow::Result<()> {
        match event {
            GroupEvent::Assigned {
                source,
                partitions,
                topics,
                reply,
            } => {
                let result = self
                    .checkpoints
                    .assign(&mut self.shards, &partitions, &topics);
                self.collector.assigned();
                if let Err(error) = &result {
                    tracing::error!(%source, ?partitions, error = format!("{error:#}"), "opening assigned partitions failed");
                }
                let started = self.started;
                self.report
                    .assigned_secs
                    .get_or_insert_with(|| started.elapsed().as_secs_f64());
                let _ = reply.send(result.map_err(|e| format!("{e:#}")));
            }
            GroupEvent::Lost {
                source,
                partitions,
                reply,
            } => {
                self.checkpoints.drop_lost(&mut self.shards, &partitions)?;
                tracing::warn!(%source, ?partitions,
                    "partitions lost to another host (silent past the session timeout): closed without a checkpoint; the new owner resumes from the last one");
                let _ = reply.send(());
            }
            GroupEvent::Revoked {
                source,
                partitions,
                end_of_input,
                reply,
            } => {
                if end_of_input && self.close_windows_at_end && !self.stop.is_stopped() {
                    for &p in &partitions {
                        self.flush_windows(ShardId::Partition(p))?;
                    }
                }
                let started = Instant::now();
                self.collector.collect(&self.shards);
                let offsets =
                    (self.checkpoints).revoke(&mut self.shards, &mut *self.sinks, &partitions)?;
                self.collector
                    .checkpointed(partitions.iter().copied(), started.elapsed());
                tracing::debug!(%source, ?partitions, ?offsets, "partitions checkpointed and closed");
                let _ = reply.send(offsets);
            }
        }
        Ok(())
    }
}
