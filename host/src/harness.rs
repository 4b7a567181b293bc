//! Unit-testing a plugin in isolation: load a built component, configure it, feed batches, move
//! event time, and look at what it emitted, what it dead-lettered and the state it exports.
//!
//! The harness runs the plugin in a real [`Stage`], so tests see exactly the production
//! semantics: watermark and lateness, isolation, replay after a failure, hot swap.
//!
//! ```no_run
//! use shelfstream::harness::PluginHarness;
//! let mut h = PluginHarness::builder("plugins/revenue-aggregator.wasm")
//!     .param("window", "1m")
//!     .allowed_lateness_ms(0)
//!     .start()
//!     .unwrap();
//! let out = h.advance_watermark(60_000);
//! assert!(out.is_empty());
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::pipeline::{
    Batch, DeadLetter, Stage, StageCheckpoint, StageSpec, StartError, SwapError,
};
use crate::plugin::{Event, Limits, LoadError, LoadedPlugin, PluginEngine, RawRecord, Timestamp};

/// One engine for all harnesses in a process: components compile once per test binary.
pub fn shared_engine() -> &'static PluginEngine {
    static ENGINE: OnceLock<PluginEngine> = OnceLock::new();
    ENGINE.get_or_init(|| PluginEngine::new(None).expect("creating the wasmtime engine"))
}

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Start(#[from] StartError),
}

pub struct HarnessBuilder {
    path: PathBuf,
    spec: StageSpec,
}

impl HarnessBuilder {
    pub fn param(mut self, key: &str, value: &str) -> Self {
        self.spec.params.push((key.to_string(), value.to_string()));
        self
    }

    pub fn allowed_lateness_ms(mut self, ms: i64) -> Self {
        self.spec.allowed_lateness_ms = ms;
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.spec.limits = limits;
        self
    }

    pub fn max_failures(mut self, n: u32) -> Self {
        self.spec.max_failures = n;
        self
    }

    pub fn checkpoint_every(mut self, n: usize) -> Self {
        self.spec.checkpoint_every = n.max(1);
        self
    }

    pub fn start(self) -> Result<PluginHarness, HarnessError> {
        let plugin = shared_engine().load(&self.path)?;
        PluginHarness::with_plugin(self.spec, plugin, None)
    }

    /// Start with state saved by an earlier harness or run.
    pub fn restore(self, saved: StageCheckpoint) -> Result<PluginHarness, HarnessError> {
        let plugin = shared_engine().load(&self.path)?;
        PluginHarness::with_plugin(self.spec, plugin, Some(saved))
    }
}

pub struct PluginHarness {
    stage: Stage,
    dead: Vec<DeadLetter>,
}

impl PluginHarness {
    pub fn builder(path: impl AsRef<Path>) -> HarnessBuilder {
        let path = path.as_ref().to_path_buf();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        HarnessBuilder {
            path,
            spec: StageSpec {
                name: format!("test-{name}"),
                plugin: name,
                inputs: vec!["in".into()],
                output: "out".into(),
                params: Vec::new(),
                limits: Limits {
                    memory_bytes: 64 << 20,
                    deadline: Duration::from_secs(2),
                },
                allowed_lateness_ms: 0,
                checkpoint_every: 65_536,
                max_failures: 3,
            },
        }
    }

    pub fn with_plugin(
        spec: StageSpec,
        plugin: Arc<LoadedPlugin>,
        saved: Option<StageCheckpoint>,
    ) -> Result<Self, HarnessError> {
        Ok(PluginHarness {
            stage: Stage::start(spec, plugin, saved)?,
            dead: Vec::new(),
        })
    }

    /// Feed raw payloads (as a cleaner's topic would) and return the events it emitted.
    pub fn clean_payloads<S: AsRef<[u8]>>(&mut self, topic: &str, payloads: &[S]) -> Vec<Event> {
        let records = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| RawRecord {
                topic: topic.to_string(),
                partition: 0,
                offset: i as i64,
                key: None,
                payload: p.as_ref().to_vec(),
                timestamp: 0,
                headers: Vec::new(),
            })
            .collect();
        self.clean(records)
    }

    pub fn clean(&mut self, records: Vec<RawRecord>) -> Vec<Event> {
        self.stage
            .process(Batch::Raw(records), &mut self.dead)
            .rows()
    }

    /// Feed typed events; returns what the plugin emitted, including windows that the batch's
    /// event times closed.
    pub fn process(&mut self, events: Vec<Event>) -> Vec<Event> {
        self.stage
            .process(Batch::events(events), &mut self.dead)
            .rows()
    }

    /// Move the watermark to `to` (if it is ahead) and return what that closes.
    pub fn advance_watermark(&mut self, to: Timestamp) -> Vec<Event> {
        self.stage.advance_to(to, &mut self.dead).rows()
    }

    /// Close everything (end of input).
    pub fn flush(&mut self) -> Vec<Event> {
        self.stage.flush(&mut self.dead).rows()
    }

    pub fn dead_letters(&self) -> &[DeadLetter] {
        &self.dead
    }

    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead)
    }

    /// The plugin's exported state (as persisted at shutdown).
    pub fn snapshot(&mut self) -> Result<StageCheckpoint, SwapError> {
        self.stage.save()
    }

    /// Hot-swap to another component file, carrying the state over.
    pub fn swap_to(&mut self, path: impl AsRef<Path>) -> Result<Duration, HarnessSwapError> {
        let plugin = shared_engine().load(path.as_ref())?;
        Ok(self.stage.swap(plugin)?)
    }

    pub fn stage(&self) -> &Stage {
        &self.stage
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HarnessSwapError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Swap(#[from] SwapError),
}
