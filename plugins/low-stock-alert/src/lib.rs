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

    fn process(&mut self, batch: &Batch, out: &mut Emit) {
        for u in batch.inventory() {
            let (stock, capacity) = (u.stock_level(), u.capacity());
            let threshold = capacity as f64 * self.low_pct / 100.0;
            let key = (u.store_id().to_string(), u.product_id().to_string());
            if stock as f64 > threshold {
                self.alerting.remove(&key);
                continue;
            }
            let empty = stock <= 0;
            let was_out = self.alerting.insert(key, empty);
            if was_out == Some(true) || (was_out == Some(false) && !empty) {
                continue; // already alerted for this episode at this severity
            }
            let reorder = (capacity - stock) as f64;
            let (rule, severity) = match empty {
                true => ("out_of_stock", Severity::Critical),
                false => ("low_stock", Severity::Warning),
            };
            let message = format!("{stock} units left of {capacity}; reorder {reorder}");
            let evidence = [
                ("stock_level", stock as f64),
                ("capacity", capacity as f64),
                ("threshold", threshold),
                ("reorder_quantity", reorder),
            ];
            let (shelf, at) = ((u.store_id(), u.product_id()), u.timestamp());
            out.alert(alert(rule, severity, shelf, (at, at), message, &evidence));
        }
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
