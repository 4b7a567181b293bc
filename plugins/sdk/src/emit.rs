//! Writing events: [`Emit`] builds the columnar batch a call returns, interning strings into
//! the batch's dictionary as they come. Plugin code passes plain rows with borrowed strings.
//!
//! ```
//! # fn f(out: &mut shelfstream_sdk::Emit, (start, end, store): (i64, i64, &str)) {
//! out.metric("sales_1m", (start, end), &[("store_id", store)], &[("units_sold", 3.0)]);
//! # }
//! ```

use crate::batch::{part_len, Batch, View, NONE};
use crate::bindings::shelfstream::plugin::types::{
    Alert, Blobs, Cleaned, Columns, CustomerEvents, EventBatch, Forecast, InventoryUpdates,
    MetricRows, PriceChanges, Rejection, Sales,
};
use crate::hash::FastMap;
use crate::Timestamp;

/// One line of a sales transaction. Returns and refunds have a negative quantity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sale<'a> {
    pub transaction_id: &'a str,
    pub line: u32,
    pub store_id: &'a str,
    pub product_id: &'a str,
    pub category: Option<&'a str>,
    pub quantity: i32,
    pub unit_price: f64,
    pub total_amount: f64,
    pub customer_id: Option<&'a str>,
    pub payment_method: &'a str,
    pub timestamp: Timestamp,
}

/// A change of the stock of one product in one store, with the level after it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InventoryUpdate<'a> {
    pub update_id: &'a str,
    pub store_id: &'a str,
    pub product_id: &'a str,
    pub quantity_change: i32,
    pub stock_level: i32,
    pub capacity: i32,
    pub reason: &'a str,
    pub timestamp: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriceChange<'a> {
    pub store_id: &'a str,
    pub product_id: &'a str,
    pub old_price: f64,
    pub new_price: f64,
    pub timestamp: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CustomerEvent<'a> {
    pub customer_id: &'a str,
    pub store_id: &'a str,
    pub event_type: &'a str,
    pub product_ids: &'a [&'a str],
    pub timestamp: Timestamp,
}

/// Where an [`Emit`] stood, to undo what one raw record added when it is rejected.
#[derive(Clone, Copy)]
struct Mark {
    parts: usize,
    last: usize,
    events: usize,
}

/// The output of one call, built row by row.
pub struct Emit {
    ids: FastMap<Box<str>, u32>,
    dictionary: Blobs,
    /// The ids of the strings of the last metric row, in order (see [`Emit::metric`]).
    last_row: Vec<u32>,
    parts: Vec<Columns>,
    events: usize,
    origins: Vec<u32>,
    rejections: Vec<Rejection>,
}

impl Default for Emit {
    fn default() -> Self {
        Emit::new()
    }
}

impl Emit {
    pub fn new() -> Self {
        Emit {
            ids: FastMap::default(),
            dictionary: empty_blobs(),
            last_row: Vec::new(),
            parts: Vec::new(),
            events: 0,
            origins: Vec::new(),
            rejections: Vec::new(),
        }
    }

    /// Events emitted so far.
    pub fn len(&self) -> usize {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The id of `s` in the output's dictionary.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.dictionary.offsets.len() as u32 - 1;
        self.dictionary.bytes.extend_from_slice(s.as_bytes());
        (self.dictionary.offsets).push(self.dictionary.bytes.len() as u32);
        self.ids.insert(s.into(), id);
        id
    }

    fn opt(&mut self, s: Option<&str>) -> u32 {
        s.map_or(NONE, |s| self.intern(s))
    }

    /// The last part if it is of the kind `pick` accepts, else a new one from `make`.
    fn part<C>(
        &mut self,
        pick: fn(&mut Columns) -> Option<&mut C>,
        make: impl FnOnce() -> Columns,
    ) -> &mut C {
        self.events += 1;
        let fits = self.parts.last_mut().is_some_and(|p| pick(p).is_some());
        if !fits {
            self.parts.push(make());
        }
        pick(self.parts.last_mut().expect("a part")).expect("of this kind")
    }

    pub fn sale(&mut self, s: &Sale<'_>) {
        let ids = [
            self.intern(s.store_id),
            self.intern(s.product_id),
            self.opt(s.category),
            self.opt(s.customer_id),
            self.intern(s.payment_method),
        ];
        let c = self.part(
            |p| match p {
                Columns::Sales(c) => Some(c),
                _ => None,
            },
            || {
                Columns::Sales(Sales {
                    transaction_id: empty_blobs(),
                    line: vec![],
                    store_id: vec![],
                    product_id: vec![],
                    category: vec![],
                    quantity: vec![],
                    unit_price: vec![],
                    total_amount: vec![],
                    customer_id: vec![],
                    payment_method: vec![],
                    timestamp: vec![],
                })
            },
        );
        push_blob(&mut c.transaction_id, s.transaction_id.as_bytes());
        c.line.push(s.line);
        c.store_id.push(ids[0]);
        c.product_id.push(ids[1]);
        c.category.push(ids[2]);
        c.quantity.push(s.quantity);
        c.unit_price.push(s.unit_price);
        c.total_amount.push(s.total_amount);
        c.customer_id.push(ids[3]);
        c.payment_method.push(ids[4]);
        c.timestamp.push(s.timestamp);
    }

