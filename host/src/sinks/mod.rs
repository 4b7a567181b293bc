//! Where results go. A sink receives each stage's output under its stream name, with the
//! producing plugin and version (provenance), and the dead letters.

pub mod file;
pub mod memory;

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
}
