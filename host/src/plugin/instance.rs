//! One running plugin instance: its own `Store` with a memory cap and a per-call CPU deadline.
//!
//! Every call goes through [`PluginInstance`], which turns wasmtime's traps into a typed
//! [`PluginError`] saying what went wrong (deadline, stack, memory, panic). After any such error
//! the instance is poisoned and must be dropped; re-creating it is the stage's job.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{ResourceLimiter, Store, Trap};

use super::bindings::{
    self, Cleaned, EventBatch, LogLevel, PluginInfo, RawBatch, ShelfstreamPlugin, State, Timestamp,
};
use super::engine::LoadedPlugin;
use super::ticker::{Ticker, EPOCH_TICK};
use super::validate::{self, Malformed};

/// Per-instance resource limits, configurable per plugin in the pipeline config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Linear memory cap in bytes.
    pub memory_bytes: usize,
    /// CPU time one call may take.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            deadline: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginError {
    #[error("exceeded its CPU deadline of {0:?}")]
    Deadline(Duration),
    #[error("overflowed its stack")]
    StackOverflow,
    #[error("hit its memory limit of {0} bytes")]
    MemoryLimit(usize),
    #[error("trapped: {0}")]
    Trap(String),
    /// The plugin answered with an error (bad parameters, incompatible state).
    #[error("{0}")]
    Refused(String),
    /// The plugin returned a batch that breaks the contract (see [`validate`]).
    #[error("returned a {0}")]
    Malformed(#[from] Malformed),
}

impl PluginError {
    /// The kinds of failure, as metric labels.
    pub const KINDS: [&'static str; 6] = [
        "deadline",
        "stack",
        "memory",
        "trap",
        "refused",
        "malformed",
    ];

    /// This failure's index in [`Self::KINDS`].
    pub fn kind(&self) -> usize {
        match self {
            PluginError::Deadline(_) => 0,
            PluginError::StackOverflow => 1,
            PluginError::MemoryLimit(_) => 2,
            PluginError::Trap(_) => 3,
            PluginError::Refused(_) => 4,
            PluginError::Malformed(_) => 5,
        }
    }
}

/// What a plugin's store holds: its identity for logs and the host imports' data.
pub struct StoreData {
    plugin: Arc<str>,
    memory_limit: usize,
    memory_hit: bool,
    watermark: Timestamp,
    last_error_log: Option<String>,
}

impl ResourceLimiter for StoreData {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_hit = true;
            wasmtime::bail!("memory limit of {} bytes reached", self.memory_limit);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl bindings::Host for StoreData {
    fn log(&mut self, level: LogLevel, message: String) {
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(target: "plugin", plugin, message),
            LogLevel::Debug => tracing::debug!(target: "plugin", plugin, message),
            LogLevel::Info => tracing::info!(target: "plugin", plugin, message),
            LogLevel::Warn => tracing::warn!(target: "plugin", plugin, message),
            LogLevel::Error => {
                tracing::error!(target: "plugin", plugin, message);
                self.last_error_log = Some(message);
            }
        }
    }

    fn watermark(&mut self) -> Timestamp {
        self.watermark
    }
}

impl bindings::shelfstream::plugin::types::Host for StoreData {}

pub struct PluginInstance {
    store: Store<StoreData>,
    bindings: ShelfstreamPlugin,
    limits: Limits,
    ticker: Arc<Ticker>,
}

impl PluginInstance {
    pub(super) fn new(plugin: &LoadedPlugin, limits: &Limits) -> Result<Self, PluginError> {
        let data = StoreData {
            plugin: format!("{}@{}", plugin.name, plugin.version).into(),
            memory_limit: limits.memory_bytes,
            memory_hit: false,
            watermark: Timestamp::MIN,
            last_error_log: None,
        };
        let mut store = Store::new(plugin.pre.engine(), data);
        store.limiter(|d| d as &mut dyn ResourceLimiter);
        store.epoch_deadline_trap();
        let busy = plugin.ticker.busy();
        store.set_epoch_deadline(deadline_ticks(limits.deadline));
        let bindings = plugin
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&store, limits, e))?;
        drop(busy);
        Ok(PluginInstance {
            store,
            bindings,
            limits: *limits,
            ticker: plugin.ticker.clone(),
        })
    }

    /// Run one export call under the CPU deadline, classifying any failure.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&ShelfstreamPlugin, &mut Store<StoreData>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let _busy = self.ticker.busy();
        self.store
            .set_epoch_deadline(deadline_ticks(self.limits.deadline));
        self.store.data_mut().last_error_log = None;
        f(&self.bindings, &mut self.store).map_err(|e| classify(&self.store, &self.limits, e))
    }

    pub fn set_watermark(&mut self, watermark: Timestamp) {
        self.store.data_mut().watermark = watermark;
    }

    pub fn info(&mut self) -> Result<PluginInfo, PluginError> {
        self.call(|b, s| b.shelfstream_plugin_plugin().call_info(s))
    }

    pub fn configure(&mut self, params: &[(String, String)]) -> Result<(), PluginError> {
        self.call(|b, s| b.shelfstream_plugin_plugin().call_configure(s, params))?
            .map_err(PluginError::Refused)
    }

    /// Clean a raw batch; what comes back has been validated.
    pub fn clean(&mut self, batch: &RawBatch) -> Result<Cleaned, PluginError> {
        let out = self.call(|b, s| b.shelfstream_plugin_plugin().call_clean(s, batch))?;
        validate::cleaned(&out, batch.offset.len())?;
        Ok(out)
    }

    pub fn process(&mut self, batch: &EventBatch) -> Result<EventBatch, PluginError> {
        let out = self.call(|b, s| b.shelfstream_plugin_plugin().call_process(s, batch))?;
        validate::batch(&out)?;
        Ok(out)
    }

    pub fn on_watermark(&mut self, watermark: Timestamp) -> Result<EventBatch, PluginError> {
        self.set_watermark(watermark);
        let out = self.call(|b, s| {
            b.shelfstream_plugin_plugin()
                .call_on_watermark(s, watermark)
        })?;
        validate::batch(&out)?;
        Ok(out)
    }

    pub fn snapshot(&mut self) -> Result<State, PluginError> {
        self.call(|b, s| b.shelfstream_plugin_plugin().call_snapshot(s))
    }

    pub fn restore(&mut self, state: &State) -> Result<(), PluginError> {
        self.call(|b, s| b.shelfstream_plugin_plugin().call_restore(s, state))?
            .map_err(PluginError::Refused)
    }
}

fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64
}

fn classify(store: &Store<StoreData>, limits: &Limits, e: wasmtime::Error) -> PluginError {
    if store.data().memory_hit {
        return PluginError::MemoryLimit(limits.memory_bytes);
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Deadline(limits.deadline),
        Some(Trap::StackOverflow) => PluginError::StackOverflow,
        Some(trap) => match &store.data().last_error_log {
            Some(msg) => PluginError::Trap(format!("{trap}: {msg}")),
            None => PluginError::Trap(trap.to_string()),
        },
        None => PluginError::Trap(format!("{e:#}")),
    }
}
