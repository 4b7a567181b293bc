//! Seeing a running host: Prometheus metrics, health, a live page and `host top`.
//!
//! The pipeline thread owns every counter (its stages' [`crate::pipeline::StageStats`], the
//! sinks' [`SinkMeter`]s, partition positions) and, once a second, folds them into one
//! [`Live`] snapshot ([`collect::Collector`]). Everything a person or Prometheus reads comes
//! from that snapshot, so the page, `/metrics` and `host top` always agree, and the hot path
//! pays only for plain counters.
//!
//! - [`collect`]: stage deltas by plugin version, partitions, history, recent alerts;
//! - [`prom`]: the snapshot as Prometheus text (prometheus-client's encoder);
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`, `/api/status` and the page (axum);
//! - [`top`]: the snapshot as a terminal table.

pub mod collect;
pub mod http;
pub mod prom;
pub mod top;

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use crate::meter::{Latency, SinkMeter, SinkReading};
pub use collect::Collector;
pub use http::HttpConfig;

use crate::pipeline::StageStats;

/// The latest snapshot, shared between the pipeline thread and the HTTP server.
#[derive(Debug, Default)]
pub struct Telemetry {
    live: Mutex<Arc<Live>>,
}

impl Telemetry {
    pub fn new() -> Arc<Telemetry> {
        Arc::default()
    }

    pub fn live(&self) -> Arc<Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn publish(&self, live: Live) {
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
    }
}

/// Everything the page shows, at one moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Live {
    pub uptime_secs: f64,
    /// Milliseconds since the Unix epoch when this snapshot was taken.
    pub at_ms: i64,
    pub records_in: u64,
    pub sources: Vec<SourceNode>,
    pub stages: Vec<StageLive>,
    pub sinks: Vec<SinkReading>,
    pub partitions: Vec<PartitionLive>,
    pub checkpoints: CheckpointLive,
    /// Hot swaps, parameter changes, quarantines, rollbacks, newest last.
    pub history: Vec<HistoryEntry>,
    /// The newest alerts, newest last.
    pub alerts: Vec<serde_json::Value>,
    /// The newest dead letters (kind, reason, stage, source), newest last.
    pub dead_letters: Vec<DeadLetterSeen>,
    /// Records per second and total lag, one point a second over the last minutes.
    pub rates: Vec<RatePoint>,
    pub ready: Readiness,
    /// Each shadow stage against its live stage, as of its last report.
    pub shadows: Vec<ShadowLive>,
    /// Counters per stage and plugin version (what `/metrics` exports).
    #[serde(skip)]
    pub series: Vec<StageSeries>,
}

/// A shadow stage against the live stage it runs beside (rows matched by identity so far).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShadowLive {
    pub shadow: String,
    pub stage: String,
    pub plugin: String,
    pub same: u64,
    pub changed: u64,
    pub only_live: u64,
    pub only_shadow: u64,
    pub agreement: f64,
    /// Per alert rule: (added, removed, changed).
    pub alerts: std::collections::BTreeMap<String, (u64, u64, u64)>,
}

/// A source in the pipeline graph.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceNode {
    pub name: String,
    pub kind: String,
    pub topics: Vec<String>,
}

/// A stage, over every shard, as the page shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageLive {
    pub name: String,
    pub plugin: String,
    /// The version running now (the first shard's; all shards swap together).
    pub version: String,
    pub kind: String,
    pub inputs: Vec<String>,
    pub output: String,
    /// `running`, `quarantined` or `unloaded` (the worst over shards).
    pub status: String,
    /// Totals over every version this run.
    pub events_in: u64,
    pub events_out: u64,
    pub failures: u64,
    pub dead_letters: u64,
    pub swaps: u64,
    /// Events in per second over the last collection interval.
    pub rate_in: f64,
    pub mean_call_ms: f64,
    pub state_bytes: u64,
    pub shards: usize,
}

/// One metric series of a stage: its counters under one plugin version.
#[derive(Debug, Clone, Default)]
pub struct StageSeries {
    pub stage: String,
    pub plugin: String,
    pub version: String,
    pub stats: StageStats,
    /// State size at the last snapshot, summed over shards (current version only; else 0).
    pub state_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartitionLive {
    pub topic: String,
    pub partition: i32,
    /// The next offset the host will read.
    pub position: i64,
    pub high_watermark: Option<i64>,
    pub lag: Option<i64>,
    /// The slowest stage's event-time watermark in this partition's shard (ms since epoch).
    pub watermark_ms: Option<i64>,
    pub checkpoint_age_secs: Option<f64>,
    pub checkpoint_duration_secs: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckpointLive {
    pub count: u64,
    pub last_age_secs: Option<f64>,
    pub last_duration_secs: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at_ms: i64,
    /// `hot_swap`, `swap_rejected`, `params`, `params_rejected`, `quarantine`, `rollback`,
    /// `unloaded`.
    pub kind: String,
    pub stage: String,
    pub plugin: String,
    /// The version after the change (the version that failed, for a quarantine).
    pub version: String,
    /// The version before, when it changed.
    pub previous: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeadLetterSeen {
    pub kind: String,
    pub reason: String,
    pub stage: String,
    pub source: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RatePoint {
    pub uptime_secs: f64,
    pub records_per_sec: f64,
    pub lag: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    /// Why not, when not.
    pub reasons: Vec<String>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
