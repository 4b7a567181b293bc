//! Windowed sales metrics (`sales_1m` by default): revenue, units, transactions and average unit
//! price (of the lines' unit prices, weighted by |quantity|, so returns do not cancel it) per
//! window, emitted when the watermark closes the window. Configurable:
//! `window` (size), `hop` (hopping windows: a new window every `hop`; default = `window`,
//! tumbling), `by` (grouping: any of `store_id`, `product_id`, `category`, comma-separated) and
//! `metric` (the name of the rows, which sinks map to a table). One plugin gives the 1-minute
//! dashboard, the 1-hour hopping view and the daily rollups per store and per category.

use serde::{Deserialize, Serialize};
use shelfstream_sdk::*;

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    revenue: f64,
    units: i64,
    lines: u64,
    /// Sum of |quantity| x unit price, and of |quantity| (state version 3; older windows lack
    /// them and fall back to revenue / units).
    #[serde(default)]
    priced: f64,
    #[serde(default)]
    weight: i64,
    /// Distinct transactions, as sorted 64-bit hashes of their ids (state version 1 kept the
    /// ids). A window holds a few, so a sorted list beats a tree.
    #[serde(deserialize_with = "transaction_hashes")]
    transactions: Vec<u64>,
}

/// Hashes (version 2) or ids (version 1, hashed on the way in).
fn transaction_hashes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Hash(u64),
        Text(String),
    }
    let ids = Vec::<Id>::deserialize(d)?;
    let mut hashes: Vec<u64> = (ids.into_iter())
        .map(|id| match id {
            Id::Hash(h) => h,
            Id::Text(t) => hash::fnv1a(t.as_bytes()),
        })
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    Ok(hashes)
}

const GROUPINGS: [&str; 3] = ["store_id", "product_id", "category"];

pub struct RevenueAggregator {
    window: Hopping,
    metric: String,
    by: Vec<String>,
    /// `by` as the index of each grouping in [`GROUPINGS`].
    fields: Vec<usize>,
    /// Each group's values (e.g. store and product), numbered: windows are keyed by the number.
    groups: hash::Groups,
    open: WindowStore<u32, Totals>,
}

impl Plugin for RevenueAggregator {
    const NAME: &'static str = "revenue-aggregator";
    const KIND: PluginKind = PluginKind::Aggregator;
    const DESCRIPTION: &'static str = "Revenue, units and transactions per group per window";
    const STATE_VERSION: u32 = 3;

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
        let fields = (by.iter())
            .map(|b| GROUPINGS.iter().position(|g| g == b).expect("checked"))
            .collect();
        Ok(RevenueAggregator {
            window,
            metric,
            by,
            fields,
            groups: Default::default(),
            open: WindowStore::new(),
        })
    }

    fn process(&mut self, batch: &Batch, _out: &mut Emit) {
        // A group's number looked up once per distinct group in the batch, by dictionary ids.
        let mut keys: hash::FastMap<[u32; 3], u32> = Default::default();
        for s in batch.sales() {
            let id = |f: usize| match f {
                0 => s.store_id_id(),
                1 => s.product_id_id(),
                _ => s.category_id(),
            };
            let name = |f: usize| match f {
                0 => s.store_id(),
                1 => s.product_id(),
                _ => s.category().unwrap_or("unknown"),
            };
            let mut ids = [NONE; 3];
            (ids.iter_mut().zip(&self.fields)).for_each(|(i, &f)| *i = id(f));
            let key = *(keys.entry(ids)).or_insert_with(|| {
                let names = self.fields.iter().map(|&f| name(f).to_string()).collect();
                self.groups.number(names)
            });
            let transaction = hash::fnv1a(s.transaction_id().as_bytes());
            let weight = s.quantity().unsigned_abs() as i64;
            for w in self.window.assign(s.timestamp()) {
                let t = self.open.entry(w, key, Totals::default);
                t.revenue += s.total_amount();
                t.units += s.quantity() as i64;
                t.lines += 1;
                t.priced += weight as f64 * s.unit_price();
                t.weight += weight;
                if let Err(at) = t.transactions.binary_search(&transaction) {
                    t.transactions.insert(at, transaction);
                }
            }
        }
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Emit) {
        // Per window, rows in the order of their groups' values.
        let closed = (self.open).close_by(watermark, |a, b| self.groups.cmp(*a, *b));
        for (w, key, t) in closed {
            let key = self.groups.get(key);
            let avg = match (t.weight, t.units) {
                (0, 0) => 0.0,
                (0, units) => clean::cents(t.revenue / units as f64),
                (weight, _) => clean::cents(t.priced / weight as f64),
            };
            let dims: Vec<(&str, &str)> = (self.by.iter().map(String::as_str))
                .zip(key.iter().map(String::as_str))
                .collect();
            let values = [
                ("total_revenue", clean::cents(t.revenue)),
                ("units_sold", t.units as f64),
                ("transaction_count", t.transactions.len() as f64),
                ("avg_unit_price", avg),
            ];
            out.metric(&self.metric, (w.start, w.end), &dims, &values);
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut open: Vec<_> = (self.open.iter())
            .map(|(w, &k, t)| (w, self.groups.get(k), t))
            .collect();
        open.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        state::encode(&open)
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        let open: Vec<(Window, Vec<String>, Totals)> =
            state::decode(Self::NAME, version, &[1, 2, 3], data)?;
        self.groups.clear();
        let open: Vec<_> = (open.into_iter())
            .map(|(w, names, t)| (w, self.groups.number(names), t))
            .collect();
        self.open = open.into();
        Ok(())
    }
}

export_plugin!(RevenueAggregator);
