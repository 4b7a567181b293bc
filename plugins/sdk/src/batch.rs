//! Reading a batch: zero-copy row views over the columns the host sends.
//!
//! ```
//! # fn f(batch: &shelfstream_sdk::Batch) {
//! for sale in batch.sales() {
//!     let (store, units) = (sale.store_id(), sale.quantity());
//! }
//! # }
//! ```
//!
//! A view borrows the batch: its strings are slices of the batch's dictionary, nothing is
//! copied. Every string column also has an `_id` accessor: the string's id in this batch's
//! dictionary, a cheap grouping key within one batch (ids are not stable across batches).

use crate::bindings::shelfstream::plugin::types::{
    Alert, Blobs, Columns, CustomerEvents, EventBatch, Forecast, InventoryUpdates, MetricRows,
    PriceChanges, RawBatch, Sales,
};
use crate::emit::{CustomerEvent, InventoryUpdate, PriceChange, Sale};
use crate::Timestamp;

/// The id of an absent optional string.
pub const NONE: u32 = u32::MAX;

pub(crate) fn blob(b: &Blobs, i: usize) -> &[u8] {
    &b.bytes[b.offsets[i] as usize..b.offsets[i + 1] as usize]
}

pub(crate) fn text(b: &Blobs, i: usize) -> &str {
    let bytes = blob(b, i);
    debug_assert!(std::str::from_utf8(bytes).is_ok(), "text {i} is not UTF-8");
    // SAFETY: every text a plugin is given is valid UTF-8 where it is cut: the host checks each
    // batch a plugin returns (`validate::all_utf8`: the bytes, and that no value starts inside a
    // character) and builds the rest from Rust strings; natively, batches come from `Emit`,
    // which writes `&str`s. (Checking again here, on every read, cost 4-5% of a stage.)
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// A batch of events as the host passes it to `process`.
pub struct Batch {
    pub(crate) inner: EventBatch,
}

impl Batch {
    /// A batch from the contract's columns (the SDK's own glue and native drivers use this).
    pub fn new(inner: EventBatch) -> Self {
        Batch { inner }
    }

    /// The columns, for code that wants them whole.
    pub fn columns(&self) -> &EventBatch {
        &self.inner
    }

    pub fn into_columns(self) -> EventBatch {
        self.inner
    }

    /// The string with id `id` in this batch's dictionary.
    pub fn string(&self, id: u32) -> &str {
        text(&self.inner.dictionary, id as usize)
    }

    /// How many events the batch holds, of every kind.
    pub fn len(&self) -> usize {
        self.inner.parts.iter().map(part_len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn parts<'a, C: 'a, V: 'a>(
        &'a self,
        pick: fn(&'a Columns) -> Option<&'a C>,
        len: fn(&C) -> usize,
        view: fn(&'a C, &'a Blobs, usize) -> V,
    ) -> impl Iterator<Item = V> + 'a {
        let dict = &self.inner.dictionary;
        (self.inner.parts.iter())
            .filter_map(pick)
            .flat_map(move |c| (0..len(c)).map(move |i| view(c, dict, i)))
    }

    /// The sale lines, in order.
    pub fn sales(&self) -> impl Iterator<Item = SaleView<'_>> {
        self.parts(
            |p| match p {
                Columns::Sales(c) => Some(c),
                _ => None,
            },
            |c| c.timestamp.len(),
            |c, d, i| SaleView { c, d, i },
        )
    }

    pub fn inventory(&self) -> impl Iterator<Item = InventoryView<'_>> {
        self.parts(
            |p| match p {
                Columns::Inventory(c) => Some(c),
                _ => None,
            },
            |c| c.timestamp.len(),
            |c, d, i| InventoryView { c, d, i },
        )
    }

    pub fn prices(&self) -> impl Iterator<Item = PriceView<'_>> {
        self.parts(
            |p| match p {
                Columns::Prices(c) => Some(c),
                _ => None,
            },
            |c| c.timestamp.len(),
            |c, d, i| PriceView { c, d, i },
        )
    }

    pub fn customers(&self) -> impl Iterator<Item = CustomerView<'_>> {
        self.parts(
            |p| match p {
                Columns::Customers(c) => Some(c),
                _ => None,
            },
            |c| c.timestamp.len(),
            |c, d, i| CustomerView { c, d, i },
        )
    }

    /// Metric rows of every family; [`MetricView::metric`] tells them apart.
    pub fn metrics(&self) -> impl Iterator<Item = MetricView<'_>> {
        self.parts(
            |p| match p {
                Columns::Metrics(c) => Some(c),
                _ => None,
            },
            |c| c.window_end.len(),
            |c, d, i| MetricView { c, d, i },
        )
    }

    /// Every event, in stream order, one [`View`] each.
    pub fn events(&self) -> impl Iterator<Item = View<'_>> {
        let d = &self.inner.dictionary;
        (self.inner.parts.iter()).flat_map(move |p| {
            (0..part_len(p)).map(move |i| match p {
                Columns::Sales(c) => View::Sale(SaleView { c, d, i }),
                Columns::Inventory(c) => View::Inventory(InventoryView { c, d, i }),
                Columns::Prices(c) => View::Price(PriceView { c, d, i }),
                Columns::Customers(c) => View::Customer(CustomerView { c, d, i }),
                Columns::Metrics(c) => View::Metric(MetricView { c, d, i }),
                Columns::Alerts(a) => View::Alert(&a[i]),
                Columns::Forecasts(f) => View::Forecast(&f[i]),
            })
        })
    }

    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        (self.inner.parts.iter()).flat_map(|p| match p {
            Columns::Alerts(a) => a.as_slice(),
            _ => &[],
        })
    }

    pub fn forecasts(&self) -> impl Iterator<Item = &Forecast> {
        (self.inner.parts.iter()).flat_map(|p| match p {
            Columns::Forecasts(f) => f.as_slice(),
            _ => &[],
        })
    }
}

