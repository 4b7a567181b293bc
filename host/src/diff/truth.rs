//! `host diff --ground-truth FILE`: each alert rule's precision and recall on both sides,
//! against what the simulator injected (`ground_truth.json`, written by a `host run` with the
//! simulator source).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{whole, Rows};
use crate::archive::Range;
use crate::sim::{score, AlertAt, GroundTruth, RuleScore};

/// One rule scored on both sides.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TruthScore {
    pub rule: String,
    pub baseline: RuleScore,
    pub candidate: RuleScore,
}

/// Read a ground truth file, keeping the incidents that began inside `range`.
pub fn load(path: &Path, range: &Range) -> anyhow::Result<GroundTruth> {
    let text = std::fs::read(path)
        .with_context(|| format!("reading the ground truth {}", path.display()))?;
    let mut truth: GroundTruth = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a simulator ground truth", path.display()))?;
    truth.incidents.retain(|i| range.contains(i.start));
    if let Some(to) = range.to_ms {
        truth.until = if truth.until == 0 {
            to
        } else {
            truth.until.min(to)
        };
    }
    Ok(truth)
}

/// The alerts of a `streaming_alerts` table's rows (times at ClickHouse's second).
fn alerts(rows: Option<&Rows>) -> Vec<AlertAt> {
    let time = |row: &serde_json::Map<String, Value>, column: &str| {
        row.get(column)
            .and_then(Value::as_str)
            .and_then(|t| crate::units::parse_time(&t.replace(' ', "T")).ok())
            .unwrap_or(0)
    };
    let text = |row: &serde_json::Map<String, Value>, column: &str| {
        row.get(column)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    rows.into_iter()
        .flat_map(|rows| rows.values())
        .map(|row| {
            let all = whole(row);
            AlertAt {
                rule: text(&all, "rule"),
                store_id: text(&all, "store_id"),
                product_id: text(&all, "product_id"),
                timestamp: time(&all, "alert_time"),
                window_start: time(&all, "window_start"),
                window_end: time(&all, "window_end"),
            }
        })
        .collect()
}

/// Each scored rule's precision and recall, baseline beside candidate.
pub fn scores(
    truth: &GroundTruth,
    baseline: &BTreeMap<String, Rows>,
    candidate: &BTreeMap<String, Rows>,
) -> Vec<TruthScore> {
    let side =
        |rows: &BTreeMap<String, Rows>| score(truth, &alerts(rows.get("streaming_alerts")), 1000);
    side(baseline)
        .into_iter()
        .zip(side(candidate))
        .map(|(baseline, candidate)| TruthScore {
            rule: baseline.rule.clone(),
            baseline,
            candidate,
        })
        .collect()
}
