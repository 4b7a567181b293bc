//! Events as JSON objects straight from their columns: the bytes serde_json writes for the
//! event's row ([`crate::plugin::row`]), without making the row (a `String` per text field).
//! The file sink writes every output line this way; a test checks it against serde_json.

use crate::plugin::bindings::{Blobs, Columns};
use crate::plugin::columns::NONE;

/// Event `i` of a run as a JSON object (its row's fields, in their order), appended to `out`.
pub fn event(out: &mut Vec<u8>, dict: &Blobs, part: &Columns, i: usize) {
    let t = |id: u32| dict.text(id as usize);
    let opt = |id: u32| (id != NONE).then(|| t(id));
    let mut o = Object::new(out);
    match part {
        Columns::Sales(c) => {
            o.text("transaction_id", c.transaction_id.text(i));
            o.int("line", c.line[i].into());
            o.text("store_id", t(c.store_id[i]));
            o.text("product_id", t(c.product_id[i]));
            o.opt_text("category", opt(c.category[i]));
            o.int("quantity", c.quantity[i].into());
            o.float("unit_price", c.unit_price[i]);
            o.float("total_amount", c.total_amount[i]);
            o.opt_text("customer_id", opt(c.customer_id[i]));
            o.text("payment_method", t(c.payment_method[i]));
            o.int("timestamp", c.timestamp[i]);
        }
        Columns::Inventory(c) => {
            o.text("update_id", c.update_id.text(i));
            o.text("store_id", t(c.store_id[i]));
            o.text("product_id", t(c.product_id[i]));
            o.int("quantity_change", c.quantity_change[i].into());
            o.int("stock_level", c.stock_level[i].into());
            o.int("capacity", c.capacity[i].into());
            o.text("reason", t(c.reason[i]));
            o.int("timestamp", c.timestamp[i]);
        }
        Columns::Prices(c) => {
            o.text("store_id", t(c.store_id[i]));
            o.text("product_id", t(c.product_id[i]));
            o.float("old_price", c.old_price[i]);
            o.float("new_price", c.new_price[i]);
            o.int("timestamp", c.timestamp[i]);
        }
        Columns::Customers(c) => {
            o.text("customer_id", t(c.customer_id[i]));
            o.text("store_id", t(c.store_id[i]));
            o.text("event_type", t(c.event_type[i]));
            let products = c.product_offsets[i] as usize..c.product_offsets[i + 1] as usize;
            o.key("product_ids");
            o.list(c.product_ids[products].iter(), |out, &id| {
                string(out, t(id))
            });
            o.int("timestamp", c.timestamp[i]);
        }
        Columns::Metrics(c) => {
            let (d, v) = (c.dimension_names.len(), c.value_names.len());
            o.text("metric", t(c.metric));
            o.int("window_start", c.window_start[i]);
            o.int("window_end", c.window_end[i]);
            o.key("dimensions");
            let dimensions = c
                .dimension_names
                .iter()
                .zip(&c.dimensions[i * d..(i + 1) * d]);
            o.list(dimensions, |out, (&name, &id)| {
                out.push(b'[');
                string(out, t(name));
                out.push(b',');
                string(out, t(id));
                out.push(b']');
            });
            o.key("values");
            let values = c.value_names.iter().zip(&c.values[i * v..(i + 1) * v]);
            o.list(values, |out, (&name, &x)| {
                out.push(b'[');
                string(out, t(name));
                out.push(b',');
                float(out, x);
                out.push(b']');
            });
        }
        // Rare (alerts, forecasts): kept as rows in the batch, written by serde_json.
        Columns::Alerts(c) => return serde(out, &c[i]),
        Columns::Forecasts(c) => return serde(out, &c[i]),
    }
    o.out.push(b'}');
}

/// The kind of a run's events, as [`crate::plugin::event_kind`] names it.
pub fn kind(part: &Columns) -> &'static str {
    match part {
        Columns::Sales(_) => "sale",
        Columns::Inventory(_) => "inventory",
        Columns::Prices(_) => "price",
        Columns::Customers(_) => "customer",
        Columns::Metrics(_) => "metric",
        Columns::Alerts(_) => "alert",
        Columns::Forecasts(_) => "forecast",
    }
}

fn serde<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("rows serialise");
}

/// A JSON object being written: `{` before the first key, `,` before the others.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Object { out, first: true }
    }

    fn key(&mut self, key: &str) {
        self.out.push(if self.first { b'{' } else { b',' });
        self.first = false;
        string(self.out, key);
        self.out.push(b':');
    }

    fn text(&mut self, key: &str, value: &str) {
        self.key(key);
        string(self.out, value);
    }

    fn opt_text(&mut self, key: &str, value: Option<&str>) {
        self.key(key);
        match value {
            Some(v) => string(self.out, v),
            None => self.out.extend_from_slice(b"null"),
        }
    }

    fn int(&mut self, key: &str, value: i64) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn float(&mut self, key: &str, value: f64) {
        self.key(key);
        float(self.out, value);
    }

    fn list<T>(&mut self, items: impl Iterator<Item = T>, mut item: impl FnMut(&mut Vec<u8>, T)) {
        self.out.push(b'[');
        for (n, x) in items.enumerate() {
            if n > 0 {
                self.out.push(b',');
            }
            item(self.out, x);
        }
        self.out.push(b']');
    }
}

