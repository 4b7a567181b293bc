//! Checking what a plugin returns before the host reads it.
//!
//! A plugin is untrusted: a batch it returns may have offsets out of order or out of bounds,
//! bytes that are not UTF-8, ids outside its dictionary or columns of different lengths. Every
//! such batch is refused with the first thing wrong in it; the stage then treats the call like
//! a trap (dead letters with the reason, a fresh instance, quarantine after repeats). A batch
//! that passes can be read with plain indexing: nothing in it can panic the host.

use super::bindings::{Blobs, Cleaned, Columns, EventBatch};
use super::columns::{part_len, NONE};

/// What is wrong with a batch, in words a plugin author can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("malformed batch: {0}")]
pub struct Malformed(pub String);

fn bad<T>(why: String) -> Result<T, Malformed> {
    Err(Malformed(why))
}

/// Check a variable-length column: `n` values (any number if `None`), UTF-8 if `text`.
fn blobs(name: &str, b: &Blobs, n: Option<usize>, text: bool) -> Result<(), Malformed> {
    let Some((&first, _)) = b.offsets.split_first() else {
        return bad(format!("{name}: no offsets (an empty column has one, 0)"));
    };
    if first != 0 {
        return bad(format!("{name}: the first offset is {first}, not 0"));
    }
    if let Some(n) = n.filter(|&n| n != b.offsets.len() - 1) {
        return bad(format!(
            "{name}: {} values for {n} events",
            b.offsets.len() - 1
        ));
    }
    if let Some(i) = b.offsets.windows(2).position(|w| w[1] < w[0]) {
        return bad(format!(
            "{name}: offsets decrease at {} ({} then {})",
            i + 1,
            b.offsets[i],
            b.offsets[i + 1]
        ));
    }
    let end = *b.offsets.last().expect("not empty") as usize;
    if end != b.bytes.len() {
        return bad(format!(
            "{name}: offsets end at {end} but there are {} bytes",
            b.bytes.len()
        ));
    }
    if text && !all_utf8(b) {
        // Name the first value at fault (the fast check above cannot).
        for (i, w) in b.offsets.windows(2).enumerate() {
            if std::str::from_utf8(&b.bytes[w[0] as usize..w[1] as usize]).is_err() {
                return bad(format!("{name}: value {i} is not UTF-8"));
            }
        }
    }
    Ok(())
}

/// Whether every value of `b` (offsets already checked) is UTF-8: the whole buffer is, and no
/// value starts inside a character. One pass over the bytes instead of a check per value,
/// which cost about 15 ns a value (most of lifting a batch of sales out of a plugin).
fn all_utf8(b: &Blobs) -> bool {
    let continuation = |o: u32| b.bytes.get(o as usize).is_some_and(|&c| c & 0xc0 == 0x80);
    std::str::from_utf8(&b.bytes).is_ok() && !b.offsets.iter().any(|&o| continuation(o))
}

struct Part<'a> {
    kind: &'a str,
    n: usize,
    dict: usize,
}

impl Part<'_> {
    fn len<T>(&self, name: &str, column: &[T]) -> Result<(), Malformed> {
        self.len_is(name, column.len(), self.n)
    }

    fn len_is(&self, name: &str, len: usize, want: usize) -> Result<(), Malformed> {
        if len == want {
            Ok(())
        } else {
            bad(format!(
                "{} {name}: {len} values, expected {want}",
                self.kind
            ))
        }
    }

    /// Ids into the dictionary; `optional` allows the none id.
    fn ids(&self, name: &str, ids: &[u32], optional: bool) -> Result<(), Malformed> {
        match ids
            .iter()
            .position(|&id| id as usize >= self.dict && !(optional && id == NONE))
        {
            None => Ok(()),
            Some(i) => bad(format!(
                "{} {name}: id {} at {i} is outside the dictionary of {} strings",
                self.kind, ids[i], self.dict
            )),
        }
    }

    fn column(&self, name: &str, ids: &[u32], optional: bool) -> Result<(), Malformed> {
        self.len(name, ids)?;
        self.ids(name, ids, optional)
    }
}