    pub fn inventory(&mut self, u: &InventoryUpdate<'_>) {
        let ids = [
            self.intern(u.store_id),
            self.intern(u.product_id),
            self.intern(u.reason),
        ];
        let c = self.part(
            |p| match p {
                Columns::Inventory(c) => Some(c),
                _ => None,
            },
            || {
                Columns::Inventory(InventoryUpdates {
                    update_id: empty_blobs(),
                    store_id: vec![],
                    product_id: vec![],
                    quantity_change: vec![],
                    stock_level: vec![],
                    capacity: vec![],
                    reason: vec![],
                    timestamp: vec![],
                })
            },
        );
        push_blob(&mut c.update_id, u.update_id.as_bytes());
        c.store_id.push(ids[0]);
        c.product_id.push(ids[1]);
        c.quantity_change.push(u.quantity_change);
        c.stock_level.push(u.stock_level);
        c.capacity.push(u.capacity);
        c.reason.push(ids[2]);
        c.timestamp.push(u.timestamp);
    }

    pub fn price(&mut self, p: &PriceChange<'_>) {
        let ids = [self.intern(p.store_id), self.intern(p.product_id)];
        let c = self.part(
            |p| match p {
                Columns::Prices(c) => Some(c),
                _ => None,
            },
            || {
                Columns::Prices(PriceChanges {
                    store_id: vec![],
                    product_id: vec![],
                    old_price: vec![],
                    new_price: vec![],
                    timestamp: vec![],
                })
            },
        );
        c.store_id.push(ids[0]);
        c.product_id.push(ids[1]);
        c.old_price.push(p.old_price);
        c.new_price.push(p.new_price);
        c.timestamp.push(p.timestamp);
    }

    pub fn customer(&mut self, e: &CustomerEvent<'_>) {
        let ids = [
            self.intern(e.customer_id),
            self.intern(e.store_id),
            self.intern(e.event_type),
        ];
        let products: Vec<u32> = e.product_ids.iter().map(|p| self.intern(p)).collect();
        let c = self.part(
            |p| match p {
                Columns::Customers(c) => Some(c),
                _ => None,
            },
            || {
                Columns::Customers(CustomerEvents {
                    customer_id: vec![],
                    store_id: vec![],
                    event_type: vec![],
                    product_offsets: vec![0],
                    product_ids: vec![],
                    timestamp: vec![],
                })
            },
        );
        c.customer_id.push(ids[0]);
        c.store_id.push(ids[1]);
        c.event_type.push(ids[2]);
        c.product_ids.extend(products);
        c.product_offsets.push(c.product_ids.len() as u32);
        c.timestamp.push(e.timestamp);
    }

    /// A metric row of family `metric` over `(start, end)`: its dimensions and values by name.
    /// Rows with the same family and names in a row share one part (the schema is sent once).
    pub fn metric(
        &mut self,
        metric: &str,
        (window_start, window_end): (Timestamp, Timestamp),
        dimensions: &[(&str, &str)],
        values: &[(&str, f64)],
    ) {
        // Each string at the id it had in the previous row at the same place when it is the
        // same (names nearly always, values often): a comparison instead of a hash lookup.
        // The previous row's ids are overwritten in place where they differ (no allocation).
        let mut ids = std::mem::take(&mut self.last_row);
        let texts = std::iter::once(metric)
            .chain(dimensions.iter().flat_map(|(name, value)| [*name, *value]))
            .chain(values.iter().map(|(name, _)| *name));
        ids.truncate(1 + dimensions.len() * 2 + values.len());
        for (k, text) in texts.enumerate() {
            match ids.get(k) {
                Some(&id)
                    if crate::batch::blob(&self.dictionary, id as usize) == text.as_bytes() => {}
                Some(_) => ids[k] = self.intern(text),
                None => {
                    let id = self.intern(text);
                    ids.push(id);
                }
            }
        }
        let (metric, schema) = (ids[0], &ids[1..]);
        let d = dimensions.len();
        let same = |c: &MetricRows| {
            c.metric == metric
                && c.dimension_names.len() == d
                && c.value_names.len() == values.len()
                && (0..d).all(|k| c.dimension_names[k] == schema[2 * k])
                && c.value_names.iter().eq(&schema[2 * d..])
        };
        if !matches!(self.parts.last(), Some(Columns::Metrics(c)) if same(c)) {
            self.parts.push(Columns::Metrics(MetricRows {
                metric,
                dimension_names: (0..d).map(|k| schema[2 * k]).collect(),
                value_names: schema[2 * d..].to_vec(),
                window_start: vec![],
                window_end: vec![],
                dimensions: vec![],
                values: vec![],
            }));
        }
        self.events += 1;
        let Some(Columns::Metrics(c)) = self.parts.last_mut() else {
            unreachable!("a metrics part was just ensured")
        };
        c.window_start.push(window_start);
        c.window_end.push(window_end);
        c.dimensions.extend((0..d).map(|k| schema[2 * k + 1]));
        c.values.extend(values.iter().map(|(_, v)| *v));
        self.last_row = ids;
    }

