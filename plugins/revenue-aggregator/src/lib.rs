//! Windowed sales metrics (`sales_1m` by default): revenue, units, transactions and average unit
//! price per window, emitted when the watermark closes the window. Configurable:
//! `window` (size), `hop` (hopping windows: a new window every `hop`; default = `window`,
//! tumbling), `by` (grouping: any of `store_id`, `product_id`, `category`, comma-separated) and
//! `metric` (the name of the rows, which sinks map to a table). One plugin gives the 1-minute
//! dashboard, the 1-hour hopping view and the daily rollups per store and per category.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use shelfstream_sdk::*;

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    revenue: f64,
    units: i64,
    lines: u64,
    /// Distinct transactions, as 64-bit hashes of their ids (state version 1 kept the ids).
    #[serde(deserialize_with = "transaction_hashes")]
    transactions: BTreeSet<u64>,
}

/// Hashes (version 2) or ids (version 1, hashed on the way in).
fn transaction_hashes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeSet<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Hash(u64),
        Text(String),
    }
    let ids = Vec::<Id>::deserialize(d)?;
    Ok(ids
        .into_iter()
        .map(|id| match id {
            Id::Hash(h) => h,
            Id::Text(t) => hash::fnv1a(t.as_bytes()),
        })
        .collect())
}

const GROUPINGS: [&str; 3] = ["store_id", "product_id", "category"];

pub struct RevenueAggregator {
    window: Hopping,
    metric: String,
    by: Vec<String>,
    open: WindowStore<Vec<String>, Totals>,
}

impl Plugin for RevenueAggregator {
    const NAME: &'static str = "revenue-aggregator";
    const KIND: PluginKind = PluginKind::Aggregator;
    const DESCRIPTION: &'static str = "Revenue, units and transactions per group per window";
    const STATE_VERSION: u32 = 2;

    fn new(params: &mut Params) -> Result<Self, String> {
        let size = params.duration_ms("window", MINUTE_MS)?;
        let window = Hopping::new(size, params.duration_ms("hop", size)?)?;
        let metric = params.get("metric", "sales_1m".to_string())?;
        let by: Vec<String> = params
            .get("by", "store_id,product_id".to_string())?
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        if let Some(bad) = by.iter().find(|b| !GROUPINGS.contains(&b.as_str())) {
            return Err(format!("by: {bad:?} is not one of {GROUPINGS:?}"));
        }
        if let Some((i, twice)) = (by.iter().enumerate()).find(|(i, b)| by[..*i].contains(b)) {
            return Err(format!("by: {twice:?} is listed twice (at {i})"));
        }
        let open = WindowStore::new();
        Ok(RevenueAggregator {
            window,
            metric,
            by,
            open,
        })
    }

    fn process(&mut self, batch: Vec<Event>) -> Vec<Event> {
        for event in batch {
            let Event::Sale(mut s) = event else { continue };
            // The sale is ours: its strings move into the key (`by` names each field once).
            let mut key: Vec<String> = (self.by.iter())
                .map(|b| match b.as_str() {
                    "store_id" => std::mem::take(&mut s.store_id),
                    "product_id" => std::mem::take(&mut s.product_id),
                    _ => s.category.take().unwrap_or_else(|| "unknown".into()),
                })
                .collect();
            let transaction = hash::fnv1a(s.transaction_id.as_bytes());
            let mut windows = self.window.assign(s.timestamp).peekable();
            while let Some(w) = windows.next() {
                let t = match windows.peek() {
                    Some(_) => self.open.entry_ref(w, key.as_slice(), Totals::default),
                    None => self
                        .open
                        .entry(w, std::mem::take(&mut key), Totals::default),
                };
                t.revenue += s.total_amount;
                t.units += s.quantity as i64;
                t.lines += 1;
                t.transactions.insert(transaction);
            }
        }
        Vec::new()
    }

    fn on_watermark(&mut self, watermark: Timestamp) -> Vec<Event> {
        let closed = self.open.close(watermark).into_iter();
        closed
            .map(|(w, key, t)| {
                let avg = if t.units == 0 {
                    0.0
                } else {
                    clean::cents(t.revenue / t.units as f64)
                };
                Event::Metric(MetricRow {
                    metric: self.metric.clone(),
                    window_start: w.start,
                    window_end: w.end,
                    dimensions: self.by.iter().cloned().zip(key).collect(),
                    values: vec![
                        ("total_revenue".into(), clean::cents(t.revenue)),
                        ("units_sold".into(), t.units as f64),
                        ("transaction_count".into(), t.transactions.len() as f64),
                        ("avg_unit_price".into(), avg),
                    ],
                })
            })
            .collect()
    }

    fn snapshot(&self) -> Vec<u8> {
        state::encode(&self.open)
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        self.open = state::decode(Self::NAME, version, &[1, 2], data)?;
        Ok(())
    }
}

export_plugin!(RevenueAggregator);
