//! What a run did: the report returned at the end, and the live summary line.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::pipeline::shards::Retired;
use crate::pipeline::Shards;

/// What a run did, also printed at the end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub records_in: u64,
    pub outputs: BTreeMap<String, u64>,
    pub dead_letters: u64,
    /// Alerts emitted by any stage.
    pub alerts: u64,
    pub swaps: u64,
    pub failures: u64,
    pub elapsed_secs: f64,
    /// Seconds from the start of the run to the first partition assignment (shards open, the
    /// consumer may fetch), to the first batch and to the end of the last batch: the busy span
    /// is without start-up, joining a consumer group and idle waits.
    pub assigned_secs: Option<f64>,
    pub first_batch_secs: Option<f64>,
    pub last_batch_secs: Option<f64>,
    pub source_errors: Vec<String>,
}

/// Counters over every shard, open or closed.
pub fn totals(shards: &Shards) -> Retired {
    let mut t = shards.retired.clone();
    for (_, pipeline) in shards.iter() {
        t.alerts += pipeline.alerts;
        t.dead_letters += pipeline.dead_letters;
        for s in pipeline.stages() {
            *t.outputs.entry(s.spec().output.clone()).or_default() += s.stats.events_out;
            t.swaps += s.stats.swaps;
            t.failures += s.stats.failures;
        }
    }
    t
}

pub fn summary_line(shards: &Shards, elapsed: Duration, records: u64, rate: f64) -> String {
    let mut line = format!(
        "[{:>5.1}s] {records} records ({rate:.0}/s)",
        elapsed.as_secs_f64()
    );
    let t = totals(shards);
    for (stream, n) in &t.outputs {
        line.push_str(&format!(" | {stream} {n}"));
    }
    line.push_str(&format!(" | dead letters {}", t.dead_letters));
    line
}