/// A JSON string: text with nothing to escape is copied as is (most of it), the rest goes
/// through serde_json.
fn string(out: &mut Vec<u8>, s: &str) {
    let plain = s
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20 && b != b'"' && b != b'\\'));
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde(out, s);
    }
}

/// A number as serde_json writes an `f64` (`null` when not finite).
fn float(out: &mut Vec<u8>, x: f64) {
    serde(out, &x);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::rows::{CustomerEvent, InventoryUpdate, MetricRow, PriceChange, Sale};
    use crate::plugin::{Event, EventBatch};
    use proptest::prelude::*;

    /// What serde_json writes for each row of the batch made from `rows`, and what [`event`]
    /// writes from its columns.
    fn both(rows: &[Event]) -> (Vec<String>, Vec<String>) {
        let batch = EventBatch::from_rows(rows);
        let by_serde = (batch.rows().iter())
            .map(|e| {
                let mut out = Vec::new();
                super::super::file::event_fields(&mut out, e);
                format!(
                    "{} {}",
                    crate::plugin::event_kind(e),
                    String::from_utf8(out).unwrap()
                )
            })
            .collect();
        let mut by_columns = Vec::new();
        for part in &batch.parts {
            for i in 0..crate::plugin::columns::part_len(part) {
                let mut out = Vec::new();
                event(&mut out, &batch.dictionary, part, i);
                by_columns.push(format!(
                    "{} {}",
                    kind(part),
                    String::from_utf8(out).unwrap()
                ));
            }
        }
        (by_serde, by_columns)
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z0-9_-]{0,12}",
            any::<String>(),
            "[\"\\\\\u{0}-\u{1f}\u{7f}é€😀 a]{0,8}",
        ]
    }

    fn number() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            (-1e6..1e6f64),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            Just(10.72),
        ]
    }

    fn any_event() -> impl Strategy<Value = Event> {
        let sale = (
            (
                text(),
                any::<u32>(),
                text(),
                text(),
                proptest::option::of(text()),
            ),
            (
                any::<i32>(),
                number(),
                number(),
                proptest::option::of(text()),
            ),
            (text(), any::<i64>()),
        )
            .prop_map(|((tx, line, st, pr, cat), (q, up, ta, cu), (pm, ts))| {
                Event::Sale(Sale {
                    transaction_id: tx,
                    line,
                    store_id: st,
                    product_id: pr,
                    category: cat,
                    quantity: q,
                    unit_price: up,
                    total_amount: ta,
                    customer_id: cu,
                    payment_method: pm,
                    timestamp: ts,
                })
            });
        let inventory = (
            (text(), text(), text()),
            (
                any::<i32>(),
                any::<i32>(),
                any::<i32>(),
                text(),
                any::<i64>(),
            ),
        )
            .prop_map(|((u, s, p), (qc, sl, c, r, ts))| {
                Event::Inventory(InventoryUpdate {
                    update_id: u,
                    store_id: s,
                    product_id: p,
                    quantity_change: qc,
                    stock_level: sl,
                    capacity: c,
                    reason: r,
                    timestamp: ts,
                })
            });
        let price = (text(), text(), number(), number(), any::<i64>()).prop_map(
            |(s, p, old_price, new_price, timestamp)| {
                Event::Price(PriceChange {
                    store_id: s,
                    product_id: p,
                    old_price,
                    new_price,
                    timestamp,
                })
            },
        );
        let customer = (
            text(),
            text(),
            text(),
            proptest::collection::vec(text(), 0..4),
            any::<i64>(),
        )
            .prop_map(|(c, s, e, p, timestamp)| {
                Event::Customer(CustomerEvent {
                    customer_id: c,
                    store_id: s,
                    event_type: e,
                    product_ids: p,
                    timestamp,
                })
            });
        // Rows of one metric share their names (as a plugin's schema does).
        let metric = (
            text(),
            any::<i64>(),
            any::<i64>(),
            proptest::collection::vec(text(), 0..3),
            proptest::collection::vec(number(), 0..3),
        )
            .prop_map(|(v, window_start, window_end, d, x)| {
                Event::Metric(MetricRow {
                    metric: v,
                    window_start,
                    window_end,
                    dimensions: (d.into_iter().enumerate())
                        .map(|(i, v)| (format!("dim{i}"), v))
                        .collect(),
                    values: (x.into_iter().enumerate())
                        .map(|(i, x)| (format!("value{i}"), x))
                        .collect(),
                })
            });
        prop_oneof![sale, inventory, price, customer, metric]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn columns_write_what_serde_json_writes_for_the_rows(
            rows in proptest::collection::vec(any_event(), 1..8)
        ) {
            let (by_serde, by_columns) = both(&rows);
            prop_assert_eq!(by_serde, by_columns);
        }
    }

    #[test]
    fn alerts_and_forecasts_are_written_as_their_rows() {
        let alert = crate::plugin::Alert {
            rule: "low_stock".into(),
            severity: crate::plugin::Severity::Critical,
            store_id: "S\"1".into(),
            product_id: "P".into(),
            message: "m".into(),
            evidence: vec![("stock_level".into(), 3.0), ("mean".into(), f64::NAN)],
            window_start: 0,
            window_end: 60_000,
            timestamp: 9,
        };
        let (by_serde, by_columns) = both(&[Event::Alert(alert)]);
        assert_eq!(by_serde, by_columns);
    }
}
