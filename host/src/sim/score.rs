//! Alert rules scored against the ground truth: precision (alerts about an injected incident
//! over all alerts of the rule) and recall (incidents some alert is about over all incidents).
//! `tests/ground_truth.rs` and `host diff --ground-truth` share it.

use serde::{Deserialize, Serialize};

use super::truth::{GroundTruth, Incident, IncidentKind};

/// Bursts and thefts need time to show (a burst its hour, a theft the shelf's next update):
/// those that began less than this before the end of the simulation are not scored. Stock-outs
/// and mistyped prices show in their own message.
pub const SETTLING_MS: i64 = 2 * 3_600_000;

fn settling_ms(kind: IncidentKind) -> i64 {
    match kind {
        IncidentKind::StockOut | IncidentKind::PriceError => 0,
        _ => SETTLING_MS,
    }
}

/// The rules the ground truth can score, and the kind of incident each looks for.
pub const SCORED_RULES: [(&str, IncidentKind); 4] = [
    ("out_of_stock", IncidentKind::StockOut),
    ("price_anomaly", IncidentKind::PriceError),
    ("sales_anomaly", IncidentKind::SalesAnomaly),
    ("shrinkage", IncidentKind::Theft),
];

/// What scoring needs of an alert (times in ms).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertAt {
    pub rule: String,
    pub store_id: String,
    pub product_id: String,
    pub timestamp: i64,
    pub window_start: i64,
    pub window_end: i64,
}

/// One rule's precision and recall.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleScore {
    pub rule: String,
    pub alerts: u64,
    pub incidents: u64,
    /// Alerts about an incident.
    pub true_alerts: u64,
    /// Incidents some alert is about.
    pub found: u64,
    pub precision: f64,
    pub recall: f64,
}

/// Whether `a` is about `i`: the same shelf, and the time the rule's evidence points at. Times
/// are compared at `resolution_ms` (1000 for alerts read back from ClickHouse's `DateTime`).
fn about(a: &AlertAt, i: &Incident, resolution_ms: i64) -> bool {
    let at = |ms: i64| ms.div_euclid(resolution_ms.max(1));
    a.store_id == i.store_id
        && a.product_id == i.product_id
        && match i.kind {
            IncidentKind::SalesAnomaly => {
                at(a.window_start) < at(i.end) && at(a.window_end) > at(i.start)
            }
            IncidentKind::PriceError | IncidentKind::StockOut => at(a.timestamp) == at(i.start),
            IncidentKind::Theft => {
                at(a.window_start) <= at(i.start) && at(i.start) <= at(a.window_end)
            }
            _ => false,
        }
}

/// Precision and recall of each scored rule. Bursts and thefts that began within
/// [`SETTLING_MS`] of `truth.until` are left out when `until` is known.
pub fn score(truth: &GroundTruth, alerts: &[AlertAt], resolution_ms: i64) -> Vec<RuleScore> {
    let settled = |i: &&Incident| truth.until == 0 || i.start <= truth.until - settling_ms(i.kind);
    SCORED_RULES
        .iter()
        .map(|(rule, kind)| {
            let incidents: Vec<&Incident> = truth.of_kind(*kind).filter(settled).collect();
            let alerts: Vec<&AlertAt> = alerts.iter().filter(|a| a.rule == *rule).collect();
            let true_alerts = alerts
                .iter()
                .filter(|a| incidents.iter().any(|i| about(a, i, resolution_ms)))
                .count();
            let found = incidents
                .iter()
                .filter(|i| alerts.iter().any(|a| about(a, i, resolution_ms)))
                .count();
            RuleScore {
                rule: rule.to_string(),
                alerts: alerts.len() as u64,
                incidents: incidents.len() as u64,
                true_alerts: true_alerts as u64,
                found: found as u64,
                precision: true_alerts as f64 / alerts.len().max(1) as f64,
                recall: found as f64 / incidents.len().max(1) as f64,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(kind: IncidentKind, start: i64, end: i64) -> Incident {
        Incident {
            kind,
            store_id: "S001".into(),
            product_id: "SKU-00001".into(),
            start,
            end,
            magnitude: 1.0,
        }
    }

    fn alert(rule: &str, timestamp: i64, window: (i64, i64)) -> AlertAt {
        AlertAt {
            rule: rule.into(),
            store_id: "S001".into(),
            product_id: "SKU-00001".into(),
            timestamp,
            window_start: window.0,
            window_end: window.1,
        }
    }

    #[test]
    fn precision_and_recall_by_hand() {
        let truth = GroundTruth {
            until: 100 * 3_600_000,
            incidents: vec![
                incident(IncidentKind::PriceError, 1_000_500, 1_000_500),
                incident(IncidentKind::PriceError, 7_000_000, 7_000_000),
                // Too recent to score: a burst that has not had its hour.
                incident(IncidentKind::SalesAnomaly, 99 * 3_600_000, 100 * 3_600_000),
                incident(IncidentKind::SalesAnomaly, 3_600_000, 7_200_000),
            ],
            ..Default::default()
        };
        let alerts = [
            alert("price_anomaly", 1_000_000, (0, 0)),
            alert("price_anomaly", 5_000_000, (0, 0)),
            alert("sales_anomaly", 0, (7_000_000, 8_000_000)),
            alert("sales_anomaly", 0, (7_200_000, 9_000_000)),
        ];
        let by_rule = |scores: &[RuleScore], rule: &str| {
            scores.iter().find(|s| s.rule == rule).unwrap().clone()
        };
        // At millisecond resolution the first price alert misses 1_000_500.
        let exact = score(&truth, &alerts, 1);
        let price = by_rule(&exact, "price_anomaly");
        assert_eq!(
            (
                price.alerts,
                price.incidents,
                price.true_alerts,
                price.found
            ),
            (2, 2, 0, 0)
        );
        // At ClickHouse's second it is the same second.
        let seconds = score(&truth, &alerts, 1000);
        let price = by_rule(&seconds, "price_anomaly");
        assert_eq!((price.true_alerts, price.found), (1, 1));
        assert_eq!((price.precision, price.recall), (0.5, 0.5));
        let sales = by_rule(&seconds, "sales_anomaly");
        assert_eq!((sales.alerts, sales.true_alerts, sales.found), (2, 1, 1));
        assert_eq!(
            sales.incidents, 1,
            "the burst of the last hours is not scored"
        );
        let theft = by_rule(&seconds, "shrinkage");
        assert_eq!(
            (theft.alerts, theft.incidents, theft.precision),
            (0, 0, 0.0)
        );
    }
}
