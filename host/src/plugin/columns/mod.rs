//! Columnar batches, the shape events have across the plugin boundary and through the chain.
//!
//! A batch is runs ([`Columns`]) of one kind of event each, with one dictionary of strings that
//! the runs' id columns index. This module builds batches from rows (sources of typed events,
//! the harness, tests), reads them back as rows where a sink needs them, and selects, appends
//! and counts without leaving the columnar form. [`super::validate`] checks what a plugin
//! returns before the host touches it.

use std::collections::HashMap;

use super::bindings::{
    Blobs, Columns, CustomerEvents, EventBatch, InventoryUpdates, MetricRows, PriceChanges,
    RawBatch, Sales, Timestamp,
};
use super::rows::{Event, RawRecord};

mod convert;

pub use convert::row;
use convert::{new_part, push_row, same_run};

/// The id of an absent optional string.
pub const NONE: u32 = u32::MAX;

impl Blobs {
    pub fn new() -> Self {
        Blobs {
            offsets: vec![0],
            bytes: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push(&mut self, value: &[u8]) {
        self.bytes.extend_from_slice(value);
        self.offsets.push(self.bytes.len() as u32);
    }

    /// Value `i` (the batch must have been validated).
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Value `i` as text (validated batches hold UTF-8 in text columns).
    pub fn text(&self, i: usize) -> &str {
        std::str::from_utf8(self.get(i)).unwrap_or("\u{fffd}")
    }
}

impl Default for Blobs {
    fn default() -> Self {
        Blobs::new()
    }
}

/// Builds a dictionary: each distinct string once.
#[derive(Default)]
pub(crate) struct Interner {
    ids: HashMap<String, u32>,
    dictionary: Blobs,
}

impl Interner {
    pub(crate) fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.dictionary.len() as u32;
        self.dictionary.push(s.as_bytes());
        self.ids.insert(s.to_string(), id);
        id
    }

    pub(crate) fn opt(&mut self, s: Option<&str>) -> u32 {
        s.map_or(NONE, |s| self.id(s))
    }
}

impl RawBatch {
    /// The columns of a batch of raw records.
    pub fn from_records(records: &[RawRecord]) -> RawBatch {
        let mut batch = RawBatch {
            topics: Vec::new(),
            topic: Vec::with_capacity(records.len()),
            partition: Vec::with_capacity(records.len()),
            offset: Vec::with_capacity(records.len()),
            timestamp: Vec::with_capacity(records.len()),
            keys: Blobs::new(),
            has_key: Vec::with_capacity(records.len()),
            payloads: Blobs::new(),
        };
        let payload_bytes = records.iter().map(|r| r.payload.len()).sum();
        batch.payloads.bytes.reserve(payload_bytes);
        batch.payloads.offsets.reserve(records.len());
        for r in records {
            let topic = match batch.topics.iter().rposition(|t| *t == r.topic) {
                Some(i) => i,
                None => {
                    batch.topics.push(r.topic.clone());
                    batch.topics.len() - 1
                }
            };
            batch.topic.push(topic as u32);
            batch.partition.push(r.partition);
            batch.offset.push(r.offset);
            batch.timestamp.push(r.timestamp);
            batch.keys.push(r.key.as_deref().unwrap_or_default());
            batch.has_key.push(r.key.is_some());
            batch.payloads.push(&r.payload);
        }
        batch
    }
}

/// The number of events in one run.
pub fn part_len(part: &Columns) -> usize {
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

impl EventBatch {
    pub fn empty() -> Self {
        EventBatch {
            dictionary: Blobs::new(),
            parts: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(part_len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(|p| part_len(p) == 0)
    }

    /// Each event's event time, in order (`window_end` for metric rows).
    pub fn times(&self) -> impl Iterator<Item = Timestamp> + '_ {
        self.parts
            .iter()
            .flat_map(|part| -> Box<dyn Iterator<Item = Timestamp> + '_> {
                match part {
                    Columns::Sales(c) => Box::new(c.timestamp.iter().copied()),
                    Columns::Inventory(c) => Box::new(c.timestamp.iter().copied()),
                    Columns::Prices(c) => Box::new(c.timestamp.iter().copied()),
                    Columns::Customers(c) => Box::new(c.timestamp.iter().copied()),
                    Columns::Metrics(c) => Box::new(c.window_end.iter().copied()),
                    Columns::Alerts(c) => Box::new(c.iter().map(|a| a.timestamp)),
                    Columns::Forecasts(c) => Box::new(c.iter().map(|f| f.timestamp)),
                }
            })
    }

    /// How many alerts the batch holds.
    pub fn alerts(&self) -> usize {
        (self.parts.iter())
            .map(|p| match p {
                Columns::Alerts(a) => a.len(),
                _ => 0,
            })
            .sum()
    }

    /// The batch of the events for which `keep` is true (one flag per event, in order).
    pub fn select(&self, keep: &[bool]) -> EventBatch {
        let mut at = 0;
        let parts = (self.parts.iter())
            .map(|part| {
                let n = part_len(part);
                let flags = &keep[at..at + n];
                at += n;
                select_part(part, flags)
            })
            .filter(|p| part_len(p) > 0)
            .collect();
        EventBatch {
            dictionary: self.dictionary.clone(),
            parts,
        }
    }

    /// Append `other`'s events after this batch's (its ids are moved past this dictionary).
    pub fn append(&mut self, other: EventBatch) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            *self = other;
            return;
        }
        let base = self.dictionary.len() as u32;
        let shift = self.dictionary.bytes.len() as u32;
        (self.dictionary.bytes).extend_from_slice(&other.dictionary.bytes);
        (self.dictionary.offsets).extend(other.dictionary.offsets[1..].iter().map(|o| o + shift));
        for mut part in other.parts {
            remap_ids(&mut part, |id| if id == NONE { NONE } else { id + base });
            self.parts.push(part);
        }
    }

