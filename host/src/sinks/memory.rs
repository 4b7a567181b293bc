//! An in-memory sink for tests, the harness and the benchmark: everything is kept, shared
//! behind a handle so the caller can look while the pipeline owns the sink.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{Sink, SinkError};
use crate::pipeline::DeadLetter;
use crate::pipeline::Provenance;
use crate::plugin::Event;

#[derive(Debug, Default)]
pub struct Collected {
    pub streams: BTreeMap<String, Vec<Event>>,
    pub dead_letters: Vec<DeadLetter>,
    /// When false, events are only counted (benchmarks).
    pub keep: bool,
    pub counts: BTreeMap<String, u64>,
}

#[derive(Clone, Default)]
pub struct MemorySink(pub Arc<Mutex<Collected>>);

impl MemorySink {
    pub fn new(keep: bool) -> Self {
        MemorySink(Arc::new(Mutex::new(Collected {
            keep,
            ..Collected::default()
        })))
    }

    pub fn take(&self) -> Collected {
        let mut c = self.0.lock().expect("sink lock");
        let keep = c.keep;
        std::mem::replace(
            &mut *c,
            Collected {
                keep,
                ..Collected::default()
            },
        )
    }
}

impl Sink for MemorySink {
    fn write(
        &mut self,
        stream: &str,
        _provenance: &Provenance,
        events: &[Event],
    ) -> Result<(), SinkError> {
        let mut c = self.0.lock().expect("sink lock");
        *c.counts.entry(stream.to_string()).or_default() += events.len() as u64;
        if c.keep {
            c.streams
                .entry(stream.to_string())
                .or_default()
                .extend_from_slice(events);
        }
        Ok(())
    }

    fn dead_letters(&mut self, dead: &[DeadLetter]) -> Result<(), SinkError> {
        self.0
            .lock()
            .expect("sink lock")
            .dead_letters
            .extend_from_slice(dead);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
