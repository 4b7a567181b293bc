//! Glue between the generated exports and a [`Plugin`]: the one instance per component, and a
//! native driver with the same semantics for tests and benchmarks. Not part of the public API.

use std::cell::Cell;

use crate::batch::Record;
use crate::{
    Batch, Cleaned, Emit, EventBatch, Params, Plugin, PluginInfo, RawBatch, State, Timestamp,
};

/// Run a cleaner over a raw batch: each record's events tagged with it, failures rejected.
pub fn clean<P: Plugin>(plugin: &mut P, batch: &RawBatch) -> Cleaned {
    let mut out = Emit::new();
    for i in 0..batch.offset.len() {
        out.record(i as u32, |out| plugin.clean(Record::new(batch, i), out));
    }
    out.finish_cleaned()
}

/// Run `process` over a batch.
pub fn process<P: Plugin>(plugin: &mut P, batch: EventBatch) -> EventBatch {
    let batch = Batch::new(batch);
    let mut out = Emit::new();
    plugin.process(&batch, &mut out);
    out.finish()
}

/// Run `on_watermark`.
pub fn on_watermark<P: Plugin>(plugin: &mut P, watermark: Timestamp) -> EventBatch {
    set_native_watermark(watermark);
    let mut out = Emit::new();
    plugin.on_watermark(watermark, &mut out);
    out.finish()
}

/// The plugin instance of a component, created by `configure`.
pub struct Slot<P>(Option<P>);

impl<P: Plugin> Slot<P> {
    pub const fn empty() -> Self {
        Slot(None)
    }

    pub fn configure(&mut self, params: Vec<(String, String)>) -> Result<(), String> {
        // A panic aborts the instance; log its message first so the host can say why.
        std::panic::set_hook(Box::new(|info| {
            crate::log::error(&format!("panic: {info}"))
        }));
        self.0 = Some(new_plugin::<P>(params)?);
        Ok(())
    }

    /// The instance. The host always configures first, so a missing instance is a host bug and
    /// trapping is the right answer.
    pub fn get(&mut self) -> &mut P {
        match self.0.as_mut() {
            Some(p) => p,
            None => panic!("{} called before configure", P::NAME),
        }
    }

    pub fn snapshot(&mut self) -> State {
        State {
            version: P::STATE_VERSION,
            data: self.get().snapshot(),
        }
    }

    pub fn restore(&mut self, state: State) -> Result<(), String> {
        self.get().restore(state.version, &state.data)
    }
}

/// Build a plugin from its parameters, rejecting parameters it did not read.
pub fn new_plugin<P: Plugin>(params: Vec<(String, String)>) -> Result<P, String> {
    let mut params = Params::new(params);
    let plugin = P::new(&mut params)?;
    params.finish()?;
    Ok(plugin)
}

pub fn info<P: Plugin>() -> PluginInfo {
    PluginInfo {
        name: P::NAME.to_string(),
        kind: P::KIND,
        description: P::DESCRIPTION.to_string(),
        state_version: P::STATE_VERSION,
    }
}

thread_local! {
    static NATIVE_WATERMARK: Cell<Timestamp> = const { Cell::new(Timestamp::MIN) };
}

pub fn native_watermark() -> Timestamp {
    NATIVE_WATERMARK.with(Cell::get)
}

/// Set what [`crate::current_watermark`] returns in a native build.
pub fn set_native_watermark(watermark: Timestamp) {
    NATIVE_WATERMARK.with(|w| w.set(watermark));
}
