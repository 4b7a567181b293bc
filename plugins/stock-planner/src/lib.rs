//! Stock optimisation: reorder point, safety stock and order quantity per store and product,
//! from the daily demand forecasts (e.g. of `holt-winters-forecaster`) and the stock level in
//! inventory updates. Reads two streams: `input = ["forecasts", "inventory"]`.
//!
//! Over the supplier `lead_time` L the forecast gives the expected demand D(L) and, from its
//! intervals (sigma_h = (upper - predicted) / `forecast_z`), a variance V(L) = sum sigma_h^2.
//! safety stock = z(service_level) * sqrt(V(L)); reorder point = D(L) + safety stock; the order
//! fills up to D(L + review_period) + safety stock, at most to the shelf's capacity.
//! Each new forecast emits a `stock_plan` metric row; an update at or below the reorder point
//! raises `reorder_point` once per episode.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shelfstream_sdk::stats::normal_quantile;
use shelfstream_sdk::*;

#[derive(Clone, Default, Serialize, Deserialize)]
struct Shelf {
    made_at: Timestamp,
    /// (days ahead at the period's end, predicted, sigma) per forecast period.
    periods: Vec<(f64, f64, f64)>,
    stock: Option<(i32, i32)>,
    alerted: bool,
}

pub struct StockPlanner {
    z: f64,
    service_level: f64,
    lead_days: f64,
    review_days: f64,
    forecast_z: f64,
    shelves: BTreeMap<(String, String), Shelf>,
}

struct Plan {
    lead_demand: f64,
    safety: f64,
    reorder_point: f64,
    order: f64,
}

impl StockPlanner {
    /// Expected demand and its variance over the next `days` (fractions of a period count pro rata).
    fn demand(&self, shelf: &Shelf, days: f64) -> (f64, f64) {
        let (mut mean, mut var, mut from) = (0.0, 0.0, 0.0);
        for &(to, predicted, sigma) in &shelf.periods {
            let share = ((days.min(to) - from) / (to - from)).clamp(0.0, 1.0);
            mean += share * predicted;
            var += share * sigma * sigma;
            from = to;
        }
        (mean, var)
    }

    fn plan(&self, shelf: &Shelf) -> Option<Plan> {
        let (stock, capacity) = shelf.stock?;
        if shelf.periods.is_empty() {
            return None;
        }
        let (lead_demand, var) = self.demand(shelf, self.lead_days);
        let (cycle_demand, _) = self.demand(shelf, self.lead_days + self.review_days);
        let safety = self.z * var.sqrt();
        let reorder_point = lead_demand + safety;
        let order = (cycle_demand + safety - stock as f64)
            .ceil()
            .clamp(0.0, (capacity - stock).max(0) as f64);
        Some(Plan {
            lead_demand,
            safety,
            reorder_point,
            order,
        })
    }
}

impl Plugin for StockPlanner {
    const NAME: &'static str = "stock-planner";
    const KIND: PluginKind = PluginKind::AlertRule;
    const DESCRIPTION: &'static str =
        "Reorder point, safety stock and order quantity from the forecast";

    fn new(params: &mut Params) -> Result<Self, String> {
        let service_level = params.number("service_level", 0.95, 0.5, 0.9999)?;
        Ok(StockPlanner {
            z: normal_quantile(service_level),
            service_level,
            lead_days: params.duration_ms("lead_time", 2 * DAY_MS)? as f64 / DAY_MS as f64,
            review_days: params.duration_ms("review_period", 7 * DAY_MS)? as f64 / DAY_MS as f64,
            forecast_z: params.number("forecast_z", 1.96, 0.1, 5.0)?,
            shelves: BTreeMap::new(),
        })
    }

    /// Forecasts and inventory arrive on two inputs, so a batch holds one kind or the other.
    fn process(&mut self, batch: &Batch, out: &mut Emit) {
        let mut planned = std::collections::BTreeSet::new();
        for f in batch.forecasts() {
            let shelf = self
                .shelves
                .entry((f.store_id.clone(), f.product_id.clone()))
                .or_default();
            if f.timestamp != shelf.made_at {
                (shelf.made_at, shelf.periods) = (f.timestamp, Vec::new());
            }
            let ahead = (f.target_end - f.timestamp) as f64 / DAY_MS as f64;
            let sigma = (f.upper - f.predicted).max(0.0) / self.forecast_z;
            shelf.periods.push((ahead, f.predicted, sigma));
            planned.insert((f.store_id.clone(), f.product_id.clone()));
        }
        for u in batch.inventory() {
            let key = (u.store_id().to_string(), u.product_id().to_string());
            let shelf = self.shelves.entry(key.clone()).or_default();
            shelf.stock = Some((u.stock_level(), u.capacity()));
            let Some(plan) = self.plan(&self.shelves[&key]) else {
                continue;
            };
            let shelf = self.shelves.get_mut(&key).expect("inserted above");
            if (u.stock_level() as f64) > plan.reorder_point {
                shelf.alerted = false;
            } else if !shelf.alerted && plan.order > 0.0 {
                shelf.alerted = true;
                out.alert(alert(
                    "reorder_point",
                    Severity::Warning,
                    (u.store_id(), u.product_id()),
                    (u.timestamp(), u.timestamp()),
                    format!(
                        "stock {} is at or below the reorder point {:.1}: order {}",
                        u.stock_level(),
                        plan.reorder_point,
                        plan.order
                    ),
                    &[
                        ("stock_level", u.stock_level() as f64),
                        ("reorder_point", plan.reorder_point),
                        ("safety_stock", plan.safety),
                        ("lead_time_demand", plan.lead_demand),
                        ("order_quantity", plan.order),
                        ("service_level", self.service_level),
                    ],
                ));
            }
        }
        for key in planned {
            let Some(plan) = self.plan(&self.shelves[&key]) else {
                continue;
            };
            let shelf = &self.shelves[&key];
            let values = [
                ("stock_level", shelf.stock.map_or(0.0, |s| s.0 as f64)),
                ("lead_time_demand", plan.lead_demand),
                ("safety_stock", plan.safety),
                ("reorder_point", plan.reorder_point),
                ("order_quantity", plan.order),
                ("service_level", self.service_level),
            ];
            let dims = [("store_id", key.0.as_str()), ("product_id", key.1.as_str())];
            let made = (shelf.made_at, shelf.made_at);
            out.metric("stock_plan", made, &dims, &values);
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        state::encode(&self.shelves.iter().collect::<Vec<_>>())
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        let entries: Vec<((String, String), Shelf)> =
            state::decode(Self::NAME, version, &[1], data)?;
        self.shelves = entries.into_iter().collect();
        Ok(())
    }
}

export_plugin!(StockPlanner);
