//! The host side of the WIT contract: the one `bindgen!` in the code base.
//!
//! The generated batch types (`EventBatch`, `RawBatch`, `Cleaned`) are what crosses the
//! boundary and what the chain passes between stages; see [`super::columns`] for building,
//! checking and reading them, and [`super::rows`] for the row view sinks use.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "shelfstream-plugin",
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});

pub use self::exports::shelfstream::plugin::plugin::Guest as PluginExports;
pub use self::shelfstream::plugin::host::{Host, LogLevel};
pub use self::shelfstream::plugin::types::{
    Alert, Blobs, Cleaned, Columns, CustomerEvents, EventBatch, Forecast, InventoryUpdates,
    MetricRows, PluginInfo, PluginKind, PriceChanges, RawBatch, Rejection, Sales, Severity, State,
    Timestamp,
};
