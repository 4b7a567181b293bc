//! The built-in retail simulator: realistic, linked events on the four retail topics, with
//! ground truth for the signals the shipped plugins look for.
//!
//! A chain of `stores` stores sells `products` products. Each step is one customer action:
//! a sale (which depletes stock and writes an inventory update), a return, a visit or product
//! view, or a price change. When a product's stock reaches its reorder point a restock is
//! ordered and arrives after the product's lead time (in event time). Damaged goods are written
//! off now and then. Demand follows a popularity skew, a daily cycle and a weekly one (busy
//! Fridays and Saturdays): event time passes faster when the shops are quiet.
//!
//! On request (see `SimulatorConfig`) it also injects what analytics exist to find, and records
//! each case in [`GroundTruth`]: sales bursts, mistyped prices, theft (stock that vanishes
//! without a record, revealed by the shelf's next update), promotions, shelves that stop
//! selling, products bought together, and repeated messages.
//!
//! Deterministic: the same seed, start and settings give the same messages, byte for byte, so
//! [`Simulator::skip`] can resume a run by regenerating and discarding the first steps.
//!
//! This is a tool beside the runtime: `host simulate` and `host demo` produce its messages to
//! Kafka, and [`crate::sources::simulator`] adapts it as a [`crate::sources::Source`] for
//! `host run`. The runtime never depends on it directly.

mod catalog;
mod generator;
mod messages;
mod score;
#[cfg(test)]
mod tests;
mod truth;

use serde::Deserialize;

pub use catalog::{intensity, Product, Store, CATEGORIES, WEEKLY};
pub use generator::Simulator;
pub use score::{score, AlertAt, RuleScore, SCORED_RULES, SETTLING_MS};
pub use truth::{GroundTruth, Incident, IncidentKind};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    pub name: String,
    pub seed: u64,
    /// Messages per second of wall time, over all topics; 0 means as fast as possible.
    pub rate: f64,
    pub stores: u32,
    pub products: u32,
    /// Stop after this long (e.g. `"60s"`); absent means run until stopped.
    pub duration: Option<String>,
    /// Stop after this many simulation steps (customer actions; each writes one or two messages).
    pub max_events: Option<u64>,
    /// Simulated seconds per wall-clock second (60: one simulated minute per second).
    pub time_scale: f64,
    /// Event time of the first event (RFC 3339); default: now minus the simulated span.
    pub start: Option<String>,
    /// Share of sales messages that are deliberately malformed.
    pub malformed_rate: f64,
    /// Partitions per topic (keys are store:product, so one key stays in one partition).
    pub partitions: i32,
    /// Share of messages sent twice (the cleaners' de-duplication drops the repeat).
    pub duplicate_rate: f64,
    /// Signals with ground truth (see [`GroundTruth`]), as expected counts per
    /// simulated day over the whole chain: sales bursts on one shelf for an hour,
    pub sales_anomalies_per_day: f64,
    /// mistyped prices (x10 or /10) corrected later,
    pub price_errors_per_day: f64,
    /// stock that disappears without a record (revealed by the shelf's next stock update),
    pub thefts_per_day: f64,
    /// and promotions (a price cut of 20-30% for some hours that doubles demand).
    pub promotions_per_day: f64,
    /// Share of shelves (store x product) that stop selling one to three days after the start.
    pub stop_selling_share: f64,
    /// Product pairs often bought together (the second joins the basket half the time).
    pub affinity_pairs: u32,
    /// Where to write the ground truth when the source stops (`host run`: default
    /// `<data_dir>/ground_truth.json`), for `host diff --ground-truth`.
    pub ground_truth: Option<std::path::PathBuf>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            name: "simulator".into(),
            seed: 42,
            rate: 2_000.0,
            stores: 10,
            products: 100,
            duration: None,
            max_events: None,
            time_scale: 60.0,
            start: None,
            malformed_rate: 0.005,
            partitions: 3,
            duplicate_rate: 0.0,
            sales_anomalies_per_day: 0.0,
            price_errors_per_day: 0.0,
            thefts_per_day: 0.0,
            promotions_per_day: 0.0,
            stop_selling_share: 0.0,
            affinity_pairs: 0,
            ground_truth: None,
        }
    }
}

impl SimulatorConfig {
    /// Event time of the first event in milliseconds: `start` (RFC 3339), or else the start of
    /// the minute `span_ms` before `now_ms` (so "the last hour" queries find a finished run's
    /// data).
    pub fn start_ms(&self, now_ms: i64, span_ms: i64) -> Result<i64, BadStart> {
        match &self.start {
            Some(s) => {
                let t = humantime::parse_rfc3339_weak(s).map_err(|e| BadStart(s.clone(), e))?;
                Ok(t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64))
            }
            None => Ok((now_ms - span_ms) / 60_000 * 60_000),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("simulator start {0:?}: {1}")]
pub struct BadStart(String, humantime::TimestampError);

pub use crate::units::now_ms;

/// UTC milliseconds as RFC 3339 text with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}
