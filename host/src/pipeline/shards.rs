//! The pipelines a host runs: one per shard.
//!
//! A partitioned source (Kafka) makes each partition number a shard with its own chain of plugin
//! instances, so a shard's state can move to another host of the consumer group (see
//! [`crate::checkpoint`]). Other sources (simulator, NDJSON) feed the one local shard. Every
//! shard runs the same stages: [`Shards`] keeps the current stage specs and plugin versions, so a
//! shard opened after a hot swap or a parameter change starts with what the others run now.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{Pipeline, ShadowSpec, Stage, StageCheckpoint, StageSpec, StartError, SwapOutcome};
use crate::plugin::LoadedPlugin;

/// Which pipeline a batch belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ShardId {
    /// Unpartitioned sources (simulator, NDJSON): state saved in the data directory.
    Local,
    /// A partition number of a partitioned source: state saved as a shard checkpoint.
    Partition(i32),
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardId::Local => f.write_str("local"),
            ShardId::Partition(p) => write!(f, "partition {p}"),
        }
    }
}

/// What opening a shard does when a plugin refuses a stage's saved state (truncated, corrupted,
/// or of a state version the plugin cannot read): `runtime.on_bad_state` in the config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnBadState {
    /// Refuse to open the shard: the error names the stage, the reason and the choices.
    #[default]
    Stop,
    /// Log the refusal and start that stage without state (its open windows are lost).
    StartEmpty,
}

/// Counters of shards that were closed (revoked), so a run's report covers them.
#[derive(Debug, Default, Clone)]
pub struct Retired {
    pub outputs: BTreeMap<String, u64>,
    pub dead_letters: u64,
    pub alerts: u64,
    pub swaps: u64,
    pub failures: u64,
}

pub struct Shards {
    specs: Vec<StageSpec>,
    shadows: Vec<ShadowSpec>,
    /// Promotions since [`Shards::take_promotions`]: (stage, shadow).
    promoted: Vec<(String, String)>,
    plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    unloaded: BTreeSet<String>,
    pipelines: BTreeMap<ShardId, Pipeline>,
    on_bad_state: OnBadState,
    pub retired: Retired,
}

impl Shards {
    /// `specs` in dependency order; `plugins` holds every plugin they name.
    pub fn new(specs: Vec<StageSpec>, plugins: BTreeMap<String, Arc<LoadedPlugin>>) -> Self {
        Shards {
            specs,
            shadows: Vec::new(),
            promoted: Vec::new(),
            plugins,
            unloaded: BTreeSet::new(),
            pipelines: BTreeMap::new(),
            on_bad_state: OnBadState::default(),
            retired: Retired::default(),
        }
    }

    /// What to do when a plugin refuses a stage's saved state (default: stop).
    pub fn with_on_bad_state(mut self, policy: OnBadState) -> Self {
        self.on_bad_state = policy;
        self
    }

    /// Candidates to run beside live stages in every shard.
    pub fn with_shadows(mut self, shadows: Vec<ShadowSpec>) -> Self {
        self.shadows = shadows;
        self
    }

