//! The plugin runtime: the WIT bindings, loading and caching components, the plugins folder,
//! and running instances under limits.

pub mod bindings;
pub mod engine;
pub mod instance;
pub mod registry;

pub use bindings::{
    event_kind, event_time, Event, PluginInfo, PluginKind, RawRecord, State, Timestamp,
};
pub use engine::{LoadError, LoadedPlugin, PluginEngine};
pub use instance::{Limits, PluginError, PluginInstance};
