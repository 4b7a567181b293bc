//! Where records come from. Each source runs on its own thread and sends batches of raw records
//! of one topic, each with the source's resume position after it, into the pipeline's channel.
//! A full channel blocks the source: that is the backpressure.

pub mod kafka;
pub mod ndjson;
pub mod simulator;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc::Sender;

use crate::config::SourceConfig;
use crate::plugin::RawRecord;
use crate::run::Command;

/// Raw records of one topic from one source.
#[derive(Debug)]
pub struct SourceBatch {
    pub source: String,
    pub topic: String,
    pub records: Vec<RawRecord>,
    /// Where to resume after this batch (simulator steps, file lines).
    pub position: u64,
    /// For partitioned sources: `topic:partition` and the offset after this batch.
    pub offset: Option<(String, i64)>,
}

/// Tells sources to stop at their next batch boundary.
#[derive(Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Start a source thread resuming at `position` (Kafka sources resume from shard checkpoints). It sends `Command::Batch` and finally
/// `Command::SourceDone`.
pub fn spawn(
    config: SourceConfig,
    batch_size: usize,
    position: u64,
    tx: Sender<Command>,
    stop: StopFlag,
    commits: Option<std::sync::mpsc::Receiver<std::collections::BTreeMap<String, i64>>>,
) -> std::io::Result<JoinHandle<()>> {
    let name = config.name().to_string();
    std::thread::Builder::new()
        .name(format!("source-{name}"))
        .spawn(move || {
            let result = match &config {
                SourceConfig::Simulator(c) => simulator_loop(c, batch_size, position, &tx, &stop),
                SourceConfig::Ndjson(c) => ndjson::run(c, batch_size, position, &tx, &stop),
                SourceConfig::Kafka(c) => {
                    let commits = commits.unwrap_or_else(|| std::sync::mpsc::channel().1);
                    kafka::run(c, batch_size, &tx, &stop, commits)
                }
            };
            let error = result.err().map(|e| format!("{e:#}"));
            if let Some(error) = &error {
                tracing::error!(source = %name, %error, "source failed");
            }
            let _ = tx.blocking_send(Command::SourceDone {
                source: name,
                error,
            });
        })
}

fn simulator_loop(
    c: &crate::config::SimulatorConfig,
    batch_size: usize,
    position: u64,
    tx: &Sender<Command>,
    stop: &StopFlag,
) -> anyhow::Result<()> {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    let duration = c
        .duration
        .as_deref()
        .map(crate::config::parse_duration)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let start_ms = match &c.start {
        Some(s) => humantime::parse_rfc3339_weak(s)
            .map_err(|e| anyhow::anyhow!("simulator start {s:?}: {e}"))?
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64,
        None => {
            // End the simulated span around now, so "the last hour" queries find the data.
            let span_ms = duration.map_or(0.0, |d| d.as_secs_f64() * c.time_scale * 1_000.0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            (now - span_ms as i64) / 60_000 * 60_000
        }
    };
    let mut sim = simulator::Simulator::new(c, start_ms);
    sim.skip(position);
    let max_steps = c.max_events.unwrap_or(u64::MAX);
    let started = Instant::now();
    let mut buffers: BTreeMap<String, Vec<RawRecord>> = BTreeMap::new();
    let mut messages: u64 = 0;
    while !stop.is_stopped() && sim.steps() < max_steps {
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        // Generate the messages due by now (paced by `rate`), at most about one batch.
        let due = if c.rate > 0.0 {
            (started.elapsed().as_secs_f64() * c.rate) as u64
        } else {
            u64::MAX
        };
        let mut produced = 0;
        while messages < due && sim.steps() < max_steps && produced < batch_size {
            for r in sim.step() {
                buffers.entry(r.topic.clone()).or_default().push(r);
                produced += 1;
                messages += 1;
            }
        }
        let position = sim.steps();
        for (topic, records) in std::mem::take(&mut buffers) {
            let batch = SourceBatch {
                source: c.name.clone(),
                topic,
                records,
                position,
                offset: None,
            };
            if tx.blocking_send(Command::Batch(batch)).is_err() {
                return Ok(());
            }
        }
        if produced == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}
