//! Cleaner for `retail-sales-transactions`: one JSON transaction with line items in, one typed
//! `sale` per line out, or a rejection naming the field at fault. Returns and refunds are lines
//! with a negative quantity. Identifiers are normalised (`s1` -> `S001`, `sku42` -> `SKU-00042`),
//! money is rounded to cents and times become UTC milliseconds.

use std::borrow::Cow;
use std::hash::Hasher;

use serde::Deserialize;
use shelfstream_sdk::*;

// Text fields borrow from the payload (`Cow`: owned only when JSON escapes force a copy).
#[derive(Deserialize, Default, Debug, PartialEq)]
pub struct Transaction<'a> {
    #[serde(borrow)]
    transaction_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    store_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    customer_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payment_method: Option<Cow<'a, str>>,
    /// `sale` (default), `return` or `refund`: returns and refunds may list positive quantities.
    #[serde(borrow)]
    transaction_type: Option<Cow<'a, str>>,
    timestamp: Option<clean::Time>,
    #[serde(borrow)]
    items: Option<Vec<Item<'a>>>,
}

#[derive(Deserialize, Default, Debug, PartialEq)]
pub struct Item<'a> {
    /// The line number within the transaction; default: the item's position.
    line: Option<u32>,
    #[serde(borrow)]
    product_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    category: Option<Cow<'a, str>>,
    quantity: Option<i32>,
    /// `each` (default), `pair`, `dozen`, or `pack-N` / `case-N`: quantities become single units.
    #[serde(borrow)]
    unit: Option<Cow<'a, str>>,
    unit_price: Option<f64>,
    /// The price in cents, when the source sends minor units.
    unit_price_cents: Option<i64>,
}

/// How many single units one `unit` holds.
fn units_per(unit: Option<&str>) -> Result<i32, String> {
    let Some(unit) = unit.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(1);
    };
    let unit = unit.to_lowercase();
    match unit.as_str() {
        "each" | "unit" | "ea" => Ok(1),
        "pair" => Ok(2),
        "dozen" => Ok(12),
        other => other
            .strip_prefix("pack-")
            .or_else(|| other.strip_prefix("case-"))
            .and_then(|n| n.parse::<i32>().ok())
            .filter(|n| (1..=10_000).contains(n))
            .ok_or(format!(
                "unit: {other:?} is not each, pair, dozen, pack-N or case-N"
            )),
    }
}

pub struct SalesCleaner {
    max_quantity: i32,
    seen: dedup::RecentIds,
}

impl Plugin for SalesCleaner {
    const NAME: &'static str = "sales-cleaner";
    const KIND: PluginKind = PluginKind::Cleaner;
    const DESCRIPTION: &'static str = "Validates and normalises sales transactions into sale lines";
    const STATE_VERSION: u32 = 3;

    fn new(params: &mut Params) -> Result<Self, String> {
        let max_quantity = params.number("max_quantity", 1000.0, 1.0, 1e6)? as i32;
        let seen = dedup::RecentIds::from_params(params)?;
        Ok(SalesCleaner { max_quantity, seen })
    }

    fn clean(&mut self, record: Record<'_>, out: &mut Emit) -> Result<(), String> {
        self.clean_one(record.payload(), out)
    }

    fn snapshot(&self) -> Vec<u8> {
        self.seen.snapshot()
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        self.seen
            .restore(Self::NAME, version, Self::STATE_VERSION, data)
    }
}

