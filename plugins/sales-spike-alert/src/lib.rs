//! Sales spike alert rule over windowed metrics (e.g. `sales_1m`): per store and product it keeps
//! an exponentially weighted mean of `units_sold` and alerts when a window sells more than
//! `factor` times that mean and at least `min_units`. A first sketch of the sales anomaly rule.

use std::collections::BTreeMap;

use shelfstream_sdk::*;

pub struct SalesSpikeAlert {
    factor: f64,
    min_units: f64,
    alpha: f64,
    mean: BTreeMap<(String, String), f64>,
}

impl Plugin for SalesSpikeAlert {
    const NAME: &'static str = "sales-spike-alert";
    const KIND: PluginKind = PluginKind::AlertRule;
    const DESCRIPTION: &'static str =
        "Alerts when a window's units exceed a multiple of their running mean";

    fn new(params: &mut Params) -> Result<Self, String> {
        Ok(SalesSpikeAlert {
            factor: params.number("factor", 3.0, 1.0, 100.0)?,
            min_units: params.number("min_units", 10.0, 0.0, 1e9)?,
            alpha: params.number("alpha", 0.2, 0.01, 1.0)?,
            mean: BTreeMap::new(),
        })
    }

    fn process(&mut self, batch: Vec<Event>) -> Vec<Event> {
        let mut alerts = Vec::new();
        for event in batch {
            let Event::Metric(m) = event else { continue };
            let dim = |k: &str| {
                m.dimensions
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
            };
            let units = m
                .values
                .iter()
                .find(|(n, _)| n == "units_sold")
                .map(|(_, v)| *v);
            let (Some(store), Some(product), Some(units)) =
                (dim("store_id"), dim("product_id"), units)
            else {
                continue;
            };
            let mean = self
                .mean
                .entry((store.clone(), product.clone()))
                .or_insert(units);
            if units >= self.min_units && units > self.factor * *mean {
                alerts.push(Event::Alert(Alert {
                    rule: "sales_spike".into(),
                    severity: Severity::Info,
                    message: format!(
                        "{units} units sold in one window, {:.1}x the usual {mean:.1}",
                        units / *mean
                    ),
                    evidence: vec![
                        ("units_sold".into(), units),
                        ("mean_units".into(), *mean),
                        ("factor".into(), self.factor),
                    ],
                    store_id: store,
                    product_id: product,
                    window_start: m.window_start,
                    window_end: m.window_end,
                    timestamp: m.window_end,
                }));
            }
            *mean += self.alpha * (units - *mean);
        }
        alerts
    }

    fn snapshot(&self) -> Vec<u8> {
        state::encode(&self.mean.iter().collect::<Vec<_>>())
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        let entries: Vec<((String, String), f64)> = state::decode(Self::NAME, version, &[1], data)?;
        self.mean = entries.into_iter().collect();
        Ok(())
    }
}

export_plugin!(SalesSpikeAlert);