/// Any one event of a batch.
#[derive(Clone, Copy)]
pub enum View<'a> {
    Sale(SaleView<'a>),
    Inventory(InventoryView<'a>),
    Price(PriceView<'a>),
    Customer(CustomerView<'a>),
    Metric(MetricView<'a>),
    Alert(&'a Alert),
    Forecast(&'a Forecast),
}

impl View<'_> {
    /// The event time: the `timestamp`, or the window's end for a metric row.
    pub fn time(&self) -> Timestamp {
        match self {
            View::Sale(v) => v.timestamp(),
            View::Inventory(v) => v.timestamp(),
            View::Price(v) => v.timestamp(),
            View::Customer(v) => v.timestamp(),
            View::Metric(v) => v.window_end(),
            View::Alert(a) => a.timestamp,
            View::Forecast(f) => f.timestamp,
        }
    }
}

pub(crate) fn part_len(part: &Columns) -> usize {
    match part {
        Columns::Sales(c) => c.timestamp.len(),
        Columns::Inventory(c) => c.timestamp.len(),
        Columns::Prices(c) => c.timestamp.len(),
        Columns::Customers(c) => c.timestamp.len(),
        Columns::Metrics(c) => c.window_end.len(),
        Columns::Alerts(c) => c.len(),
        Columns::Forecasts(c) => c.len(),
    }
}

/// Accessors of a view: scalars by copy, strings from the dictionary.
macro_rules! accessors {
    ($view:ident { $($kind:tt $name:ident $(, $id:ident)? : $t:ty;)* }) => {
        impl<'a> $view<'a> {
            $(accessors!(@one $kind $name $(, $id)? : $t);)*
        }
    };
    (@one copy $name:ident : $t:ty) => {
        pub fn $name(&self) -> $t {
            self.c.$name[self.i]
        }
    };
    (@one text $name:ident, $id:ident : $t:ty) => {
        pub fn $name(&self) -> &'a str {
            text(self.d, self.c.$name[self.i] as usize)
        }
        /// The string's id in this batch's dictionary.
        pub fn $id(&self) -> u32 {
            self.c.$name[self.i]
        }
    };
    (@one maybe $name:ident, $id:ident : $t:ty) => {
        pub fn $name(&self) -> Option<&'a str> {
            match self.c.$name[self.i] {
                NONE => None,
                id => Some(text(self.d, id as usize)),
            }
        }
        /// The string's id in this batch's dictionary ([`NONE`] when absent).
        pub fn $id(&self) -> u32 {
            self.c.$name[self.i]
        }
    };
    (@one blob $name:ident : $t:ty) => {
        pub fn $name(&self) -> &'a str {
            text(&self.c.$name, self.i)
        }
    };
}

/// One sale line of a batch.
#[derive(Clone, Copy)]
pub struct SaleView<'a> {
    c: &'a Sales,
    d: &'a Blobs,
    i: usize,
}

accessors!(SaleView {
    blob transaction_id: str;
    copy line: u32;
    text store_id, store_id_id: str;
    text product_id, product_id_id: str;
    maybe category, category_id: str;
    copy quantity: i32;
    copy unit_price: f64;
    copy total_amount: f64;
    maybe customer_id, customer_id_id: str;
    text payment_method, payment_method_id: str;
    copy timestamp: Timestamp;
});

impl<'a> SaleView<'a> {
    /// The line as a row (to emit it again, changed or not).
    pub fn row(&self) -> Sale<'a> {
        Sale {
            transaction_id: self.transaction_id(),
            line: self.line(),
            store_id: self.store_id(),
            product_id: self.product_id(),
            category: self.category(),
            quantity: self.quantity(),
            unit_price: self.unit_price(),
            total_amount: self.total_amount(),
            customer_id: self.customer_id(),
            payment_method: self.payment_method(),
            timestamp: self.timestamp(),
        }
    }
}