fn part(part: &Columns, dict: usize) -> Result<(), Malformed> {
    let n = part_len(part);
    match part {
        Columns::Sales(c) => {
            let p = Part {
                kind: "sales",
                n,
                dict,
            };
            blobs("sales transaction-id", &c.transaction_id, Some(n), true)?;
            p.len("line", &c.line)?;
            p.column("store-id", &c.store_id, false)?;
            p.column("product-id", &c.product_id, false)?;
            p.column("category", &c.category, true)?;
            p.len("quantity", &c.quantity)?;
            p.len("unit-price", &c.unit_price)?;
            p.len("total-amount", &c.total_amount)?;
            p.column("customer-id", &c.customer_id, true)?;
            p.column("payment-method", &c.payment_method, false)
        }
        Columns::Inventory(c) => {
            let p = Part {
                kind: "inventory",
                n,
                dict,
            };
            blobs("inventory update-id", &c.update_id, Some(n), true)?;
            p.column("store-id", &c.store_id, false)?;
            p.column("product-id", &c.product_id, false)?;
            p.len("quantity-change", &c.quantity_change)?;
            p.len("stock-level", &c.stock_level)?;
            p.len("capacity", &c.capacity)?;
            p.column("reason", &c.reason, false)
        }
        Columns::Prices(c) => {
            let p = Part {
                kind: "prices",
                n,
                dict,
            };
            p.column("store-id", &c.store_id, false)?;
            p.column("product-id", &c.product_id, false)?;
            p.len("old-price", &c.old_price)?;
            p.len("new-price", &c.new_price)
        }
        Columns::Customers(c) => {
            let p = Part {
                kind: "customers",
                n,
                dict,
            };
            p.column("customer-id", &c.customer_id, false)?;
            p.column("store-id", &c.store_id, false)?;
            p.column("event-type", &c.event_type, false)?;
            p.len_is("product-offsets", c.product_offsets.len(), n + 1)?;
            if c.product_offsets[0] != 0 {
                return bad("customers product-offsets: the first is not 0".into());
            }
            if let Some(i) = c.product_offsets.windows(2).position(|w| w[1] < w[0]) {
                return bad(format!("customers product-offsets: decrease at {}", i + 1));
            }
            p.len_is(
                "product-ids",
                c.product_ids.len(),
                c.product_offsets[n] as usize,
            )?;
            p.ids("product-ids", &c.product_ids, false)
        }
        Columns::Metrics(c) => {
            let p = Part {
                kind: "metrics",
                n,
                dict,
            };
            p.ids("metric", &[c.metric], false)?;
            p.ids("dimension-names", &c.dimension_names, false)?;
            p.ids("value-names", &c.value_names, false)?;
            p.len("window-start", &c.window_start)?;
            let (d, v) = (c.dimension_names.len(), c.value_names.len());
            let (dims, values) = (n.checked_mul(d), n.checked_mul(v));
            p.len_is("dimensions", c.dimensions.len(), dims.unwrap_or(usize::MAX))?;
            p.len_is("values", c.values.len(), values.unwrap_or(usize::MAX))?;
            p.ids("dimensions", &c.dimensions, false)
        }
        // Records: the canonical ABI has already checked their strings.
        Columns::Alerts(_) | Columns::Forecasts(_) => Ok(()),
    }
}

/// Check a batch a plugin returned.
pub fn batch(b: &EventBatch) -> Result<(), Malformed> {
    blobs("dictionary", &b.dictionary, None, true)?;
    let dict = b.dictionary.len();
    for (i, p) in b.parts.iter().enumerate() {
        part(p, dict).map_err(|Malformed(why)| Malformed(format!("part {i}: {why}")))?;
    }
    Ok(())
}

/// Check what a cleaner returned for a raw batch of `records` records.
pub fn cleaned(c: &Cleaned, records: usize) -> Result<(), Malformed> {
    batch(&c.events)?;
    let events = c.events.len();
    if c.origins.len() != events {
        return bad(format!("{} origins for {events} events", c.origins.len()));
    }
    if let Some(i) = c.origins.iter().position(|&o| o as usize >= records) {
        return bad(format!(
            "origin {} of event {i} is not one of the {records} records",
            c.origins[i]
        ));
    }
    if let Some(i) = c.origins.windows(2).position(|w| w[1] < w[0]) {
        return bad(format!("origins decrease at event {}", i + 1));
    }
    let mut last = None;
    for r in &c.rejections {
        if r.index as usize >= records {
            return bad(format!("rejected record {} of {records}", r.index));
        }
        if last.is_some_and(|l| r.index <= l) {
            return bad(format!("rejection of record {} is out of order", r.index));
        }
        if c.origins.binary_search(&r.index).is_ok() {
            return bad(format!("record {} is both rejected and cleaned", r.index));
        }
        last = Some(r.index);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_value(b: &Blobs) -> bool {
        (b.offsets.windows(2))
            .all(|w| std::str::from_utf8(&b.bytes[w[0] as usize..w[1] as usize]).is_ok())
    }

    #[test]
    fn the_one_pass_utf8_check_agrees_with_checking_each_value() {
        let text = "S001é€😀x".as_bytes();
        // Every way of cutting the text into three values, and each byte replaced by 0xff.
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let offsets = vec![0, i as u32, j as u32, text.len() as u32];
                let mut b = Blobs {
                    offsets,
                    bytes: text.to_vec(),
                };
                assert_eq!(all_utf8(&b), per_value(&b), "cut at {i} and {j}");
                for k in 0..text.len() {
                    b.bytes = text.to_vec();
                    b.bytes[k] = 0xff;
                    assert_eq!(all_utf8(&b), per_value(&b), "cut at {i}, {j}, 0xff at {k}");
                }
            }
        }
    }
}
