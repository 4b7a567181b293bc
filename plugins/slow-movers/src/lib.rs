//! Slow-moving inventory: once a day, per store and product, days of cover and sell-through over
//! the last `lookback` days, from daily sales rows (e.g. `sales_1d`) and inventory updates
//! (`input = ["sales_1d", "inventory"]`). Days without a sales row sold nothing.
//!
//! days of cover = stock / average daily units; sell-through = units / (units + stock).
//! Label: `DEAD` (stock but no sale in the whole lookback), `SLOW` (cover above
//! `slow_cover_days`), `FAST` (cover below `fast_cover_days`), else `NORMAL`. A day is classified
//! once the watermark is a day past its end, so its sales row has surely arrived. Rows are
//! `slow_movers` metrics with the label as a dimension; days of cover is capped at 9999.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shelfstream_sdk::*;

#[derive(Clone, Default, Serialize, Deserialize)]
struct Shelf {
    /// Units sold per day (day number since the epoch).
    daily: BTreeMap<i64, f64>,
    stock: i32,
    first_day: i64,
    #[serde(default)]
    last_day: i64,
}

/// The snapshot: every shelf, and the last day classified.
type Saved = (Vec<((String, String), Shelf)>, Option<i64>);

pub struct SlowMovers {
    lookback: i64,
    slow_cover: f64,
    fast_cover: f64,
    shelves: BTreeMap<(String, String), Shelf>,
    /// The last day classified.
    done: Option<i64>,
}

impl SlowMovers {
    fn observe(&mut self, (store, product): (&str, &str), day: i64, f: impl FnOnce(&mut Shelf)) {
        let key = (store.to_string(), product.to_string());
        let shelf = self.shelves.entry(key).or_insert_with(|| Shelf {
            first_day: day,
            ..Shelf::default()
        });
        shelf.first_day = shelf.first_day.min(day);
        shelf.last_day = shelf.last_day.max(day);
        f(shelf);
        let keep_from = day - self.lookback;
        shelf.daily.retain(|d, _| *d > keep_from);
    }

    fn classify(&self, day: i64, out: &mut Emit) {
        let from = day - self.lookback + 1;
        let (start, end) = (from * DAY_MS, (day + 1) * DAY_MS);
        for ((store, product), shelf) in &self.shelves {
            if shelf.first_day > from {
                continue; // not watched for a whole lookback yet
            }
            let units: f64 = shelf.daily.range(from..=day).map(|(_, u)| u).sum();
            let per_day = units / self.lookback as f64;
            let stock = shelf.stock.max(0) as f64;
            let cover = if per_day > 0.0 {
                (stock / per_day).min(9999.0)
            } else {
                9999.0
            };
            let through = if units + stock > 0.0 {
                units / (units + stock)
            } else {
                0.0
            };
            let label = match () {
                _ if units <= 0.0 && stock > 0.0 => "DEAD",
                _ if cover > self.slow_cover => "SLOW",
                _ if cover < self.fast_cover => "FAST",
                _ => "NORMAL",
            };
            let dims = [
                ("store_id", store.as_str()),
                ("product_id", product),
                ("label", label),
            ];
            let values = [
                ("units_sold", units),
                ("avg_daily_units", per_day),
                ("stock_level", stock),
                ("days_of_cover", cover),
                ("sell_through", through),
            ];
            out.metric("slow_movers", (start, end), &dims, &values);
        }
    }
}

impl Plugin for SlowMovers {
    const NAME: &'static str = "slow-movers";
    const KIND: PluginKind = PluginKind::Aggregator;
    const DESCRIPTION: &'static str = "Daily days-of-cover and sell-through labels per shelf";

    fn new(params: &mut Params) -> Result<Self, String> {
        Ok(SlowMovers {
            lookback: params.number("lookback", 14.0, 1.0, 365.0)? as i64,
            slow_cover: params.number("slow_cover_days", 30.0, 0.0, 9999.0)?,
            fast_cover: params.number("fast_cover_days", 3.0, 0.0, 9999.0)?,
            shelves: BTreeMap::new(),
            done: None,
        })
    }

    /// Inventory and sales metrics arrive on two inputs, so a batch holds one kind.
    fn process(&mut self, batch: &Batch, _out: &mut Emit) {
        for u in batch.inventory() {
            let (day, stock) = (u.timestamp().div_euclid(DAY_MS), u.stock_level());
            self.observe((u.store_id(), u.product_id()), day, |s| s.stock = stock);
        }
        for m in batch.metrics() {
            let Some(shelf) = m.store_product() else {
                continue;
            };
            let (day, units) = (m.window_start().div_euclid(DAY_MS), m.value("units_sold"));
            let units = units.unwrap_or(0.0);
            self.observe(shelf, day, |s| *s.daily.entry(day).or_default() += units);
        }
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Emit) {
        // Day d is classified once the watermark passes the end of day d + 1.
        // ... and never past the newest day with data (the end-of-input watermark is the end
        // of time).
        let Some(newest) = self.shelves.values().map(|s| s.last_day).max() else {
            return;
        };
        let last = (watermark.div_euclid(DAY_MS) - 2).min(newest);
        // Nothing to label before a shelf has been watched for a whole lookback.
        let Some(earliest) = self.shelves.values().map(|s| s.first_day).min() else {
            return;
        };
        let first = self
            .done
            .map_or(last, |d| d + 1)
            .max(earliest + self.lookback - 1);
        (first..=last).for_each(|day| self.classify(day, out));
        if first <= last {
            self.done = Some(last);
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        state::encode(&(self.shelves.iter().collect::<Vec<_>>(), self.done))
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        let (entries, done): Saved = state::decode(Self::NAME, version, &[1], data)?;
        (self.shelves, self.done) = (entries.into_iter().collect(), done);
        Ok(())
    }
}

export_plugin!(SlowMovers);