    /// The shadows promoted by config changes since the last call: (stage, shadow).
    pub fn take_promotions(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.promoted)
    }

    /// The configured shadows.
    pub fn shadow_specs(&self) -> &[ShadowSpec] {
        &self.shadows
    }

    /// Start a shadow in a pipeline; a shadow that cannot start is logged and left out (it
    /// never stops the live stages).
    fn start_shadow(
        pipeline: &mut Pipeline,
        shadow: &ShadowSpec,
        plugins: &BTreeMap<String, Arc<LoadedPlugin>>,
        saved: Option<StageCheckpoint>,
    ) {
        let name = &shadow.spec.name;
        let Some(plugin) = plugins.get(&shadow.spec.plugin) else {
            tracing::error!(shadow = %name, plugin = %shadow.spec.plugin, "shadow not started: its plugin is not loaded");
            return;
        };
        let live_kind = (pipeline.stages().iter())
            .find(|s| s.spec().name == shadow.of)
            .map(|s| s.plugin().info.kind);
        if live_kind != Some(plugin.info.kind) {
            tracing::error!(shadow = %name, stage = %shadow.of, "shadow not started: its plugin is not of the live stage's kind");
            return;
        }
        let started = Stage::start(shadow.spec.clone(), plugin.clone(), saved)
            .or_else(|e| {
                tracing::error!(shadow = %name, error = %e, "shadow's saved state refused; it starts empty");
                Stage::start(shadow.spec.clone(), plugin.clone(), None)
            });
        match started {
            Ok(stage) => {
                pipeline.add_shadow(&shadow.of, stage);
            }
            Err(e) => tracing::error!(shadow = %name, error = %e, "shadow not started"),
        }
    }

    /// What to do with saved state that cannot be used.
    pub fn on_bad_state(&self) -> OnBadState {
        self.on_bad_state
    }

    /// Open a shard with its saved stage state (stages without any start fresh).
    pub fn open(
        &mut self,
        shard: ShardId,
        mut saved: BTreeMap<String, StageCheckpoint>,
    ) -> Result<&mut Pipeline, StartError> {
        let mut stages = Vec::with_capacity(self.specs.len());
        for spec in &self.specs {
            let plugin = self.plugins[&spec.plugin].clone();
            let checkpoint = saved.remove(&spec.name);
            if let Some(c) = &checkpoint {
                tracing::info!(%shard, stage = %spec.name, saved_by = %c.plugin_version, running = %plugin.version,
                    watermark = c.watermark, lanes = ?c.lanes, "restoring saved state");
            }
            let mut stage = match Stage::start(spec.clone(), plugin.clone(), checkpoint) {
                Err(e) if e.refused_state() && self.on_bad_state == OnBadState::StartEmpty => {
                    tracing::error!(%shard, stage = %spec.name, error = %e,
                        "saved state refused; the stage starts empty (runtime.on_bad_state = \"start-empty\")");
                    Stage::start(spec.clone(), plugin, None)?
                }
                started => started?,
            };
            if self.unloaded.contains(&spec.plugin) {
                stage.unload();
            }
            stages.push(stage);
        }
        let partition = match shard {
            ShardId::Local => None,
            ShardId::Partition(p) => Some(p),
        };
        let mut pipeline = Pipeline::new(stages).with_partition(partition);
        for shadow in &self.shadows {
            let state = saved.remove(&shadow.spec.name);
            Self::start_shadow(&mut pipeline, shadow, &self.plugins, state);
        }
        self.pipelines.insert(shard, pipeline);
        Ok(self.pipelines.get_mut(&shard).expect("just inserted"))
    }

    /// Close a shard (its partition was revoked); its counters stay in [`Shards::retired`].
    pub fn close(&mut self, shard: ShardId) -> Option<Pipeline> {
        let pipeline = self.pipelines.remove(&shard)?;
        let r = &mut self.retired;
        r.dead_letters += pipeline.dead_letters;
        r.alerts += pipeline.alerts;
        for s in pipeline.stages() {
            *r.outputs.entry(s.spec().output.clone()).or_default() += s.stats.events_out;
            r.swaps += s.stats.swaps;
            r.failures += s.stats.failures;
        }
        Some(pipeline)
    }

    pub fn get_mut(&mut self, shard: ShardId) -> Option<&mut Pipeline> {
        self.pipelines.get_mut(&shard)
    }

    pub fn ids(&self) -> Vec<ShardId> {
        self.pipelines.keys().copied().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ShardId, &Pipeline)> {
        self.pipelines.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&ShardId, &mut Pipeline)> {
        self.pipelines.iter_mut()
    }

    /// Offer a new plugin version to every shard. Shards opened later start with it unless some
    /// shard rejected it.
    pub fn swap(&mut self, plugin: &Arc<LoadedPlugin>) -> Vec<(ShardId, SwapOutcome)> {
        let mut outcomes = Vec::new();
        for (&shard, pipeline) in &mut self.pipelines {
            outcomes.extend(pipeline.swap(plugin).into_iter().map(|o| (shard, o)));
        }
        // Kept even when no stage runs it yet: a shadow or a config change may name it.
        if outcomes.iter().all(|(_, o)| o.result.is_ok()) {
            self.plugins.insert(plugin.name.clone(), plugin.clone());
            self.unloaded.remove(&plugin.name);
        }
        outcomes
    }

    /// New stage parameters for every shard (see [`Pipeline::reconfigure`]). Shards opened later
    /// take the parameters every open shard accepted.
    pub fn reconfigure(
        &mut self,
        specs: &[StageSpec],
        shadows: &[ShadowSpec],
    ) -> (Vec<(ShardId, SwapOutcome)>, Vec<String>) {
        let mut outcomes = self.promote_and_reshadow(specs, shadows);
        let mut restart = Vec::new();
        let template = Pipeline::restart_notes(&self.specs, specs);
        for (&shard, pipeline) in &mut self.pipelines {
            let (o, _) = pipeline.reconfigure(specs);
            outcomes.extend(o.into_iter().map(|o| (shard, o)));
        }
        restart.extend(template);
        for current in &mut self.specs {
            let Some(new) = specs.iter().find(|s| s.name == current.name) else {
                continue;
            };
            let rejected = outcomes
                .iter()
                .any(|(_, o)| o.stage == current.name && o.result.is_err());
            let same_wiring = current.plugin == new.plugin
                && current.inputs == new.inputs
                && current.output == new.output;
            if same_wiring && !rejected {
                current.params = new.params.clone();
            }
        }
        (outcomes, restart)
    }

    /// The config changed shadows: a stage now configured as one of its shadows (its plugin and
    /// parameters) that the config no longer lists takes that shadow over, warm state and all,
    /// in every shard (promotion); shadows no longer listed stop; new ones start empty; a shadow with new
    /// parameters takes them with its state.
    fn promote_and_reshadow(
        &mut self,
        specs: &[StageSpec],
        shadows: &[ShadowSpec],
    ) -> Vec<(ShardId, SwapOutcome)> {
        let mut outcomes = Vec::new();
        let listed = |name: &str| shadows.iter().any(|s| s.spec.name == name);
        for old in std::mem::take(&mut self.shadows) {
            let live = self.specs.iter_mut().find(|s| s.name == old.of);
            let new = specs.iter().find(|s| s.name == old.of);
            match (live, new) {
                (Some(live), Some(new))
                    if !listed(&old.spec.name)
                        && (new.plugin == old.spec.plugin && new.params == old.spec.params)
                        && (live.plugin != old.spec.plugin || live.params != old.spec.params) =>
                {
                    for (&shard, pipeline) in &mut self.pipelines {
                        if let Some(pause) = pipeline.promote(&old.spec.name) {
                            tracing::info!(%shard, stage = %old.of, shadow = %old.spec.name,
                                pause_us = pause.as_micros() as u64, "shadow promoted: it runs the stage now, with its own state");
                        }
                    }
                    self.promoted.push((old.of.clone(), old.spec.name.clone()));
                    live.plugin = old.spec.plugin.clone();
                    live.params = old.spec.params.clone();
                }
                _ if !listed(&old.spec.name) => {
                    for pipeline in self.pipelines.values_mut() {
                        pipeline.remove_shadow(&old.spec.name);
                    }
                    tracing::info!(shadow = %old.spec.name, "shadow stopped");
                }
                _ => self.shadows.push(old),
            }
        }
        for new in shadows {
            match self
                .shadows
                .iter_mut()
                .find(|s| s.spec.name == new.spec.name)
            {
                Some(running) if running.spec.params != new.spec.params => {
                    for (&shard, pipeline) in &mut self.pipelines {
                        let o = pipeline.reconfigure_shadow(&new.spec);
                        outcomes.extend(o.map(|o| (shard, o)));
                    }
                    running.spec.params = new.spec.params.clone();
                }
                Some(_) => {}
                None => {
                    for pipeline in self.pipelines.values_mut() {
                        Self::start_shadow(pipeline, new, &self.plugins, None);
                    }
                    tracing::info!(shadow = %new.spec.name, stage = %new.of, plugin = %new.spec.plugin, "shadow started");
                    self.shadows.push(new.clone());
                }
            }
        }
        outcomes
    }

    /// The plugin's file was removed: its stages stop in every shard, and in shards opened later.
    pub fn unload(&mut self, plugin: &str) -> Vec<String> {
        self.unloaded.insert(plugin.to_string());
        let mut stopped = BTreeSet::new();
        for pipeline in self.pipelines.values_mut() {
            stopped.extend(pipeline.unload(plugin));
        }
        stopped.into_iter().collect()
    }
}
