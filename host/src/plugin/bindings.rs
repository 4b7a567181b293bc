//! The host side of the WIT contract: the one `bindgen!` in the code base.
//!
//! Generated types (`Event`, `Sale`, `RawRecord`, ...) are used throughout the host as its data
//! model, so they also derive serde for the file sinks, dead letters and `test-plugin`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "shelfstream-plugin",
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});

pub use self::exports::shelfstream::plugin::plugin::Guest as PluginExports;
pub use self::shelfstream::plugin::host::{Host, LogLevel};
pub use self::shelfstream::plugin::types::{
    Alert, Cleaned, CustomerEvent, Event, Forecast, InventoryUpdate, MetricRow, PluginInfo,
    PluginKind, PriceChange, RawRecord, Sale, Severity, State, Timestamp,
};

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