    /// A batch of these rows (runs of one kind, or of one metric schema, become one part each).
    pub fn from_rows(rows: &[Event]) -> EventBatch {
        let mut dict = Interner::default();
        let mut parts: Vec<Columns> = Vec::new();
        for row in rows {
            if !parts.last().is_some_and(|p| same_run(p, row, &mut dict)) {
                parts.push(new_part(row, &mut dict));
            }
            push_row(parts.last_mut().expect("just pushed"), row, &mut dict);
        }
        EventBatch {
            dictionary: dict.dictionary,
            parts,
        }
    }

    /// Every event as a row (for sinks, dead letters and tests).
    pub fn rows(&self) -> Vec<Event> {
        let mut rows = Vec::with_capacity(self.len());
        for part in &self.parts {
            rows.extend((0..part_len(part)).map(|i| row(&self.dictionary, part, i)));
        }
        rows
    }
}

fn pick<T: Clone>(column: &[T], keep: &[bool]) -> Vec<T> {
    (column.iter().zip(keep))
        .filter(|(_, k)| **k)
        .map(|(v, _)| v.clone())
        .collect()
}

/// Rows of width `w` (metric dimensions and values).
fn pick_rows<T: Clone>(column: &[T], w: usize, keep: &[bool]) -> Vec<T> {
    if w == 0 {
        return Vec::new();
    }
    (column.chunks(w).zip(keep))
        .filter(|(_, k)| **k)
        .flat_map(|(r, _)| r.iter().cloned())
        .collect()
}

fn pick_blobs(b: &Blobs, keep: &[bool]) -> Blobs {
    let mut out = Blobs::new();
    for (i, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
        out.push(b.get(i));
    }
    out
}

fn select_part(part: &Columns, keep: &[bool]) -> Columns {
    match part {
        Columns::Sales(c) => Columns::Sales(Sales {
            transaction_id: pick_blobs(&c.transaction_id, keep),
            line: pick(&c.line, keep),
            store_id: pick(&c.store_id, keep),
            product_id: pick(&c.product_id, keep),
            category: pick(&c.category, keep),
            quantity: pick(&c.quantity, keep),
            unit_price: pick(&c.unit_price, keep),
            total_amount: pick(&c.total_amount, keep),
            customer_id: pick(&c.customer_id, keep),
            payment_method: pick(&c.payment_method, keep),
            timestamp: pick(&c.timestamp, keep),
        }),
        Columns::Inventory(c) => Columns::Inventory(InventoryUpdates {
            update_id: pick_blobs(&c.update_id, keep),
            store_id: pick(&c.store_id, keep),
            product_id: pick(&c.product_id, keep),
            quantity_change: pick(&c.quantity_change, keep),
            stock_level: pick(&c.stock_level, keep),
            capacity: pick(&c.capacity, keep),
            reason: pick(&c.reason, keep),
            timestamp: pick(&c.timestamp, keep),
        }),
        Columns::Prices(c) => Columns::Prices(PriceChanges {
            store_id: pick(&c.store_id, keep),
            product_id: pick(&c.product_id, keep),
            old_price: pick(&c.old_price, keep),
            new_price: pick(&c.new_price, keep),
            timestamp: pick(&c.timestamp, keep),
        }),
        Columns::Customers(c) => {
            let mut product_offsets = vec![0];
            let mut product_ids = Vec::new();
            for (i, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
                let range = c.product_offsets[i] as usize..c.product_offsets[i + 1] as usize;
                product_ids.extend_from_slice(&c.product_ids[range]);
                product_offsets.push(product_ids.len() as u32);
            }
            Columns::Customers(CustomerEvents {
                customer_id: pick(&c.customer_id, keep),
                store_id: pick(&c.store_id, keep),
                event_type: pick(&c.event_type, keep),
                product_offsets,
                product_ids,
                timestamp: pick(&c.timestamp, keep),
            })
        }
        Columns::Metrics(c) => Columns::Metrics(MetricRows {
            metric: c.metric,
            dimension_names: c.dimension_names.clone(),
            value_names: c.value_names.clone(),
            window_start: pick(&c.window_start, keep),
            window_end: pick(&c.window_end, keep),
            dimensions: pick_rows(&c.dimensions, c.dimension_names.len(), keep),
            values: pick_rows(&c.values, c.value_names.len(), keep),
        }),
        Columns::Alerts(c) => Columns::Alerts(pick(c, keep)),
        Columns::Forecasts(c) => Columns::Forecasts(pick(c, keep)),
    }
}

/// Apply `f` to every dictionary id of a run.
pub fn remap_ids(part: &mut Columns, f: impl Fn(u32) -> u32) {
    let columns: Vec<&mut Vec<u32>> = match part {
        Columns::Sales(c) => vec![
            &mut c.store_id,
            &mut c.product_id,
            &mut c.category,
            &mut c.customer_id,
            &mut c.payment_method,
        ],
        Columns::Inventory(c) => vec![&mut c.store_id, &mut c.product_id, &mut c.reason],
        Columns::Prices(c) => vec![&mut c.store_id, &mut c.product_id],
        Columns::Customers(c) => vec![
            &mut c.customer_id,
            &mut c.store_id,
            &mut c.event_type,
            &mut c.product_ids,
        ],
        Columns::Metrics(c) => {
            c.metric = f(c.metric);
            vec![
                &mut c.dimension_names,
                &mut c.value_names,
                &mut c.dimensions,
            ]
        }
        Columns::Alerts(_) | Columns::Forecasts(_) => vec![],
    };
    for column in columns {
        column.iter_mut().for_each(|id| *id = f(*id));
    }
}
