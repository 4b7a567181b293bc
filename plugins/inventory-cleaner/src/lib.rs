//! Cleaner for `retail-inventory-updates`: validates stock changes and normalises identifiers.

use serde::Deserialize;
use shelfstream_sdk::*;

use std::borrow::Cow;

// Text fields borrow from the payload (`Cow`: owned only when JSON escapes force a copy).
#[derive(Deserialize, Default, Debug, PartialEq)]
pub struct Update<'a> {
    #[serde(borrow)]
    update_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    store_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    product_id: Option<Cow<'a, str>>,
    quantity_change: Option<i32>,
    stock_level: Option<i32>,
    capacity: Option<i32>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
    timestamp: Option<clean::Time>,
}

const REASONS: [&str; 5] = ["sale", "restock", "shrinkage", "adjustment", "return"];

pub struct InventoryCleaner {
    seen: dedup::RecentIds,
}

impl Plugin for InventoryCleaner {
    const NAME: &'static str = "inventory-cleaner";
    const KIND: PluginKind = PluginKind::Cleaner;
    const DESCRIPTION: &'static str = "Validates and normalises inventory updates";

    const STATE_VERSION: u32 = 3;

    fn new(params: &mut Params) -> Result<Self, String> {
        let seen = dedup::RecentIds::from_params(params)?;
        Ok(InventoryCleaner { seen })
    }

    fn clean(&mut self, record: Record<'_>, out: &mut Emit) -> Result<(), String> {
        let (update_id, timestamp) = clean_one(record.payload(), out)?;
        self.seen.reject_repeat(&update_id, timestamp)
    }

    fn snapshot(&self) -> Vec<u8> {
        self.seen.snapshot()
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        self.seen
            .restore(Self::NAME, version, Self::STATE_VERSION, data)
    }
}

/// Emit the update in `payload`; its id and time are returned for the dedup check.
pub fn clean_one(payload: &[u8], out: &mut Emit) -> Result<(String, Timestamp), String> {
    let u = match scan(payload) {
        Some(u) => u,
        None => parse(payload)?,
    };
    let stock_level = u.stock_level.ok_or("stock_level: missing")?;
    let capacity = u.capacity.ok_or("capacity: missing")?;
    if stock_level < 0 {
        return Err(format!("stock_level: {stock_level} is negative"));
    }
    if capacity <= 0 {
        return Err(format!("capacity: {capacity} must be positive"));
    }
    let reason = clean::lowercase(u.reason.as_deref().ok_or("reason: missing")?);
    if !REASONS.contains(&&*reason) {
        return Err(format!("reason: {reason:?} is not one of {REASONS:?}"));
    }
    let update_id = (u.update_id.filter(|s| !s.is_empty())).ok_or("update_id: missing")?;
    let update_id = update_id.as_ref();
    let timestamp;
    out.inventory(&InventoryUpdate {
        update_id,
        store_id: &clean::store_id(u.store_id.as_deref().ok_or("store_id: missing")?)?,
        product_id: &clean::sku(u.product_id.as_deref().ok_or("product_id: missing")?)?,
        quantity_change: u.quantity_change.ok_or("quantity_change: missing")?,
        stock_level,
        capacity,
        reason: &reason,
        timestamp: {
            timestamp = clean::Time::get(u.timestamp)?;
            timestamp
        },
    });
    Ok((update_id.to_string(), timestamp))
}

/// The update as serde_json reads it, or why it cannot.
pub fn parse(payload: &[u8]) -> Result<Update<'_>, String> {
    serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))
}

/// The same for plain payloads, read by the SDK's JSON reader (`None`: anything else, which
/// [`parse`] then reads or words).
pub fn scan(payload: &[u8]) -> Option<Update<'_>> {
    let mut u = Update::default();
    let int = |n: json::Number| n.integer()?.try_into().ok();
    json::object(payload, |key, r| {
        match key {
            "update_id" => u.update_id = r.text()?,
            "store_id" => u.store_id = r.text()?,
            "product_id" => u.product_id = r.text()?,
            "quantity_change" => u.quantity_change = r.number(int)?,
            "stock_level" => u.stock_level = r.number(int)?,
            "capacity" => u.capacity = r.number(int)?,
            "reason" => u.reason = r.text()?,
            "timestamp" => u.timestamp = r.text()?.map(|t| clean::Time::parse(&t)),
            _ => {}
        }
        Some(())
    })?;
    Some(u)
}

export_plugin!(InventoryCleaner);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_updates() {
        let mut out = Emit::new();
        clean_one(
            br#"{"update_id":"U1","store_id":"s2","product_id":"sku9","quantity_change":-2,
            "stock_level":5,"capacity":50,"reason":"SALE","timestamp":1000}"#,
            &mut out,
        )
        .unwrap();
        let ok = Batch::new(out.finish());
        let u = ok.inventory().next().unwrap();
        assert_eq!(
            (u.store_id(), u.product_id(), u.reason()),
            ("S002", "SKU-00009", "sale")
        );
        let err = clean_one(
            br#"{"update_id":"U1","store_id":"s2","product_id":"sku9","quantity_change":-2,
            "stock_level":-5,"capacity":50,"reason":"sale","timestamp":1000}"#,
            &mut Emit::new(),
        )
        .unwrap_err();
        assert!(err.contains("stock_level"), "{err}");
        let err = clean_one(
            br#"{"update_id":"U1","store_id":"s2","product_id":"sku9","quantity_change":-2,
            "stock_level":5,"capacity":50,"reason":"theft?","timestamp":1000}"#,
            &mut Emit::new(),
        )
        .unwrap_err();
        assert!(err.contains("reason"), "{err}");
    }
}
