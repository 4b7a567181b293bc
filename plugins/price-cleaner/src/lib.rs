//! Cleaner for `retail-price-changes`: validates both prices, normalises identifiers, money and
//! time, and drops repeats of a change (same shelf, time and new price) within the dedup window.

use serde::Deserialize;
use shelfstream_sdk::*;

use std::borrow::Cow;

#[derive(Deserialize)]
struct Change<'a> {
    #[serde(borrow)]
    store_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    product_id: Option<Cow<'a, str>>,
    old_price: Option<f64>,
    new_price: Option<f64>,
    timestamp: Option<clean::Time>,
}

pub struct PriceCleaner {
    seen: dedup::RecentIds,
}

impl Plugin for PriceCleaner {
    const NAME: &'static str = "price-cleaner";
    const KIND: PluginKind = PluginKind::Cleaner;
    const DESCRIPTION: &'static str = "Validates and normalises price changes";
    const STATE_VERSION: u32 = 3;

    fn new(params: &mut Params) -> Result<Self, String> {
        let seen = dedup::RecentIds::from_params(params)?;
        Ok(PriceCleaner { seen })
    }

    fn clean(&mut self, record: Record<'_>, out: &mut Emit) -> Result<(), String> {
        let (id, timestamp) = clean_one(record.payload(), out)?;
        self.seen.reject_repeat(&id, timestamp)
    }

    fn snapshot(&self) -> Vec<u8> {
        self.seen.snapshot()
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        self.seen
            .restore(Self::NAME, version, Self::STATE_VERSION, data)
    }
}

/// Emit the change in `payload`; its dedup id (shelf, time and new price) and time are returned.
pub fn clean_one(payload: &[u8], out: &mut Emit) -> Result<(String, Timestamp), String> {
    let c: Change = serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))?;
    let price = |v: Option<f64>, field: &str| match v {
        None => Err(format!("{field}: missing")),
        Some(x) if !x.is_finite() || x <= 0.0 => Err(format!("{field}: {x} is not a price")),
        Some(x) => Ok(clean::cents(x)),
    };
    let p = PriceChange {
        store_id: &clean::store_id(c.store_id.as_deref().ok_or("store_id: missing")?)?,
        product_id: &clean::sku(c.product_id.as_deref().ok_or("product_id: missing")?)?,
        old_price: price(c.old_price, "old_price")?,
        new_price: price(c.new_price, "new_price")?,
        timestamp: clean::Time::get(c.timestamp)?,
    };
    out.price(&p);
    let id = format!(
        "{}:{}@{}={}",
        p.store_id, p.product_id, p.timestamp, p.new_price
    );
    Ok((id, p.timestamp))
}

export_plugin!(PriceCleaner);
