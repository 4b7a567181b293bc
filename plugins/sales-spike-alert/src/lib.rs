//! Sales spike alert rule over windowed metrics (e.g. `sales_1m`): per store and product it keeps
//! an exponentially weighted mean of `units_sold` and alerts when a window sells more than
//! `factor` times that mean and at least `min_units`. A first sketch of the sales anomaly rule.

use shelfstream_sdk::*;

pub struct SalesSpikeAlert {
    factor: f64,
    min_units: f64,
    alpha: f64,
    /// Per store, per product: looked up by the row's text, allocating only for a new shelf.
    mean: hash::FastMap<String, hash::FastMap<String, f64>>,
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
            mean: Default::default(),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Emit) {
        for m in batch.metrics() {
            let (Some((store, product)), Some(units)) = (m.store_product(), m.value("units_sold"))
            else {
                continue;
            };
            let products = match self.mean.get_mut(store) {
                Some(products) => products,
                None => self.mean.entry(store.to_string()).or_default(),
            };
            let mean = match products.get_mut(product) {
                Some(mean) => mean,
                None => products.entry(product.to_string()).or_insert(units),
            };
            if units >= self.min_units && units > self.factor * *mean {
                let message = format!(
                    "{units} units sold in one window, {:.1}x the usual {mean:.1}",
                    units / *mean
                );
                let evidence = [
                    ("units_sold", units),
                    ("mean_units", *mean),
                    ("factor", self.factor),
                ];
                let severity = Severity::Info;
                let shelf = (store, product);
                out.alert(alert(
                    "sales_spike",
                    severity,
                    shelf,
                    m.window(),
                    message,
                    &evidence,
                ));
            }
            *mean += self.alpha * (units - *mean);
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut entries: Vec<((&String, &String), f64)> = (self.mean.iter())
            .flat_map(|(s, products)| products.iter().map(move |(p, &m)| ((s, p), m)))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        state::encode(&entries)
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        let entries: Vec<((String, String), f64)> = state::decode(Self::NAME, version, &[1], data)?;
        self.mean.clear();
        for ((store, product), mean) in entries {
            self.mean.entry(store).or_default().insert(product, mean);
        }
        Ok(())
    }
}

export_plugin!(SalesSpikeAlert);
