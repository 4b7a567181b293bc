//! The host's row view of events: what sinks, dead letters, the harness and tests read.
//!
//! Batches cross the plugin boundary and travel the chain as columns ([`super::columns`]); rows
//! are materialised only where something needs one event at a time (a ClickHouse insert, an
//! NDJSON line, a Kafka alert, a dead letter). Field names match the contract's, so the JSON of
//! a row is the same as it was when the contract carried rows.

use serde::{Deserialize, Serialize};

pub use super::bindings::{Alert, Forecast, Severity, Timestamp};

/// A message as it arrived from a source, before any parsing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// The source's own timestamp (broker time, file read time); not the event time.
    pub timestamp: Timestamp,
    /// The message's headers (Kafka), kept for dead letters; plugins do not see them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, Vec<u8>)>,
}

/// One line of a sales transaction. Returns and refunds have a negative quantity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sale {
    pub transaction_id: String,
    pub line: u32,
    pub store_id: String,
    pub product_id: String,
    pub category: Option<String>,
    pub quantity: i32,
    pub unit_price: f64,
    pub total_amount: f64,
    pub customer_id: Option<String>,
    pub payment_method: String,
    pub timestamp: Timestamp,
}

/// A change of the stock of one product in one store, with the level after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryUpdate {
    pub update_id: String,
    pub store_id: String,
    pub product_id: String,
    pub quantity_change: i32,
    pub stock_level: i32,
    pub capacity: i32,
    pub reason: String,
    pub timestamp: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceChange {
    pub store_id: String,
    pub product_id: String,
    pub old_price: f64,
    pub new_price: f64,
    pub timestamp: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerEvent {
    pub customer_id: String,
    pub store_id: String,
    pub event_type: String,
    pub product_ids: Vec<String>,
    pub timestamp: Timestamp,
}

/// An aggregate over one window for one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    pub metric: String,
    pub window_start: Timestamp,
    pub window_end: Timestamp,
    pub dimensions: Vec<(String, String)>,
    pub values: Vec<(String, f64)>,
}

/// One event of any kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Sale(Sale),
    Inventory(InventoryUpdate),
    Price(PriceChange),
    Customer(CustomerEvent),
    Metric(MetricRow),
    Alert(Alert),
    Forecast(Forecast),
}

/// The event time of an event: its `timestamp`, or `window_end` for a metric row.
pub fn event_time(event: &Event) -> Timestamp {
    match event {
        Event::Sale(e) => e.timestamp,
        Event::Inventory(e) => e.timestamp,
        Event::Price(e) => e.timestamp,
        Event::Customer(e) => e.timestamp,
        Event::Metric(e) => e.window_end,
        Event::Alert(e) => e.timestamp,
        Event::Forecast(e) => e.timestamp,
    }
}

/// The variant name of an event, for summaries and sinks.
pub fn event_kind(event: &Event) -> &'static str {
    match event {
        Event::Sale(_) => "sale",
        Event::Inventory(_) => "inventory",
        Event::Price(_) => "price",
        Event::Customer(_) => "customer",
        Event::Metric(_) => "metric",
        Event::Alert(_) => "alert",
        Event::Forecast(_) => "forecast",
    }
}
