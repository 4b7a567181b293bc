//! The plugin runtime: the WIT bindings, columnar batches (building, validating, reading as
//! rows), loading and caching components, the plugins folder, and running instances under
//! limits.

pub mod bindings;
pub mod columns;
pub mod engine;
pub mod instance;
pub mod registry;
pub mod rows;
pub mod ticker;
pub mod validate;

pub use bindings::{
    Cleaned, Columns, EventBatch, PluginInfo, PluginKind, RawBatch, State, Timestamp,
};
pub use engine::{LoadError, LoadedPlugin, PluginEngine};
pub use instance::{Limits, PluginError, PluginInstance};
pub use rows::{
    event_kind, event_time, Alert, CustomerEvent, Event, Forecast, InventoryUpdate, MetricRow,
    PriceChange, RawRecord, Sale, Severity,
};
