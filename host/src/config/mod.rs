//! The pipeline config (`pipeline.toml`): sources, stages wired by named streams, limits.
//!
//! Strict: an unknown key anywhere is an error naming the key. `host/pipeline.toml` is the
//! documented example and the embedded default used when no `--config` is given.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::pipeline::{ShadowSpec, StageSpec};
use crate::plugin::Limits;
use crate::sources::SourceConfig;
use crate::units::{parse_duration, parse_size};

/// The default pipeline: simulator -> cleaners -> aggregator/alert rule -> forecaster.
pub const DEFAULT_PIPELINE: &str = include_str!("../../pipeline.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid pipeline config: {0}")]
    Parse(String),
    #[error("invalid pipeline config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Limits and lateness for every stage that does not set its own.
    #[serde(default)]
    pub plugin_defaults: StageLimits,
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    #[serde(default, rename = "stage")]
    pub stages: Vec<StageConfig>,
    /// Candidates running beside live stages (see [`crate::pipeline::shadow`]).
    #[serde(default, rename = "shadow")]
    pub shadows: Vec<ShadowConfig>,
    /// Also write outputs and dead letters to ClickHouse (see `sql/schema.sql`).
    pub clickhouse: Option<crate::sinks::clickhouse::ClickHouseConfig>,
    /// Also produce alerts and dead letters to Kafka topics.
    pub kafka_sink: Option<crate::sinks::kafka::KafkaSinkConfig>,
    /// Where raw batches from Kafka are kept (default: a local folder `<data_dir>/raw`).
    pub raw_store: Option<crate::archive::RawStoreConfig>,
    /// Metrics, health and the live page (default: `127.0.0.1:9464`).
    #[serde(default)]
    pub http: crate::observe::HttpConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Outputs (`out/`), plugin state (`state/`) and the compiled-plugin cache (`cache/`).
    pub data_dir: PathBuf,
    /// Most records a source puts in one batch.
    pub batch_size: usize,
    /// A stage snapshots its plugin's state once this many events (plus one per call) have been
    /// processed since the last snapshot: bounds the replay after a plugin failure.
    pub checkpoint_every: usize,
    /// Consecutive failed calls before a plugin is quarantined.
    pub max_failures: u32,
    /// Close all open windows when every source has ended (batch jobs on files). When false,
    /// open windows are kept in the saved state and continue on the next run.
    pub close_windows_at_end: bool,
    /// Write every stream to `<data_dir>/out/<stream>.ndjson`. With ClickHouse configured these
    /// are copies; turn them off to save the serialisation and the disk.
    pub file_outputs: bool,
    /// When a plugin refuses a stage's saved state: `stop` (default) or `start-empty`.
    pub on_bad_state: crate::pipeline::OnBadState,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            data_dir: PathBuf::from("data"),
            batch_size: 1024,
            checkpoint_every: 65_536,
            max_failures: 3,
            close_windows_at_end: false,
            on_bad_state: crate::pipeline::OnBadState::default(),
            file_outputs: true,
        }
    }
}

/// A candidate plugin running beside a live stage on the same input, with its own instance and
/// state; its outputs go only to the shadow outputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    /// The live stage it runs beside.
    pub stage: String,
    /// The candidate's component file stem in the plugins folder.
    pub plugin: String,
    /// Default: `<stage>@<plugin>`.
    pub name: Option<String>,
    /// Default: the live stage's parameters.
    pub params: Option<BTreeMap<String, toml::Value>>,
}

impl ShadowConfig {
    pub fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}@{}", self.stage, self.plugin))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageLimits {
    /// Linear memory cap per plugin instance, e.g. `"64MiB"`.
    pub memory_limit: Option<String>,
    /// CPU time per call, e.g. `"500ms"`.
    pub deadline: Option<String>,
    /// How far behind the newest event an event may be and still count, e.g. `"30s"`.
    pub allowed_lateness: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    pub name: String,
    /// The plugin's component file stem in the plugins folder.
    pub plugin: String,
    /// A source topic (for cleaners) or another stage's output stream; or a list of them
    /// (`input = ["sales", "inventory"]`): the stage's watermark follows the slowest of all.
    #[serde(deserialize_with = "one_or_many")]
    pub input: Vec<String>,
    pub output: String,
    /// Plugin parameters; the plugin rejects unknown or invalid ones with a message.
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    /// Overrides `plugin_defaults.memory_limit` for this stage.
    pub memory_limit: Option<String>,
    /// Overrides `plugin_defaults.deadline` for this stage.
    pub deadline: Option<String>,
    /// Overrides `plugin_defaults.allowed_lateness` for this stage.
    pub allowed_lateness: Option<String>,
}