impl SalesCleaner {
    /// Emit one sale per line of the transaction in `payload`, then reject it if a transaction
    /// with the same id and line numbers was seen before (the id `T1#0,1`, hashed as spelt).
    /// A rejection drops the lines already emitted.
    pub fn clean_one(&mut self, payload: &[u8], out: &mut Emit) -> Result<(), String> {
        let tx = match scan(payload) {
            Some(tx) => tx,
            None => parse(payload)?,
        };
        let transaction_id = required(tx.transaction_id.as_deref(), "transaction_id")?;
        let store_id = clean::store_id(required(tx.store_id.as_deref(), "store_id")?)?;
        let timestamp = clean::Time::get(tx.timestamp)?;
        let items = tx.items.ok_or("items: missing")?;
        if items.is_empty() {
            return Err("items: empty transaction".into());
        }
        let customer_id = tx.customer_id.filter(|c| !clean::trim(c).is_empty());
        let sign = match tx.transaction_type.as_deref() {
            None => 1,
            Some(t) if t.eq_ignore_ascii_case("sale") => 1,
            Some(t) if t.eq_ignore_ascii_case("return") || t.eq_ignore_ascii_case("refund") => -1,
            Some(other) => {
                return Err(format!(
                    "transaction_type: {:?} is not sale, return or refund",
                    other.to_lowercase()
                ))
            }
        };
        let payment_method = clean::lowercase(tx.payment_method.as_deref().unwrap_or("unknown"));
        let mut id = hash::Fnv64::default();
        id.write(transaction_id.as_bytes());
        let (mut separator, mut digits) = (b'#', [0u8; 10]);
        for (i, item) in items.iter().enumerate() {
            let product_id = required(item.product_id.as_deref(), "product_id")
                .and_then(clean::sku)
                .map_err(|e| format!("items[{i}].{e}"))?;
            let quantity = item
                .quantity
                .ok_or_else(|| format!("items[{i}].quantity: missing"))?;
            // A return of 2 is -2 whether the source wrote 2 or -2.
            let quantity = if sign < 0 { -quantity.abs() } else { quantity };
            let per = units_per(item.unit.as_deref()).map_err(|e| format!("items[{i}].{e}"))?;
            if quantity == 0 || quantity.abs() > self.max_quantity {
                return Err(format!(
                    "items[{i}].quantity: {quantity} is outside ±1..{}",
                    self.max_quantity
                ));
            }
            let unit_price = item
                .unit_price
                .or(item.unit_price_cents.map(|c| c as f64 / 100.0))
                .ok_or_else(|| format!("items[{i}].unit_price: missing"))?;
            if !unit_price.is_finite() || unit_price < 0.0 {
                return Err(format!(
                    "items[{i}].unit_price: {unit_price} is not a price"
                ));
            }
            let unit_price = clean::cents(unit_price);
            let total_amount = clean::cents(unit_price * quantity as f64);
            let quantity = quantity
                .checked_mul(per)
                .ok_or_else(|| format!("items[{i}].quantity: {quantity} x {per} is too many"))?;
            let line = item.line.unwrap_or(i as u32);
            out.sale(&Sale {
                transaction_id,
                line,
                store_id: &store_id,
                product_id: &product_id,
                category: item
                    .category
                    .as_deref()
                    .map(clean::trim)
                    .filter(|c| !c.is_empty()),
                quantity,
                unit_price: clean::cents(unit_price / per as f64),
                total_amount,
                customer_id: customer_id.as_deref(),
                payment_method: &payment_method,
                timestamp,
            });
            id.write(&[separator]);
            id.write(decimal(line, &mut digits));
            separator = b',';
        }
        self.seen.reject_repeat_hash(id.finish(), timestamp, || {
            let lines: Vec<String> = (items.iter().enumerate())
                .map(|(i, item)| item.line.unwrap_or(i as u32).to_string())
                .collect();
            format!("{transaction_id}#{}", lines.join(","))
        })
    }
}

/// The transaction as serde_json reads it, or why it cannot.
pub fn parse(payload: &[u8]) -> Result<Transaction<'_>, String> {
    serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))
}

/// The same for plain payloads, read by the SDK's JSON reader (`None`: anything else, which
/// [`parse`] then reads or words).
pub fn scan(payload: &[u8]) -> Option<Transaction<'_>> {
    let mut tx = Transaction::default();
    json::object(payload, |key, r| {
        match key {
            "transaction_id" => tx.transaction_id = r.text()?,
            "store_id" => tx.store_id = r.text()?,
            "customer_id" => tx.customer_id = r.text()?,
            "payment_method" => tx.payment_method = r.text()?,
            "transaction_type" => tx.transaction_type = r.text()?,
            "timestamp" => tx.timestamp = r.text()?.map(|t| clean::Time::parse(&t)),
            "items" => tx.items = r.list(scan_item)?,
            _ => {}
        }
        Some(())
    })?;
    Some(tx)
}

fn scan_item<'a>(r: &mut json::Reader<'a>) -> Option<Item<'a>> {
    let mut item = Item::default();
    r.object(|key, r| {
        match key {
            "line" => item.line = r.number(|n| n.integer()?.try_into().ok())?,
            "product_id" => item.product_id = r.text()?,
            "category" => item.category = r.text()?,
            "quantity" => item.quantity = r.number(|n| n.integer()?.try_into().ok())?,
            "unit" => item.unit = r.text()?,
            "unit_price" => item.unit_price = r.number(|n| n.float())?,
            "unit_price_cents" => item.unit_price_cents = r.number(|n| n.integer())?,
            _ => {}
        }
        Some(())
    })?;
    Some(item)
}

/// `n` in decimal, written into `buf`.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

fn required<'a>(value: Option<&'a str>, field: &str) -> Result<&'a str, String> {
    match value {
        Some(v) if !clean::trim(v).is_empty() => Ok(v),
        Some(_) => Err(format!("{field}: empty")),
        None => Err(format!("{field}: missing")),
    }
}

