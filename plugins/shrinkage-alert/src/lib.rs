//! Inventory discrepancy (shrinkage) rule over cleaned inventory updates. Each update states a
//! movement (`quantity_change`: sales, restocks, returns, write-offs) and the level after it. Per
//! store and product the rule expects `previous level + change`; stock below that vanished
//! without a record. Missing units above `tolerance` raise `shrinkage` (critical from
//! `critical_pct` percent of capacity), with the window between the two updates.

use std::collections::BTreeMap;

use shelfstream_sdk::*;

pub struct ShrinkageAlert {
    tolerance: f64,
    critical_pct: f64,
    /// Last reported level and when.
    last: BTreeMap<(String, String), (i32, Timestamp)>,
}

impl Plugin for ShrinkageAlert {
    const NAME: &'static str = "shrinkage-alert";
    const KIND: PluginKind = PluginKind::AlertRule;
    const DESCRIPTION: &'static str =
        "Alerts when stock falls more than recorded movements explain";

    fn new(params: &mut Params) -> Result<Self, String> {
        Ok(ShrinkageAlert {
            tolerance: params.number("tolerance", 5.0, 0.0, 1e9)?,
            critical_pct: params.number("critical_pct", 25.0, 0.0, 100.0)?,
            last: BTreeMap::new(),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Emit) {
        for u in batch.inventory() {
            let key = (u.store_id().to_string(), u.product_id().to_string());
            let previous = self.last.insert(key, (u.stock_level(), u.timestamp()));
            let Some((level, since)) = previous else {
                continue;
            };
            let expected = level + u.quantity_change();
            let missing = (expected - u.stock_level()) as f64;
            if missing <= self.tolerance {
                continue;
            }
            let critical = missing >= u.capacity() as f64 * self.critical_pct / 100.0;
            out.alert(alert(
                "shrinkage",
                if critical {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                (u.store_id(), u.product_id()),
                (since, u.timestamp()),
                format!(
                    "{missing} units missing: expected {expected} after a {} of {}, counted {}",
                    u.reason(),
                    u.quantity_change(),
                    u.stock_level()
                ),
                &[
                    ("previous_level", level as f64),
                    ("quantity_change", u.quantity_change() as f64),
                    ("expected_level", expected as f64),
                    ("reported_level", u.stock_level() as f64),
                    ("missing_units", missing),
                    ("tolerance", self.tolerance),
                ],
            ));
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        state::encode(&self.last.iter().collect::<Vec<_>>())
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        let entries: Vec<((String, String), (i32, Timestamp))> =
            state::decode(Self::NAME, version, &[1], data)?;
        self.last = entries.into_iter().collect();
        Ok(())
    }
}

export_plugin!(ShrinkageAlert);