impl PipelineConfig {
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            None => Self::parse(DEFAULT_PIPELINE),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::parse(&text)
            }
        }
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: PipelineConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.stage_specs()?;
        Ok(config)
    }

    /// The topics the sources produce.
    pub fn source_topics(&self) -> HashSet<String> {
        self.sources.iter().flat_map(|s| s.topics()).collect()
    }

    /// Keep only `chosen` stages and the stages that feed them, directly or not.
    pub fn keep_stages_feeding(&mut self, chosen: &[String]) -> Result<(), ConfigError> {
        let mut needed: HashSet<String> = HashSet::new();
        let mut todo: Vec<String> = chosen.to_vec();
        while let Some(name) = todo.pop() {
            let stage = (self.stages.iter().find(|s| s.name == name)).ok_or_else(|| {
                ConfigError::Invalid(format!("the pipeline has no stage {name:?}"))
            })?;
            if !needed.insert(name) {
                continue;
            }
            for input in &stage.input {
                todo.extend(
                    (self.stages.iter())
                        .filter(|s| &s.output == input)
                        .map(|s| s.name.clone()),
                );
            }
        }
        self.stages.retain(|s| needed.contains(&s.name));
        Ok(())
    }

    /// Set one parameter of a stage; `value` is read as a TOML value (`7`, `0.5`, `true`,
    /// `"text"`), or taken as text when it is not one.
    pub fn set_param(&mut self, stage: &str, key: &str, value: &str) -> Result<(), ConfigError> {
        let s = (self.stages.iter_mut().find(|s| s.name == stage))
            .ok_or_else(|| ConfigError::Invalid(format!("the pipeline has no stage {stage:?}")))?;
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        s.params.insert(key.to_string(), parsed);
        Ok(())
    }

    /// Drop the stages that nothing feeds (an input topic has no source, directly or through
    /// other stages). Used when the command line replaces the sources, e.g. `--input` of one
    /// topic. Returns the names of the dropped stages.
    pub fn prune_unfed_stages(&mut self) -> Vec<String> {
        let mut fed: HashSet<String> = self.source_topics();
        loop {
            let before = fed.len();
            for s in &self.stages {
                if s.input.iter().all(|i| fed.contains(i)) {
                    fed.insert(s.output.clone());
                }
            }
            if fed.len() == before {
                break;
            }
        }
        let (keep, drop): (Vec<_>, Vec<_>) = self
            .stages
            .drain(..)
            .partition(|s| s.input.iter().all(|i| fed.contains(i)));
        self.stages = keep;
        drop.into_iter().map(|s| s.name).collect()
    }

    /// Validated stage specs in dependency order (producers before consumers).
    pub fn stage_specs(&self) -> Result<Vec<StageSpec>, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        let mut names = HashSet::new();
        let mut outputs = HashSet::new();
        let topics = self.source_topics();
        let mut source_names = HashSet::new();
        for s in &self.sources {
            if !source_names.insert(s.name()) {
                return Err(invalid(format!("two sources are named {:?}", s.name())));
            }
        }
        let kafka = self
            .sources
            .iter()
            .filter(|s| matches!(s, SourceConfig::Kafka(_)))
            .count();
        if kafka > 1 {
            return Err(invalid(
                "more than one Kafka source: list every topic in one source (its partitions are the pipeline's shards)".into(),
            ));
        }
        for s in &self.stages {
            if !names.insert(&s.name) {
                return Err(invalid(format!("two stages are named {:?}", s.name)));
            }
            if !outputs.insert(&s.output) || topics.contains(&s.output) {
                return Err(invalid(format!(
                    "stream {:?} (output of stage {:?}) has another producer",
                    s.output, s.name
                )));
            }
        }
        // Order: repeatedly take stages whose input is available.
        let mut available: HashSet<String> = topics.clone();
        let mut pending: Vec<&StageConfig> = self.stages.iter().collect();
        let mut ordered = Vec::new();
        while !pending.is_empty() {
            let (ready, rest): (Vec<_>, Vec<_>) = pending
                .into_iter()
                .partition(|s| s.input.iter().all(|i| available.contains(i)));
            if ready.is_empty() {
                let s = rest[0];
                let missing =
                    (s.input.iter().find(|i| !available.contains(*i))).unwrap_or(&s.input[0]);
                if rest.iter().any(|p| p.output == *missing) {
                    let stuck: Vec<&str> = rest.iter().map(|p| p.name.as_str()).collect();
                    return Err(invalid(format!(
                        "stages {stuck:?} wait on each other's outputs (a cycle): stage {:?} reads stream {missing:?}, which one of them produces",
                        s.name
                    )));
                }
                return Err(invalid(format!(
                    "stage {:?} reads stream {missing:?}, which no source or stage produces",
                    s.name
                )));
            }
            for s in ready {
                available.insert(s.output.clone());
                ordered.push(self.spec(s)?);
            }
            pending = rest;
        }
        Ok(ordered)
    }

    /// The shadows, each with its stage spec (the live stage's wiring and limits, the candidate's
    /// plugin and parameters).
    pub fn shadow_specs(&self) -> Result<Vec<ShadowSpec>, ConfigError> {
        let mut names: HashSet<String> = self.stages.iter().map(|s| s.name.clone()).collect();
        let mut out = Vec::new();
        for shadow in &self.shadows {
            let name = shadow.name();
            let live = (self.stages.iter().find(|s| s.name == shadow.stage)).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "shadow {name:?}: the pipeline has no stage {:?}",
                    shadow.stage
                ))
            })?;
            if !names.insert(name.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "shadow {name:?}: a stage or another shadow has that name"
                )));
            }
            let config = StageConfig {
                name: name.clone(),
                plugin: shadow.plugin.clone(),
                params: shadow.params.clone().unwrap_or_else(|| live.params.clone()),
                ..live.clone()
            };
            out.push(ShadowSpec {
                of: live.name.clone(),
                spec: self.spec(&config)?,
            });
        }
        Ok(out)
    }

    fn spec(&self, s: &StageConfig) -> Result<StageSpec, ConfigError> {
        let d = &self.plugin_defaults;
        let pick = |own: &Option<String>, default: &Option<String>| own.clone().or(default.clone());
        let ctx = |what: &str, e: String| {
            ConfigError::Invalid(format!("stage {:?}: {what}: {e}", s.name))
        };
        let memory = match pick(&s.memory_limit, &d.memory_limit) {
            Some(m) => parse_size(&m).map_err(|e| ctx("memory_limit", e))?,
            None => Limits::default().memory_bytes,
        };
        let deadline = match pick(&s.deadline, &d.deadline) {
            Some(t) => parse_duration(&t).map_err(|e| ctx("deadline", e))?,
            None => Limits::default().deadline,
        };
        let lateness = match pick(&s.allowed_lateness, &d.allowed_lateness) {
            Some(t) => parse_duration(&t).map_err(|e| ctx("allowed_lateness", e))?,
            None => Duration::from_secs(30),
        };
        let params = s
            .params
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                        v.to_string()
                    }
                    other => {
                        return Err(ctx(
                            &format!("params.{k}"),
                            format!("{other} is not a scalar"),
                        ))
                    }
                };
                Ok((k.clone(), v))
            })
            .collect::<Result<_, _>>()?;
        Ok(StageSpec {
            name: s.name.clone(),
            plugin: s.plugin.clone(),
            inputs: s.input.clone(),
            output: s.output.clone(),
            params,
            limits: Limits {
                memory_bytes: memory,
                deadline,
            },
            allowed_lateness_ms: lateness.as_millis() as i64,
            checkpoint_every: self.runtime.checkpoint_every.max(1),
            max_failures: self.runtime.max_failures.max(1),
        })
    }
}

/// A stream name or a non-empty list of them.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => Ok(vec![s]),
        OneOrMany::Many(v) if v.is_empty() => Err(serde::de::Error::custom(
            "input: the list of streams is empty",
        )),
        OneOrMany::Many(v) => Ok(v),
    }
}

#[cfg(test)]
mod tests;
