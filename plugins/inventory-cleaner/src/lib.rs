//! Cleaner for `retail-inventory-updates`: validates stock changes and normalises identifiers.

use serde::Deserialize;
use shelfstream_sdk::*;

use std::borrow::Cow;

#[derive(Deserialize)]
struct Update<'a> {
    update_id: Option<String>,
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
    let u: Update = serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))?;
    let stock_level = u.stock_level.ok_or("stock_level: missing")?;
    let capacity = u.capacity.ok_or("capacity: missing")?;
    if stock_level < 0 {
        return Err(format!("stock_level: {stock_level} is negative"));
    }
    if capacity <= 0 {
        return Err(format!("capacity: {capacity} must be positive"));
    }
    let reason = u.reason.ok_or("reason: missing")?.to_lowercase();
    if !REASONS.contains(&reason.as_str()) {
        return Err(format!("reason: {reason:?} is not one of {REASONS:?}"));
    }
    let update_id = (u.update_id.filter(|s| !s.is_empty())).ok_or("update_id: missing")?;
    let timestamp;
    out.inventory(&InventoryUpdate {
        update_id: &update_id,
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
    Ok((update_id, timestamp))
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
