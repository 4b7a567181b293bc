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
    fn classify(&self, day: i64) -> Vec<Event> {
        let from = day - self.lookback + 1;
        let (start, end) = (from * DAY_MS, (day + 1) * DAY_MS);
        let mut rows = Vec::new();
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
            rows.push(Event::Metric(MetricRow {
                metric: "slow_movers".into(),
                window_start: start,
                window_end: end,
                dimensions: vec![
                    ("store_id".into(), store.clone()),
                    ("product_id".into(), product.clone()),
                    ("label".into(), label.into()),
                ],
                values: vec![
                    ("units_sold".into(), units),
                    ("avg_daily_units".into(), per_day),
                    ("stock_level".into(), stock),
                    ("days_of_cover".into(), cover),
                    ("sell_through".into(), through),
                ],
            }));
        }
        rows
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

    fn process(&mut self, batch: Vec<Event>) -> Vec<Event> {
        for event in batch {
            let (key, day) = match &event {
                Event::Inventory(u) => (
                    (u.store_id.clone(), u.product_id.clone()),
                    u.timestamp.div_euclid(DAY_MS),
                ),
                Event::Metric(m) => match store_product(m) {
                    Some(key) => (key, m.window_start.div_euclid(DAY_MS)),
                    None => continue,
                },
                _ => continue,
            };
            let shelf = self.shelves.entry(key).or_insert_with(|| Shelf {
                first_day: day,
                ..Shelf::default()
            });
            shelf.first_day = shelf.first_day.min(day);
            shelf.last_day = shelf.last_day.max(day);
            match event {
                Event::Inventory(u) => shelf.stock = u.stock_level,
                Event::Metric(m) => {
                    *shelf.daily.entry(day).or_default() += value(&m, "units_sold").unwrap_or(0.0)
                }
                _ => {}
            }
            let keep_from = day - self.lookback;
            shelf.daily.retain(|d, _| *d > keep_from);
        }
        Vec::new()
    }

    fn on_watermark(&mut self, watermark: Timestamp) -> Vec<Event> {
        // Day d is classified once the watermark passes the end of day d + 1.
        // ... and never past the newest day with data (the end-of-input watermark is the end
        // of time).
        let Some(newest) = self.shelves.values().map(|s| s.last_day).max() else {
            return Vec::new();
        };
        let last = (watermark.div_euclid(DAY_MS) - 2).min(newest);
        // Nothing to label before a shelf has been watched for a whole lookback.
        let Some(earliest) = self.shelves.values().map(|s| s.first_day).min() else {
            return Vec::new();
        };
        let first = self
            .done
            .map_or(last, |d| d + 1)
            .max(earliest + self.lookback - 1);
        let out = (first..=last).flat_map(|day| self.classify(day)).collect();
        if first <= last {
            self.done = Some(last);
        }
        out
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
