//! Where records come from. A [`Source`] runs on its own thread and sends [`SourceEvent`]s:
//! batches of raw records of one topic, each with the [`Position`] the source resumes at after
//! it, and finally that it is done. A full channel blocks the source: that is the backpressure.
//!
//! Partitioned sources (Kafka) also have a [`Group`]: their consumer group's assignments and
//! revocations on a channel of their own, answered by whoever owns the shards.
//!
//! A source never sees the pipeline or the runner: it only sends on the channels it is given.

pub mod kafka;
pub mod ndjson;
mod position;
pub mod simulator;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use serde::Deserialize;

pub use kafka::{GroupEvent, KafkaSourceConfig};
pub use ndjson::NdjsonConfig;
pub use position::{BadTopicPartition, Offsets, Position, TopicPartition};

use crate::plugin::RawRecord;
use crate::sim::SimulatorConfig;

/// How long a partial batch waits for more records before it is sent: fewer, larger batches
/// (each batch costs a call per stage, whatever its size) for at most this much latency.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(100);

/// Raw records of one topic from one source.
#[derive(Debug)]
pub struct SourceBatch {
    pub source: String,
    pub topic: String,
    pub records: Vec<RawRecord>,
    /// Where the source resumes after this batch.
    pub position: Position,
}

/// What a source thread says, in order.
#[derive(Debug)]
pub enum SourceEvent {
    Batch(SourceBatch),
    /// The source ended (input exhausted, stopped, or failed with `error`).
    Done {
        source: String,
        error: Option<String>,
    },
}

/// The consumer group of a partitioned source, as its owner sees it.
pub struct Group {
    /// Assignments and revocations, each waiting for its reply.
    pub events: Receiver<GroupEvent>,
    /// Offsets to commit to the group once a checkpoint covers them.
    pub commits: Sender<Offsets>,
    /// The broker's newest offset per topic-partition, as last reported.
    pub high_watermarks: HighWatermarks,
}

/// The broker's high watermark (the offset the next message will get) per topic and partition,
/// updated by the consumer's statistics: what consumer lag is measured against.
#[derive(Debug, Clone, Default)]
pub struct HighWatermarks(
    std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<(String, i32), i64>>>,
);

impl HighWatermarks {
    pub fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<(String, i32), i64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The entities a source's events refer to (dimension tables), when the source knows them.
#[derive(Debug, Clone, Default)]
pub struct Dimensions {
    pub stores: Vec<StoreRow>,
    pub products: Vec<ProductRow>,
}

#[derive(Debug, Clone)]
pub struct StoreRow {
    pub id: String,
    pub city: String,
}

#[derive(Debug, Clone)]
pub struct ProductRow {
    pub sku: String,
    pub name: String,
    pub category: String,
    pub base_price: f64,
}

pub trait Source: Send {
    fn name(&self) -> &str;

    /// Partitioned sources hand out their consumer group once (before [`Source::run`]).
    fn group(&mut self) -> Option<Group> {
        None
    }

    /// Store and product rows for the dimension tables, if this source generates them.
    fn dimensions(&self) -> Option<Dimensions> {
        None
    }

    /// Read until the input ends or `stop` is set, sending batches on `out`.
    fn run(self: Box<Self>, out: &Sender<SourceEvent>, stop: &StopFlag) -> anyhow::Result<()>;
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// The built-in retail simulator (see [`crate::sim`]).
    Simulator(SimulatorConfig),
    /// Newline-delimited JSON payloads from a file or stdin (`path = "-"`), all of one topic.
    Ndjson(NdjsonConfig),
    /// Kafka topics (see [`kafka`]).
    Kafka(KafkaSourceConfig),
}

impl SourceConfig {
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Simulator(c) => &c.name,
            SourceConfig::Ndjson(c) => &c.name,
            SourceConfig::Kafka(c) => &c.name,
        }
    }

    /// The topics the source's records belong to.
    pub fn topics(&self) -> Vec<String> {
        match self {
            SourceConfig::Simulator(_) => crate::topics::RETAIL.map(String::from).to_vec(),
            SourceConfig::Ndjson(n) => vec![n.topic.clone()],
            SourceConfig::Kafka(k) => k.topics.clone(),
        }
    }

    /// Whether the source reads partitions (and resumes from shard checkpoints).
    pub fn is_partitioned(&self) -> bool {
        matches!(self, SourceConfig::Kafka(_))
    }

    /// The source, resuming count-based sources after `resume` (offset-based sources resume
    /// from their group's assignments).
    pub fn open(&self, batch_size: usize, resume: u64) -> anyhow::Result<Box<dyn Source>> {
        Ok(match self {
            SourceConfig::Simulator(c) => Box::new(simulator::SimulatorSource::new(
                c.clone(),
                batch_size,
                resume,
            )?),
            SourceConfig::Ndjson(c) => {
                Box::new(ndjson::NdjsonSource::new(c.clone(), batch_size, resume))
            }
            SourceConfig::Kafka(c) => Box::new(kafka::KafkaSource::new(c.clone(), batch_size)),
        })
    }
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

/// Run a source on its own thread: its batches, then [`SourceEvent::Done`].
pub fn spawn(
    source: Box<dyn Source>,
    out: Sender<SourceEvent>,
    stop: StopFlag,
) -> std::io::Result<JoinHandle<()>> {
    let name = source.name().to_string();
    std::thread::Builder::new()
        .name(format!("source-{name}"))
        .spawn(move || {
            let error = source.run(&out, &stop).err().map(|e| format!("{e:#}"));
            if let Some(error) = &error {
                tracing::error!(source = %name, %error, "source failed");
            }
            let _ = out.send(SourceEvent::Done {
                source: name,
                error,
            });
        })
}
