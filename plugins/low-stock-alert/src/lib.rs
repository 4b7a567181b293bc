//! Low-stock alert rule: when an inventory update leaves a product at or below `low_pct` of its
//! capacity, alert `low_stock` (warning) or, at zero, `out_of_stock` (critical), with the reorder
//! quantity that refills the shelf. One alert per episode: it alerts on entering low stock and on
//! running out, and re-arms once a restock lifts the level above the threshold.

use std::collections::BTreeMap;

use shelfstream_sdk::*;

pub struct LowStockAlert {
    low_pct: f64,
    /// Products currently in an episode, with whether they ran out.
    alerting: BTreeMap<(String, String), bool>,
}

impl Plugin for LowStockAlert {
    const NAME: &'static str = "low-stock-alert";
    const KIND: PluginKind = PluginKind::AlertRule;
    const DESCRIPTION: &'static str = "Alerts when stock falls to a share of capacity or runs out";

    fn new(params: &mut Params) -> Result<Self, String> {
        let low_pct = params.number("low_pct", 20.0, 0.0, 100.0)?;
        Ok(LowStockAlert {
            low_pct,
            alerting: BTreeMap::new(),
        })
    }

    fn process(&mut self, batch: Vec<Event>) -> Vec<Event> {
        let mut alerts = Vec::new();
        for event in batch {
            let Event::Inventory(u) = event else { continue };
            let threshold = u.capacity as f64 * self.low_pct / 100.0;
            let key = (u.store_id.clone(), u.product_id.clone());
            if u.stock_level as f64 > threshold {
                self.alerting.remove(&key);
                continue;
            }
            let out = u.stock_level <= 0;
            let was_out = self.alerting.insert(key, out);
            if was_out == Some(true) || (was_out == Some(false) && !out) {
                continue; // already alerted for this episode at this severity
            }
            let reorder = (u.capacity - u.stock_level) as f64;
            alerts.push(Event::Alert(Alert {
                rule: if out { "out_of_stock" } else { "low_stock" }.into(),
                severity: if out {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                message: format!(
                    "{} units left of {}; reorder {reorder}",
                    u.stock_level, u.capacity
                ),
                evidence: vec![
                    ("stock_level".into(), u.stock_level as f64),
                    ("capacity".into(), u.capacity as f64),
                    ("threshold".into(), threshold),
                    ("reorder_quantity".into(), reorder),
                ],
                store_id: u.store_id,
                product_id: u.product_id,
                window_start: u.timestamp,
                window_end: u.timestamp,
                timestamp: u.timestamp,
            }));
        }
        alerts
    }

    fn snapshot(&self) -> Vec<u8> {
        state::encode(&self.alerting.iter().collect::<Vec<_>>())
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        let entries: Vec<((String, String), bool)> =
            state::decode(Self::NAME, version, &[1], data)?;
        self.alerting = entries.into_iter().collect();
        Ok(())
    }
}

export_plugin!(LowStockAlert);
