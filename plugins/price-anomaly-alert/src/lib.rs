//! Price anomaly rule over cleaned price changes: per store and product it keeps the last
//! `history` accepted prices; a new price further than `max_change` (a fraction: 0.5 = 50%) from
//! their median is an anomaly (a typo, a wrong unit), critical from three times the bound.
//! Anomalous prices stay out of the history, so the correction back is not flagged again.

use std::collections::BTreeMap;

use shelfstream_sdk::stats::{median, Rolling};
use shelfstream_sdk::*;

pub struct PriceAnomalyAlert {
    max_change: f64,
    history: usize,
    prices: BTreeMap<(String, String), Rolling>,
}

impl Plugin for PriceAnomalyAlert {
    const NAME: &'static str = "price-anomaly-alert";
    const KIND: PluginKind = PluginKind::AlertRule;
    const DESCRIPTION: &'static str = "Alerts on price changes far from the recent prices";

    fn new(params: &mut Params) -> Result<Self, String> {
        Ok(PriceAnomalyAlert {
            max_change: params.number("max_change", 0.5, 0.01, 100.0)?,
            history: params.number("history", 10.0, 1.0, 1_000.0)? as usize,
            prices: BTreeMap::new(),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Emit) {
        for p in batch.prices() {
            let key = (p.store_id().to_string(), p.product_id().to_string());
            let recent = self.prices.entry(key).or_insert_with(|| {
                let mut r = Rolling::new(self.history);
                r.push(p.old_price());
                r
            });
            let reference = median(&recent.to_vec()).unwrap_or(p.old_price());
            let change = p.new_price() / reference - 1.0;
            if change.abs() <= self.max_change {
                recent.push(p.new_price());
                continue;
            }
            let severity = if change.abs() >= 3.0 * self.max_change {
                Severity::Critical
            } else {
                Severity::Warning
            };
            out.alert(alert(
                "price_anomaly",
                severity,
                (p.store_id(), p.product_id()),
                (p.timestamp(), p.timestamp()),
                format!(
                    "price {} -> {} is {:+.0}% from the recent {reference}",
                    p.old_price(),
                    p.new_price(),
                    change * 100.0
                ),
                &[
                    ("old_price", p.old_price()),
                    ("new_price", p.new_price()),
                    ("reference_price", reference),
                    ("change", change),
                    ("max_change", self.max_change),
                ],
            ));
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        state::encode(&self.prices.iter().collect::<Vec<_>>())
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        let entries: Vec<((String, String), Rolling)> =
            state::decode(Self::NAME, version, &[1], data)?;
        self.prices = entries.into_iter().collect();
        Ok(())
    }
}

export_plugin!(PriceAnomalyAlert);
