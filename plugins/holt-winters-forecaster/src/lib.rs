//! Demand forecast with weekly seasonality: additive Holt-Winters (Hyndman & Athanasopoulos,
//! "Forecasting: Principles and Practice", 8.3) per store and product over daily metric rows
//! (e.g. `sales_1d`; days without a row sold nothing). After two full seasons it initialises
//! (level = mean of season 1, trend = difference of the season means / m, seasonal = season 1
//! minus the level), replays them, and from then on forecasts the next `horizon` periods each time
//! a period closes, with prediction intervals of ETS(A,A,A):
//! var_h = sigma^2 (1 + sum_{j<h} (alpha (1 + j beta) + gamma [j mod m = 0])^2), sigma^2 = SSE / n.
//! Checked against statsmodels in tests/fixtures/holt_winters.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use shelfstream_sdk::*;

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Series {
    /// Observations until the model initialises.
    warmup: Vec<f64>,
    level: f64,
    trend: f64,
    /// Seasonal terms for the next m periods, the next one first.
    seasonal: VecDeque<f64>,
    sse: f64,
    n: u64,
    last_end: Timestamp,
}

pub struct HoltWinters {
    alpha: f64,
    beta: f64,
    gamma: f64,
    m: usize,
    horizon: i64,
    z: f64,
    value: String,
    series: BTreeMap<(String, String), Series>,
}

impl HoltWinters {
    fn observe(&self, s: &mut Series, y: f64) {
        if s.seasonal.is_empty() {
            s.warmup.push(y);
            if s.warmup.len() < 2 * self.m {
                return;
            }
            let m = self.m as f64;
            let first = s.warmup[..self.m].iter().sum::<f64>() / m;
            let second = s.warmup[self.m..].iter().sum::<f64>() / m;
            (s.level, s.trend) = (first, (second - first) / m);
            s.seasonal = s.warmup[..self.m].iter().map(|y| y - first).collect();
            for y in std::mem::take(&mut s.warmup) {
                self.update(s, y);
            }
            return;
        }
        self.update(s, y);
    }

    fn update(&self, s: &mut Series, y: f64) {
        let (a, b, g) = (self.alpha, self.beta, self.gamma);
        let season = s.seasonal.pop_front().expect("m seasonal terms");
        let error = y - (s.level + s.trend + season);
        s.sse += error * error;
        s.n += 1;
        let (old_level, old_trend) = (s.level, s.trend);
        s.level = a * (y - season) + (1.0 - a) * (old_level + old_trend);
        s.trend = b * (s.level - old_level) + (1.0 - b) * old_trend;
        s.seasonal
            .push_back(g * (y - old_level - old_trend) + (1.0 - g) * season);
    }

    /// (mean, half-width of the interval) h periods ahead.
    fn forecast(&self, s: &Series, h: i64) -> (f64, f64) {
        let mean = s.level + h as f64 * s.trend + s.seasonal[(h as usize - 1) % self.m];
        let sigma2 = s.sse / s.n.max(1) as f64;
        let c = |j: i64| {
            self.alpha * (1.0 + j as f64 * self.beta)
                + if j % self.m as i64 == 0 {
                    self.gamma
                } else {
                    0.0
                }
        };
        let var = sigma2 * (1.0 + (1..h).map(|j| c(j) * c(j)).sum::<f64>());
        (mean, self.z * var.sqrt())
    }
}

impl Plugin for HoltWinters {
    const NAME: &'static str = "holt-winters-forecaster";
    const KIND: PluginKind = PluginKind::Forecaster;
    const DESCRIPTION: &'static str = "Additive Holt-Winters daily demand forecast with intervals";

    fn new(params: &mut Params) -> Result<Self, String> {
        Ok(HoltWinters {
            alpha: params.number("alpha", 0.3, 0.0, 1.0)?,
            beta: params.number("beta", 0.05, 0.0, 1.0)?,
            gamma: params.number("gamma", 0.2, 0.0, 1.0)?,
            m: params.number("season", 7.0, 2.0, 366.0)? as usize,
            horizon: params.number("horizon", 7.0, 1.0, 366.0)? as i64,
            z: params.number("z", 1.96, 0.0, 5.0)?,
            value: params.get("value", "units_sold".to_string())?,
            series: BTreeMap::new(),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Emit) {
        for row in batch.metrics() {
            let (Some((store, product)), Some(y)) = (row.store_product(), row.value(&self.value))
            else {
                continue;
            };
            let key = (store.to_string(), product.to_string());
            let (window_start, window_end) = row.window();
            let size = (window_end - window_start).max(1);
            let mut s = self.series.remove(&key).unwrap_or_else(|| Series {
                last_end: window_start,
                ..Series::default()
            });
            // Periods between the last row and this one had no sales.
            let gap = ((window_start - s.last_end) / size).clamp(0, 4 * self.m as i64);
            (0..gap).for_each(|_| self.observe(&mut s, 0.0));
            self.observe(&mut s, y);
            s.last_end = window_end;
            if !s.seasonal.is_empty() {
                for h in 1..=self.horizon {
                    let (mean, half) = self.forecast(&s, h);
                    out.forecast(Forecast {
                        model: format!(
                            "holt-winters(m={},a={},b={},g={})",
                            self.m, self.alpha, self.beta, self.gamma
                        ),
                        store_id: key.0.clone(),
                        product_id: key.1.clone(),
                        target_start: window_end + (h - 1) * size,
                        target_end: window_end + h * size,
                        predicted: mean.max(0.0),
                        lower: (mean - half).max(0.0),
                        upper: (mean + half).max(0.0),
                        timestamp: window_end,
                    });
                }
            }
            self.series.insert(key, s);
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        state::encode(&self.series.iter().collect::<Vec<_>>())
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        let entries: Vec<((String, String), Series)> =
            state::decode(Self::NAME, version, &[1], data)?;
        self.series = entries.into_iter().collect();
        Ok(())
    }
}

export_plugin!(HoltWinters);
