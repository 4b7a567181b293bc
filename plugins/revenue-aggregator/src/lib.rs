//! Tumbling-window sales metrics per store and product (`sales_1m` by default): revenue, units,
//! transactions and average unit price, emitted when the watermark closes the window.

use serde::{Deserialize, Serialize};
use shelfstream_sdk::*;

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    revenue: f64,
    units: i64,
    lines: u64,
    transactions: Vec<String>,
}

pub struct RevenueAggregator {
    window: Tumbling,
    metric: String,
    open: WindowStore<(String, String), Totals>,
}

impl Plugin for RevenueAggregator {
    const NAME: &'static str = "revenue-aggregator";
    const KIND: PluginKind = PluginKind::Aggregator;
    const DESCRIPTION: &'static str =
        "Revenue, units and transactions per store and product per window";

    fn new(params: &mut Params) -> Result<Self, String> {
        let window = Tumbling::new(params.duration_ms("window", MINUTE_MS)?);
        let metric = params.get("metric", "sales_1m".to_string())?;
        Ok(RevenueAggregator {
            window,
            metric,
            open: WindowStore::new(),
        })
    }

    fn process(&mut self, batch: Vec<Event>) -> Vec<Event> {
        for event in batch {
            let Event::Sale(s) = event else { continue };
            let key = (s.store_id, s.product_id);
            let t = self
                .open
                .entry(self.window.assign(s.timestamp), key, Totals::default);
            t.revenue += s.total_amount;
            t.units += s.quantity as i64;
            t.lines += 1;
            if !t.transactions.contains(&s.transaction_id) {
                t.transactions.push(s.transaction_id);
            }
        }
        Vec::new()
    }

    fn on_watermark(&mut self, watermark: Timestamp) -> Vec<Event> {
        let close = self.open.close(watermark).into_iter();
        close
            .map(|(w, (store, product), t)| {
                Event::Metric(MetricRow {
                    metric: self.metric.clone(),
                    window_start: w.start,
                    window_end: w.end,
                    dimensions: vec![("store_id".into(), store), ("product_id".into(), product)],
                    values: vec![
                        ("total_revenue".into(), clean::cents(t.revenue)),
                        ("units_sold".into(), t.units as f64),
                        ("transaction_count".into(), t.transactions.len() as f64),
                        (
                            "avg_unit_price".into(),
                            if t.units == 0 {
                                0.0
                            } else {
                                clean::cents(t.revenue / t.units as f64)
                            },
                        ),
                    ],
                })
            })
            .collect()
    }

    fn snapshot(&self) -> Vec<u8> {
        state::encode(&self.open)
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        self.open = state::decode(Self::NAME, version, &[1], data)?;
        Ok(())
    }
}

export_plugin!(RevenueAggregator);