/// One inventory update of a batch.
#[derive(Clone, Copy)]
pub struct InventoryView<'a> {
    c: &'a InventoryUpdates,
    d: &'a Blobs,
    i: usize,
}

accessors!(InventoryView {
    blob update_id: str;
    text store_id, store_id_id: str;
    text product_id, product_id_id: str;
    copy quantity_change: i32;
    copy stock_level: i32;
    copy capacity: i32;
    text reason, reason_id: str;
    copy timestamp: Timestamp;
});

impl<'a> InventoryView<'a> {
    pub fn row(&self) -> InventoryUpdate<'a> {
        InventoryUpdate {
            update_id: self.update_id(),
            store_id: self.store_id(),
            product_id: self.product_id(),
            quantity_change: self.quantity_change(),
            stock_level: self.stock_level(),
            capacity: self.capacity(),
            reason: self.reason(),
            timestamp: self.timestamp(),
        }
    }
}

/// One price change of a batch.
#[derive(Clone, Copy)]
pub struct PriceView<'a> {
    c: &'a PriceChanges,
    d: &'a Blobs,
    i: usize,
}

accessors!(PriceView {
    text store_id, store_id_id: str;
    text product_id, product_id_id: str;
    copy old_price: f64;
    copy new_price: f64;
    copy timestamp: Timestamp;
});

impl<'a> PriceView<'a> {
    pub fn row(&self) -> PriceChange<'a> {
        PriceChange {
            store_id: self.store_id(),
            product_id: self.product_id(),
            old_price: self.old_price(),
            new_price: self.new_price(),
            timestamp: self.timestamp(),
        }
    }
}

/// One customer event of a batch.
#[derive(Clone, Copy)]
pub struct CustomerView<'a> {
    c: &'a CustomerEvents,
    d: &'a Blobs,
    i: usize,
}

accessors!(CustomerView {
    text customer_id, customer_id_id: str;
    text store_id, store_id_id: str;
    text event_type, event_type_id: str;
    copy timestamp: Timestamp;
});

impl<'a> CustomerView<'a> {
    /// The products the event names, in order.
    pub fn product_ids(&self) -> impl ExactSizeIterator<Item = &'a str> + 'a {
        let (c, d) = (self.c, self.d);
        let range = c.product_offsets[self.i] as usize..c.product_offsets[self.i + 1] as usize;
        c.product_ids[range]
            .iter()
            .map(move |&id| text(d, id as usize))
    }

    /// The event as a row; `products` receives its product ids.
    pub fn row<'p>(&self, products: &'p mut Vec<&'a str>) -> CustomerEvent<'p>
    where
        'a: 'p,
    {
        products.clear();
        products.extend(self.product_ids());
        CustomerEvent {
            customer_id: self.customer_id(),
            store_id: self.store_id(),
            event_type: self.event_type(),
            product_ids: products,
            timestamp: self.timestamp(),
        }
    }
}

/// One metric row of a batch.
#[derive(Clone, Copy)]
pub struct MetricView<'a> {
    c: &'a MetricRows,
    d: &'a Blobs,
    i: usize,
}

