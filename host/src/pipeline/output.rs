//! What the chain returns: each stage's output batch with its provenance, and the dead letters.
//! The pipeline never writes anywhere; whoever pushed the batch hands these to the sinks.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::shadow::{ShadowDeadLetter, ShadowOutput};
use super::{DeadLetter, SourceRef};
use crate::plugin::{Event, EventBatch};
use crate::sources::TopicPartition;

/// Who produced a batch of outputs, and from what.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub stage: Arc<str>,
    pub plugin: Arc<str>,
    pub version: Arc<str>,
    /// The source record of each event, for a cleaner's output; empty for derived events.
    pub origins: Vec<SourceRef>,
    /// The highest offset read so far per topic-partition: what derived events (windows,
    /// alerts, forecasts) were computed from.
    pub positions: Arc<BTreeMap<TopicPartition, i64>>,
    /// The source partition whose shard produced the events (`None`: unpartitioned sources).
    /// Aggregates over several stores or products are partial per partition.
    pub partition: Option<i32>,
}

impl Provenance {
    /// The positions as a JSON object (`{"topic:partition": offset}`), the `_source_offsets`
    /// column.
    pub fn positions_json(&self) -> String {
        serde_json::to_string(&*self.positions).expect("offsets serialise")
    }
}

/// One stage's output batch, under its output stream.
#[derive(Debug, Clone)]
pub struct Output {
    pub stream: Arc<str>,
    pub provenance: Provenance,
    /// Shared with the stages downstream (no copy); sinks read it as rows.
    pub events: Arc<EventBatch>,
}

/// Everything one push through the chain produced, in the order the stages emitted it.
#[derive(Debug, Default)]
pub struct Outputs {
    pub batches: Vec<Output>,
    pub dead_letters: Vec<DeadLetter>,
    /// What shadow stages emitted: for the shadow outputs only, never the live sinks.
    pub shadows: Vec<ShadowOutput>,
    pub shadow_dead_letters: Vec<ShadowDeadLetter>,
}

impl Outputs {
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
            && self.dead_letters.is_empty()
            && self.shadows.is_empty()
            && self.shadow_dead_letters.is_empty()
    }

    /// Add what a later push produced.
    pub fn extend(&mut self, other: Outputs) {
        self.batches.extend(other.batches);
        self.dead_letters.extend(other.dead_letters);
        self.shadows.extend(other.shadows);
        self.shadow_dead_letters.extend(other.shadow_dead_letters);
    }

    /// The events of one stream as rows, over every batch (tests, tools).
    pub fn events_of<'a>(&'a self, stream: &'a str) -> impl Iterator<Item = Event> + 'a {
        self.batches
            .iter()
            .filter(move |b| &*b.stream == stream)
            .flat_map(|b| b.events.rows())
    }
}
