//! Where results go. A sink receives each stage's output under its stream name with its
//! [`Provenance`] (stage, plugin and version, source records or positions), and the dead
//! letters. Sinks never see the pipeline: the runner hands them what the chain returned.
//!
//! - [`file`]: NDJSON files per stream (the embedded default);
//! - [`clickhouse`]: the analytics tables of `sql/schema.sql`;
//! - [`kafka`]: alerts and dead letters to Kafka topics;
//! - [`memory`]: kept in memory (tests, the harness, benchmarks).

pub mod clickhouse;
pub mod file;
mod json;
pub mod kafka;
pub mod memory;

use crate::pipeline::{DeadLetter, Outputs, Provenance};
use crate::plugin::{Event, EventBatch};

pub use file::FileSink;
pub use memory::MemorySink;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("writing {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// The sink cannot start (unreachable, credentials refused).
    #[error("{0}")]
    Connect(String),
}

pub trait Sink: Send {
    fn write(
        &mut self,
        stream: &str,
        provenance: &Provenance,
        events: &[Event],
    ) -> Result<(), SinkError>;
    fn dead_letters(&mut self, dead: &[DeadLetter]) -> Result<(), SinkError>;
    /// Make everything written so far durable.
    fn flush(&mut self) -> Result<(), SinkError>;
    /// Start making everything written so far durable, without waiting: the returned waits
    /// block until it is (a checkpoint runs them in the background while the pipeline goes on).
    fn start_flush(&mut self) -> Result<Vec<Pending>, SinkError> {
        self.flush()?;
        Ok(Vec::new())
    }

    /// The sink's meters, for metrics (none for sinks that keep no figures).
    fn meters(&self) -> Vec<std::sync::Arc<crate::meter::SinkMeter>> {
        Vec::new()
    }

    /// Write one output batch. Sinks that read columns override this; the others get its rows.
    fn write_batch(
        &mut self,
        stream: &str,
        provenance: &Provenance,
        batch: &OutputBatch<'_>,
    ) -> Result<(), SinkError> {
        self.write(stream, provenance, batch.rows())
    }

    /// Write everything a push through the chain returned: each output batch in order, then the
    /// dead letters.
    fn write_outputs(&mut self, outputs: &Outputs) -> Result<(), SinkError> {
        for o in &outputs.batches {
            self.write_batch(&o.stream, &o.provenance, &OutputBatch::new(&o.events))?;
        }
        if !outputs.dead_letters.is_empty() {
            self.dead_letters(&outputs.dead_letters)?;
        }
        Ok(())
    }
}

/// An output batch as columns, with its rows made once, for the first sink that asks for them.
pub struct OutputBatch<'a> {
    pub events: &'a EventBatch,
    rows: std::cell::OnceCell<Vec<Event>>,
}

impl<'a> OutputBatch<'a> {
    pub fn new(events: &'a EventBatch) -> Self {
        OutputBatch {
            events,
            rows: std::cell::OnceCell::new(),
        }
    }

    pub fn rows(&self) -> &[Event] {
        self.rows.get_or_init(|| self.events.rows())
    }
}

/// A wait for work under way (uploads, inserts, deliveries) to be durable.
pub type Pending = Box<dyn FnOnce() + Send>;

/// Several sinks as one: each batch goes to every sink, in order.
pub struct Fanout(pub Vec<Box<dyn Sink>>);

impl Sink for Fanout {
    fn write(
        &mut self,
        stream: &str,
        provenance: &Provenance,
        events: &[Event],
    ) -> Result<(), SinkError> {
        self.0
            .iter_mut()
            .try_for_each(|s| s.write(stream, provenance, events))
    }

    fn write_batch(
        &mut self,
        stream: &str,
        provenance: &Provenance,
        batch: &OutputBatch<'_>,
    ) -> Result<(), SinkError> {
        self.0
            .iter_mut()
            .try_for_each(|s| s.write_batch(stream, provenance, batch))
    }

    fn dead_letters(&mut self, dead: &[DeadLetter]) -> Result<(), SinkError> {
        self.0.iter_mut().try_for_each(|s| s.dead_letters(dead))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.0.iter_mut().try_for_each(|s| s.flush())
    }

    fn start_flush(&mut self) -> Result<Vec<Pending>, SinkError> {
        let mut pending = Vec::new();
        for s in &mut self.0 {
            pending.extend(s.start_flush()?);
        }
        Ok(pending)
    }

    fn meters(&self) -> Vec<std::sync::Arc<crate::meter::SinkMeter>> {
        self.0.iter().flat_map(|s| s.meters()).collect()
    }
}
