//! Sales anomaly rule over windowed sales metrics (e.g. hourly `sales_1h` rows). Per store and
//! product it keeps the last `baseline` windows of `units_sold` (windows without a row count as
//! zero) and scores each new window robustly: z = (units - median) / (1.4826 * MAD), the scale
//! floored at `min_scale` units. A window with z >= `threshold` and at least `min_units` units is
//! an anomaly (critical from twice the threshold). Anomalous windows stay out of the baseline.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shelfstream_sdk::stats::{robust_z, Rolling};
use shelfstream_sdk::*;

#[derive(Clone, Serialize, Deserialize)]
struct Baseline {
    history: Rolling,
    last_end: Timestamp,
}

pub struct SalesAnomalyAlert {
    threshold: f64,
    min_units: f64,
    min_scale: f64,
    baseline: usize,
    min_history: usize,
    keys: BTreeMap<(String, String), Baseline>,
}

impl Plugin for SalesAnomalyAlert {
    const NAME: &'static str = "sales-anomaly-alert";
    const KIND: PluginKind = PluginKind::AlertRule;
    const DESCRIPTION: &'static str =
        "Robust (median/MAD) score of window sales against a rolling baseline";

    fn new(params: &mut Params) -> Result<Self, String> {
        let baseline = params.number("baseline", 24.0, 3.0, 10_000.0)? as usize;
        Ok(SalesAnomalyAlert {
            threshold: params.number("threshold", 6.0, 1.0, 100.0)?,
            min_units: params.number("min_units", 10.0, 0.0, 1e9)?,
            min_scale: params.number("min_scale", 1.0, 0.01, 1e9)?,
            min_history: params.number("min_history", 6.0, 1.0, baseline as f64)? as usize,
            baseline,
            keys: BTreeMap::new(),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Emit) {
        for m in batch.metrics() {
            let (Some(shelf), Some(units)) = (m.store_product(), m.value("units_sold")) else {
                continue;
            };
            let (window_start, window_end) = m.window();
            let size = window_end - window_start;
            let key = (shelf.0.to_string(), shelf.1.to_string());
            let b = self.keys.entry(key).or_insert_with(|| Baseline {
                history: Rolling::new(self.baseline),
                last_end: window_start,
            });
            // Windows between the last row and this one sold nothing.
            let gap = ((window_start - b.last_end) / size.max(1)).clamp(0, self.baseline as i64);
            (0..gap).for_each(|_| b.history.push(0.0));
            b.last_end = window_end;
            let history = b.history.to_vec();
            let scored = (history.len() >= self.min_history)
                .then(|| robust_z(units, &history, self.min_scale))
                .flatten();
            match scored {
                Some((z, median, scale)) if z >= self.threshold && units >= self.min_units => {
                    let severity = if z >= 2.0 * self.threshold {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    };
                    out.alert(alert(
                        "sales_anomaly",
                        severity,
                        shelf,
                        m.window(),
                        format!("{units} units sold in one window against a usual {median}: robust z {z:.1}"),
                        &[("units_sold", units), ("baseline_median", median), ("baseline_scale", scale),
                          ("robust_z", z), ("threshold", self.threshold)],
                    ));
                }
                _ => b.history.push(units),
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        state::encode(&self.keys.iter().collect::<Vec<_>>())
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        let entries: Vec<((String, String), Baseline)> =
            state::decode(Self::NAME, version, &[1], data)?;
        self.keys = entries.into_iter().collect();
        Ok(())
    }
}

export_plugin!(SalesAnomalyAlert);