    pub fn alert(&mut self, alert: Alert) {
        self.part(
            |p| match p {
                Columns::Alerts(c) => Some(c),
                _ => None,
            },
            || Columns::Alerts(vec![]),
        )
        .push(alert);
    }

    pub fn forecast(&mut self, forecast: Forecast) {
        self.part(
            |p| match p {
                Columns::Forecasts(c) => Some(c),
                _ => None,
            },
            || Columns::Forecasts(vec![]),
        )
        .push(forecast);
    }

    /// Emit one event read from a batch, unchanged.
    pub fn view(&mut self, event: View<'_>) {
        match event {
            View::Sale(v) => self.sale(&v.row()),
            View::Inventory(v) => self.inventory(&v.row()),
            View::Price(v) => self.price(&v.row()),
            View::Customer(v) => self.customer(&v.row(&mut Vec::new())),
            View::Metric(m) => {
                let dims: Vec<(&str, &str)> = m.dimensions().collect();
                let values: Vec<(&str, f64)> = m.values().collect();
                self.metric(m.metric(), m.window(), &dims, &values)
            }
            View::Alert(a) => self.alert(a.clone()),
            View::Forecast(f) => self.forecast(f.clone()),
        }
    }

    /// Emit every event of `batch`, unchanged and in order.
    pub fn pass(&mut self, batch: &Batch) {
        batch.events().for_each(|e| self.view(e));
    }

    fn mark(&self) -> Mark {
        Mark {
            parts: self.parts.len(),
            last: self.parts.last().map_or(0, part_len),
            events: self.events,
        }
    }

    fn undo(&mut self, mark: Mark) {
        self.parts.truncate(mark.parts);
        if let Some(last) = self.parts.last_mut() {
            truncate(last, mark.last);
        }
        self.events = mark.events;
    }

    /// Clean one raw record (`index` in its batch) with `f`: the events it emits are tagged
    /// with the record, or, if it fails, dropped and the record rejected with the reason.
    pub fn record(&mut self, index: u32, f: impl FnOnce(&mut Emit) -> Result<(), String>) {
        let mark = self.mark();
        match f(self) {
            Ok(()) => {
                let n = self.events - mark.events;
                self.origins.extend(std::iter::repeat_n(index, n));
            }
            Err(mut reason) => {
                self.undo(mark);
                shorten(&mut reason);
                self.rejections.push(Rejection { index, reason });
            }
        }
    }

    /// The batch built so far.
    pub fn finish(self) -> EventBatch {
        EventBatch {
            dictionary: self.dictionary,
            parts: self.parts,
        }
    }

    /// What a cleaner returns: the batch, each event's record, the rejections.
    pub fn finish_cleaned(mut self) -> Cleaned {
        let origins = std::mem::take(&mut self.origins);
        let rejections = std::mem::take(&mut self.rejections);
        Cleaned {
            events: self.finish(),
            origins,
            rejections,
        }
    }
}

fn empty_blobs() -> Blobs {
    Blobs {
        offsets: vec![0],
        bytes: Vec::new(),
    }
}

fn push_blob(b: &mut Blobs, value: &[u8]) {
    b.bytes.extend_from_slice(value);
    b.offsets.push(b.bytes.len() as u32);
}

fn truncate_blobs(b: &mut Blobs, n: usize) {
    b.offsets.truncate(n + 1);
    b.bytes.truncate(b.offsets[n] as usize);
}

