//! Where results go. A sink receives each stage's output under its stream name, with the
//! producing plugin and version (provenance), and the dead letters.

pub mod clickhouse;
pub mod file;
pub mod kafka;
pub mod memory;
pub mod raw;

use crate::pipeline::DeadLetter;
use crate::plugin::Event;

pub use file::FileSink;
pub use memory::MemorySink;

/// Who produced a batch of outputs.
#[derive(Debug, Clone, Copy)]
pub struct Producer<'a> {
    pub stage: &'a str,
    pub plugin: &'a str,
    pub version: &'a str,
    /// The source record of each event, for a cleaner's output; empty for derived events.
    pub origins: &'a [crate::pipeline::SourceRef],
    /// The highest offset read so far per `topic:partition` (a JSON object): what derived
    /// events (windows, alerts, forecasts) were computed from.
    pub positions: &'a str,
    /// The source partition whose shard produced the events (`None`: unpartitioned sources).
    /// Aggregates over several stores or products are partial per partition.
    pub partition: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("writing {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

pub trait Sink: Send {
    fn write(
        &mut self,
        stream: &str,
        producer: &Producer<'_>,
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
}

/// A wait for work under way (uploads, inserts, deliveries) to be durable.
pub type Pending = Box<dyn FnOnce() + Send>;

/// Several sinks as one: each batch goes to every sink, in order.
pub struct Fanout(pub Vec<Box<dyn Sink>>);

impl Sink for Fanout {
    fn write(
        &mut self,
        stream: &str,
        producer: &Producer<'_>,
        events: &[Event],
    ) -> Result<(), SinkError> {
        self.0
            .iter_mut()
            .try_for_each(|s| s.write(stream, producer, events))
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
}
