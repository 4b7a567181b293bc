//! Inventory metrics per store and product per tumbling window (`inventory_1m`): the latest stock
//! level in the window, the capacity, stock as a percentage of capacity, and a status:
//! `OUT_OF_STOCK` at zero, `LOW_STOCK` at or below `low_pct` percent, else `IN_STOCK`.

use serde::{Deserialize, Serialize};
use shelfstream_sdk::*;

#[derive(Clone, Serialize, Deserialize)]
pub struct Latest {
    at: Timestamp,
    stock: i32,
    capacity: i32,
}

pub struct InventoryAggregator {
    window: Tumbling,
    metric: String,
    low_pct: f64,
    open: WindowStore<(String, String), Latest>,
}

impl Plugin for InventoryAggregator {
    const NAME: &'static str = "inventory-aggregator";
    const KIND: PluginKind = PluginKind::Aggregator;
    const DESCRIPTION: &'static str =
        "Latest stock, stock percentage and status per store and product per window";

    fn new(params: &mut Params) -> Result<Self, String> {
        Ok(InventoryAggregator {
            window: Tumbling::new(params.duration_ms("window", MINUTE_MS)?),
            metric: params.get("metric", "inventory_1m".to_string())?,
            low_pct: params.number("low_pct", 20.0, 0.0, 100.0)?,
            open: WindowStore::new(),
        })
    }

    fn process(&mut self, batch: &Batch, _out: &mut Emit) {
        for u in batch.inventory() {
            let latest = Latest {
                at: u.timestamp(),
                stock: u.stock_level(),
                capacity: u.capacity(),
            };
            let slot = self.open.entry(
                self.window.assign(u.timestamp()),
                (u.store_id().to_string(), u.product_id().to_string()),
                || latest.clone(),
            );
            if latest.at >= slot.at {
                *slot = latest;
            }
        }
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Emit) {
        for (w, (store, product), l) in self.open.close(watermark) {
            let pct = 100.0 * l.stock as f64 / l.capacity.max(1) as f64;
            let status = match l.stock {
                s if s <= 0 => "OUT_OF_STOCK",
                _ if pct <= self.low_pct => "LOW_STOCK",
                _ => "IN_STOCK",
            };
            let dimensions = [
                ("store_id", store.as_str()),
                ("product_id", product.as_str()),
                ("stock_status", status),
            ];
            let values = [
                ("latest_stock", l.stock as f64),
                ("capacity", l.capacity as f64),
                ("stock_percentage", (pct * 100.0).round() / 100.0),
            ];
            out.metric(&self.metric, (w.start, w.end), &dimensions, &values);
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        state::encode(&self.open)
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        self.open = state::decode(Self::NAME, version, &[1], data)?;
        Ok(())
    }
}

export_plugin!(InventoryAggregator);
