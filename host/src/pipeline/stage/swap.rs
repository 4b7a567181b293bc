//! Changing a running stage at a batch boundary: a new plugin version (hot swap), new
//! parameters, the plugin file removed; and the state saved at a checkpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Stage, StageCheckpoint, StageSpec, Status, SwapError};
use crate::plugin::{LoadedPlugin, PluginError, PluginInstance, State, Timestamp};

impl Stage {
    /// The current state, for a swap or a shutdown. Falls back to the last checkpoint plus
    /// replay when the stage is not running.
    fn current_state(&mut self) -> Result<State, SwapError> {
        if self.instance.is_none() {
            let _ = self.rebuild();
        }
        let snapshot_err = |error| SwapError::Snapshot {
            plugin: self.plugin.name.clone(),
            error,
        };
        match self.instance.as_mut() {
            Some(instance) => instance.snapshot().map_err(snapshot_err),
            None => Ok(self.checkpoint.clone()),
        }
    }

    /// Replace the plugin with `new`, carrying the state over. On error the running version
    /// stays. Returns how long the stage was paused.
    pub fn swap(&mut self, new: Arc<LoadedPlugin>) -> Result<Duration, SwapError> {
        let started = Instant::now();
        if new.info.kind != self.plugin.info.kind {
            return Err(SwapError::KindMismatch {
                stage: self.spec.name.clone(),
                new: new.name.clone(),
                new_kind: new.info.kind,
                old_kind: self.plugin.info.kind,
            });
        }
        let was = self.status;
        let state = self.current_state()?;
        match build(&self.spec, &new, &state, self.watermark) {
            Ok(instance) => {
                let old = std::mem::replace(&mut self.plugin, new);
                self.previous = Some(old);
                self.instance = Some(instance);
                self.status = Status::Running;
                self.checkpoint = state;
                self.clear_log();
                self.consecutive_failures = 0;
                self.stats.swaps += 1;
                Ok(started.elapsed())
            }
            Err((step, error)) => {
                if was != Status::Running {
                    self.instance = None;
                }
                Err(SwapError::Rejected {
                    plugin: new.name.clone(),
                    version: new.version.clone(),
                    step,
                    error,
                })
            }
        }
    }

    /// Promote a shadow of this stage: it takes over, with its own warm state, plugin and
    /// parameters, under this stage's name and wiring; this stage's plugin is kept as the
    /// previous version (rolled back to on repeated failures). Returns the pause.
    pub fn promote(&mut self, mut candidate: Stage) -> Duration {
        let started = Instant::now();
        candidate.spec = StageSpec {
            name: self.spec.name.clone(),
            inputs: self.spec.inputs.clone(),
            output: self.spec.output.clone(),
            ..candidate.spec
        };
        candidate.previous = Some(self.plugin.clone());
        candidate.stats = std::mem::take(&mut self.stats);
        candidate.stats.swaps += 1;
        *self = candidate;
        started.elapsed()
    }

    /// New parameters for the running plugin: a fresh instance configured with them takes over
    /// the current state at this batch boundary. Rejected parameters leave everything as it was.
    pub fn reconfigure(&mut self, params: Vec<(String, String)>) -> Result<Duration, SwapError> {
        let started = Instant::now();
        if self.status != Status::Running {
            self.spec.params = params; // used when the plugin runs again
            return Ok(started.elapsed());
        }
        let state = self.current_state()?;
        let spec = StageSpec {
            params,
            ..self.spec.clone()
        };
        let instance =
            build(&spec, &self.plugin, &state, self.watermark).map_err(|(step, error)| {
                SwapError::Rejected {
                    plugin: self.plugin.name.clone(),
                    version: self.plugin.version.clone(),
                    step,
                    error,
                }
            })?;
        self.spec = spec;
        self.instance = Some(instance);
        self.checkpoint = state;
        self.clear_log();
        self.consecutive_failures = 0;
        Ok(started.elapsed())
    }

    /// The plugin file was removed: keep the state, stop calling the plugin.
    pub fn unload(&mut self) {
        if let Ok(state) = self.current_state() {
            self.checkpoint = state;
            self.clear_log();
        }
        self.stop(Status::Unloaded);
    }

    /// State to persist at shutdown.
    pub fn save(&mut self) -> Result<StageCheckpoint, SwapError> {
        let state = self.current_state()?;
        Ok(StageCheckpoint {
            plugin_version: self.plugin.version.clone(),
            state_version: state.version,
            state: state.data,
            lanes: self.lanes.clone(),
            watermark: self.watermark,
        })
    }
}

/// The step of [`build`] that fails when a plugin refuses the state it is given.
pub(super) const REFUSED_STATE: &str = "refused the state";

/// A configured instance holding `state`.
pub(super) fn build(
    spec: &StageSpec,
    plugin: &LoadedPlugin,
    state: &State,
    watermark: Timestamp,
) -> Result<PluginInstance, (&'static str, PluginError)> {
    let mut instance = plugin
        .instantiate(&spec.limits)
        .map_err(|e| ("failed to instantiate", e))?;
    instance.set_watermark(watermark);
    instance
        .configure(&spec.params)
        .map_err(|e| ("rejected its parameters", e))?;
    if !state.data.is_empty() {
        instance.restore(state).map_err(|e| (REFUSED_STATE, e))?;
    }
    Ok(instance)
}
