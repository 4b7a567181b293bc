//! Cleaner for `retail-price-changes`: validates both prices, normalises identifiers, money and
//! time, and drops repeats of a change (same shelf, time and new price) within the dedup window.

use serde::Deserialize;
use shelfstream_sdk::*;

use std::borrow::Cow;

// Text fields borrow from the payload (`Cow`: owned only when JSON escapes force a copy).
#[derive(Deserialize, Default, Debug, PartialEq)]
pub struct Change<'a> {
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
    let c = match scan(payload) {
        Some(c) => c,
        None => parse(payload)?,
    };
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

/// The change as serde_json reads it, or why it cannot.
pub fn parse(payload: &[u8]) -> Result<Change<'_>, String> {
    serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))
}

/// The same for plain payloads, read by the SDK's JSON reader (`None`: anything else, which
/// [`parse`] then reads or words).
pub fn scan(payload: &[u8]) -> Option<Change<'_>> {
    let mut c = Change::default();
    json::object(payload, |key, r| {
        match key {
            "store_id" => c.store_id = r.text()?,
            "product_id" => c.product_id = r.text()?,
            "old_price" => c.old_price = r.number(|n| n.float())?,
            "new_price" => c.new_price = r.number(|n| n.float())?,
            "timestamp" => c.timestamp = r.text()?.map(|t| clean::Time::parse(&t)),
            _ => {}
        }
        Some(())
    })?;
    Some(c)
}

export_plugin!(PriceCleaner);