impl<'a> MetricView<'a> {
    /// The metric family, e.g. `sales_1m`.
    pub fn metric(&self) -> &'a str {
        text(self.d, self.c.metric as usize)
    }

    pub fn window_start(&self) -> Timestamp {
        self.c.window_start[self.i]
    }

    pub fn window_end(&self) -> Timestamp {
        self.c.window_end[self.i]
    }

    /// `(start, end)` of the window.
    pub fn window(&self) -> (Timestamp, Timestamp) {
        (self.window_start(), self.window_end())
    }

    fn dims(&self) -> &'a [u32] {
        let d = self.c.dimension_names.len();
        &self.c.dimensions[self.i * d..(self.i + 1) * d]
    }

    fn vals(&self) -> &'a [f64] {
        let v = self.c.value_names.len();
        &self.c.values[self.i * v..(self.i + 1) * v]
    }

    /// A dimension by name, e.g. `dimension("store_id")`.
    pub fn dimension(&self, name: &str) -> Option<&'a str> {
        let at = (self.c.dimension_names.iter()).position(|&n| text(self.d, n as usize) == name)?;
        Some(text(self.d, self.dims()[at] as usize))
    }

    /// A value by name, e.g. `value("units_sold")`.
    pub fn value(&self, name: &str) -> Option<f64> {
        let at = (self.c.value_names.iter()).position(|&n| text(self.d, n as usize) == name)?;
        Some(self.vals()[at])
    }

    /// Every dimension as `(name, value)`, in the row's order.
    pub fn dimensions(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let d = self.d;
        (self.c.dimension_names.iter())
            .zip(self.dims())
            .map(move |(&n, &v)| (text(d, n as usize), text(d, v as usize)))
    }

    /// Every value as `(name, value)`, in the row's order.
    pub fn values(&self) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        let d = self.d;
        (self.c.value_names.iter())
            .zip(self.vals())
            .map(move |(&n, &v)| (text(d, n as usize), v))
    }

    /// The store and product of a row keyed by them.
    pub fn store_product(&self) -> Option<(&'a str, &'a str)> {
        Some((self.dimension("store_id")?, self.dimension("product_id")?))
    }
}

/// One raw record of a batch a cleaner receives.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    b: &'a RawBatch,
    i: usize,
}

impl<'a> Record<'a> {
    pub(crate) fn new(b: &'a RawBatch, i: usize) -> Self {
        Record { b, i }
    }

    pub fn payload(&self) -> &'a [u8] {
        blob(&self.b.payloads, self.i)
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        self.b.has_key[self.i].then(|| blob(&self.b.keys, self.i))
    }

    pub fn topic(&self) -> &'a str {
        (self.b.topics)
            .get(self.b.topic[self.i] as usize)
            .map_or("", String::as_str)
    }

    pub fn partition(&self) -> i32 {
        self.b.partition[self.i]
    }

    pub fn offset(&self) -> i64 {
        self.b.offset[self.i]
    }

    /// The source's own timestamp (broker time, file read time); not the event time.
    pub fn timestamp(&self) -> Timestamp {
        self.b.timestamp[self.i]
    }
}

/// A raw batch of payloads read from one topic's partition 0, at offsets 0, 1, ... (tests and
/// benchmarks of cleaners).
pub fn raw_batch<'p>(topic: &str, payloads: impl IntoIterator<Item = &'p [u8]>) -> RawBatch {
    let mut batch = RawBatch {
        topics: vec![topic.to_string()],
        topic: vec![],
        partition: vec![],
        offset: vec![],
        timestamp: vec![],
        keys: Blobs {
            offsets: vec![0],
            bytes: vec![],
        },
        has_key: vec![],
        payloads: Blobs {
            offsets: vec![0],
            bytes: vec![],
        },
    };
    for (i, payload) in payloads.into_iter().enumerate() {
        batch.topic.push(0);
        batch.partition.push(0);
        batch.offset.push(i as i64);
        batch.timestamp.push(0);
        batch.keys.offsets.push(0);
        batch.has_key.push(false);
        batch.payloads.bytes.extend_from_slice(payload);
        (batch.payloads.offsets).push(batch.payloads.bytes.len() as u32);
    }
    batch
}
