//! Demand forecaster: simple exponential smoothing of units sold per store and product per
//! window, fed by an aggregator's metric rows. Each closed window updates the level and emits a
//! forecast for the next window with a prediction interval from the smoothed squared error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shelfstream_sdk::*;

#[derive(Clone, Copy, Serialize, Deserialize)]
struct Level {
    level: f64,
    /// Exponentially smoothed squared one-step error.
    mse: f64,
    seen: u64,
}

pub struct DemandForecaster {
    alpha: f64,
    z: f64,
    value: String,
    levels: BTreeMap<(String, String), Level>,
}

impl Plugin for DemandForecaster {
    const NAME: &'static str = "demand-forecaster";
    const KIND: PluginKind = PluginKind::Forecaster;
    const DESCRIPTION: &'static str = "Exponential smoothing forecast of next-window demand";

    fn new(params: &mut Params) -> Result<Self, String> {
        Ok(DemandForecaster {
            alpha: params.number("alpha", 0.3, 0.01, 1.0)?,
            z: params.number("z", 1.96, 0.0, 5.0)?,
            value: params.get("value", "units_sold".to_string())?,
            levels: BTreeMap::new(),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Emit) {
        for m in batch.metrics() {
            let (Some((store, product)), Some(y)) = (m.store_product(), m.value(&self.value))
            else {
                continue;
            };
            let l = self
                .levels
                .entry((store.to_string(), product.to_string()))
                .or_insert(Level {
                    level: y,
                    mse: 0.0,
                    seen: 0,
                });
            if l.seen > 0 {
                let err = y - l.level;
                l.mse = self.alpha * err * err + (1.0 - self.alpha) * l.mse;
                l.level += self.alpha * err;
            }
            l.seen += 1;
            let width = self.z * l.mse.sqrt();
            let (start, end) = m.window();
            out.forecast(Forecast {
                model: format!("ses(alpha={})", self.alpha),
                store_id: store.to_string(),
                product_id: product.to_string(),
                target_start: end,
                target_end: end + (end - start),
                predicted: l.level,
                lower: (l.level - width).max(0.0),
                upper: l.level + width,
                timestamp: end,
            });
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        state::encode(&self.levels.iter().collect::<Vec<_>>())
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        let entries: Vec<((String, String), Level)> =
            state::decode(Self::NAME, version, &[1], data)?;
        self.levels = entries.into_iter().collect();
        Ok(())
    }
}

export_plugin!(DemandForecaster);