/// Keep the first `n` events of a part.
fn truncate(part: &mut Columns, n: usize) {
    match part {
        Columns::Sales(c) => {
            truncate_blobs(&mut c.transaction_id, n);
            c.line.truncate(n);
            c.store_id.truncate(n);
            c.product_id.truncate(n);
            c.category.truncate(n);
            c.quantity.truncate(n);
            c.unit_price.truncate(n);
            c.total_amount.truncate(n);
            c.customer_id.truncate(n);
            c.payment_method.truncate(n);
            c.timestamp.truncate(n);
        }
        Columns::Inventory(c) => {
            truncate_blobs(&mut c.update_id, n);
            c.store_id.truncate(n);
            c.product_id.truncate(n);
            c.quantity_change.truncate(n);
            c.stock_level.truncate(n);
            c.capacity.truncate(n);
            c.reason.truncate(n);
            c.timestamp.truncate(n);
        }
        Columns::Prices(c) => {
            c.store_id.truncate(n);
            c.product_id.truncate(n);
            c.old_price.truncate(n);
            c.new_price.truncate(n);
            c.timestamp.truncate(n);
        }
        Columns::Customers(c) => {
            c.product_offsets.truncate(n + 1);
            c.product_ids.truncate(c.product_offsets[n] as usize);
            c.customer_id.truncate(n);
            c.store_id.truncate(n);
            c.event_type.truncate(n);
            c.timestamp.truncate(n);
        }
        Columns::Metrics(c) => {
            c.dimensions.truncate(n * c.dimension_names.len());
            c.values.truncate(n * c.value_names.len());
            c.window_start.truncate(n);
            c.window_end.truncate(n);
        }
        Columns::Alerts(c) => c.truncate(n),
        Columns::Forecasts(c) => c.truncate(n),
    }
}

/// The longest rejection reason kept, in bytes: a reason that quotes a hostile value (a 1 MB
/// string) is cut, so a dead letter holds the message once, not twice.
pub const MAX_REASON: usize = 512;

fn shorten(reason: &mut String) {
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let cut = reason.len() - end;
        reason.truncate(end);
        reason.push_str(&format!("... ({cut} more bytes)"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_rows_read_back_as_written_when_strings_repeat_and_change() {
        type Row = (
            &'static str,
            Vec<(&'static str, &'static str)>,
            Vec<(&'static str, f64)>,
        );
        let rows: Vec<Row> = vec![
            ("m", vec![("store", "S1")], vec![("units", 1.0)]),
            ("m", vec![("store", "S1")], vec![("units", 2.0)]),
            ("m", vec![("store", "S2")], vec![("units", 3.0)]),
            (
                "m",
                vec![("store", "S2"), ("sku", "P")],
                vec![("units", 4.0)],
            ),
            (
                "n",
                vec![("store", "S2")],
                vec![("revenue", 5.0), ("units", 6.0)],
            ),
            (
                "n",
                vec![("S2", "store")],
                vec![("units", 7.0), ("revenue", 8.0)],
            ),
            ("m", vec![], vec![]),
            ("m", vec![("store", "S1")], vec![("units", 9.0)]),
        ];
        let mut out = Emit::new();
        for (i, (metric, dims, values)) in rows.iter().enumerate() {
            out.metric(metric, (i as i64, i as i64 + 1), dims, values);
        }
        let batch = Batch::new(out.finish());
        let back: Vec<_> = batch.metrics().collect();
        assert_eq!(back.len(), rows.len());
        for (m, (metric, dims, values)) in back.iter().zip(&rows) {
            assert_eq!(m.metric(), *metric);
            assert_eq!(m.dimensions().collect::<Vec<_>>(), *dims);
            assert_eq!(m.values().collect::<Vec<_>>(), *values);
        }
        let dictionary = &batch.columns().dictionary;
        assert_eq!(dictionary.offsets.len() - 1, 9, "each string once");
    }

    #[test]
    fn sales_read_back_as_written_when_texts_repeat_change_and_go_missing() {
        let sale = |store, product, category, customer, payment| Sale {
            transaction_id: "T",
            line: 0,
            store_id: store,
            product_id: product,
            category,
            quantity: 1,
            unit_price: 1.0,
            total_amount: 1.0,
            customer_id: customer,
            payment_method: payment,
            timestamp: 0,
        };
        let sales = [
            sale("S1", "P1", Some("food"), Some("C1"), "card"),
            sale("S1", "P2", Some("food"), Some("C1"), "card"),
            sale("S1", "P2", None, None, "card"),
            sale("S2", "P2", Some("S1"), Some("food"), "cash"),
            sale("S2", "P1", None, Some("food"), "cash"),
            sale("S1", "P1", Some("food"), Some("C1"), "card"),
        ];
        let mut out = Emit::new();
        for (i, s) in sales.iter().enumerate() {
            out.record(i as u32, |out| {
                out.sale(s);
                // A rejected record's sale is dropped; the texts it added stay harmlessly.
                (i != 2).then_some(()).ok_or("rejected".into())
            });
        }
        let batch = Batch::new(out.finish());
        let back: Vec<Sale> = batch.sales().map(|s| s.row()).collect();
        let kept: Vec<Sale> = (sales.iter().enumerate())
            .filter(|(i, _)| *i != 2)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(back, kept);
    }
}