export_plugin!(SalesCleaner);

#[cfg(test)]
mod tests {
    use super::*;
    use shelfstream_sdk::time::parse_rfc3339_ms;

    fn clean(json: &str) -> Result<Batch, String> {
        let mut cleaner = SalesCleaner {
            max_quantity: 1000,
            seen: dedup::RecentIds::new(60_000, 100),
        };
        let out = rt::clean(&mut cleaner, &raw_batch("sales", [json.as_bytes()]));
        match out.rejections.into_iter().next() {
            Some(r) => Err(r.reason),
            None => Ok(Batch::new(out.events)),
        }
    }

    #[test]
    fn lines_become_sales_with_normalised_ids() {
        let out = clean(
            r#"{"transaction_id":"T1","store_id":"s7","timestamp":"2026-11-22T10:00:00+01:00",
            "payment_method":"CARD","items":[{"product_id":"sku42","quantity":2,"unit_price":1.005},
            {"product_id":"SKU-00007","quantity":-1,"unit_price":3.5}]}"#,
        )
        .unwrap();
        let out: Vec<_> = out.sales().collect();
        assert_eq!(out.len(), 2);
        let s = &out[0];
        assert_eq!((s.store_id(), s.product_id()), ("S007", "SKU-00042"));
        assert_eq!(
            s.timestamp(),
            parse_rfc3339_ms("2026-11-22T09:00:00Z").unwrap()
        );
        assert_eq!(s.payment_method(), "card");
        let r = &out[1];
        assert_eq!((r.quantity(), r.total_amount(), r.line()), (-1, -3.5, 1));
    }

    #[test]
    fn packs_and_cents_become_single_units_and_money() {
        let out = clean(
            r#"{"transaction_id":"T1","store_id":"S1","timestamp":0,"items":[
            {"product_id":"SKU-1","quantity":2,"unit":"Pack-6","unit_price":3.0},
            {"product_id":"SKU-2","quantity":1,"unit":"dozen","unit_price_cents":600}]}"#,
        )
        .unwrap();
        for s in out.sales() {
            assert_eq!(
                (s.quantity(), s.unit_price(), s.total_amount()),
                (12, 0.5, 6.0)
            );
        }
        let Err(err) = clean(
            r#"{"transaction_id":"T","store_id":"S1","timestamp":0,"items":[{"product_id":"SKU-1","quantity":1,"unit":"barrel","unit_price":1}]}"#,
        ) else {
            panic!()
        };
        assert!(err.contains("items[0].unit"), "{err}");
    }

    #[test]
    fn refunds_with_positive_quantities_become_negative_lines() {
        let out = clean(
            r#"{"transaction_id":"R1","transaction_type":"Refund","store_id":"S1","timestamp":0,
            "items":[{"product_id":"SKU-1","quantity":2,"unit_price":1.25}]}"#,
        )
        .unwrap();
        let s = out.sales().next().unwrap();
        assert_eq!((s.quantity(), s.total_amount()), (-2, -2.5));
        let Err(err) = clean(
            r#"{"transaction_id":"X","transaction_type":"gift","store_id":"S1","timestamp":0,"items":[{"product_id":"SKU-1","quantity":1,"unit_price":1}]}"#,
        ) else {
            panic!()
        };
        assert!(err.contains("transaction_type"), "{err}");
    }

    #[test]
    fn rejections_name_the_field() {
        let cases = [
            ("not json", "invalid JSON"),
            (
                r#"{"store_id":"S1","timestamp":0,"items":[]}"#,
                "transaction_id: missing",
            ),
            (
                r#"{"transaction_id":"T","store_id":"S1","timestamp":0,"items":[]}"#,
                "items: empty",
            ),
            (
                r#"{"transaction_id":"T","store_id":"S1","timestamp":"soon","items":[{}]}"#,
                "timestamp",
            ),
            (
                r#"{"transaction_id":"T","store_id":"S1","timestamp":0,"items":[{"product_id":"SKU-1","quantity":0,"unit_price":1}]}"#,
                "items[0].quantity",
            ),
            (
                r#"{"transaction_id":"T","store_id":"S1","timestamp":0,"items":[{"product_id":"SKU-1","quantity":1,"unit_price":-2}]}"#,
                "items[0].unit_price",
            ),
            (
                r#"{"transaction_id":"T","store_id":"??","timestamp":0,"items":[{"product_id":"SKU-1","quantity":1,"unit_price":2}]}"#,
                "store_id",
            ),
        ];
        for (json, reason) in cases {
            let Err(err) = clean(json) else {
                panic!("{json} was accepted")
            };
            assert!(err.contains(reason), "{json}: {err}");
        }
    }
}
