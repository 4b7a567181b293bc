//! What describes a stage (its spec, from the config), what it persists (its checkpoint), how
//! it is doing (status, counters), and how starting or swapping it fails.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::meter::Latency;
use crate::pipeline::DeadLetterKind;
use crate::plugin::{Limits, PluginError, PluginKind, Timestamp};

/// Static description of a stage, from the pipeline config.
#[derive(Debug, Clone)]
pub struct StageSpec {
    pub name: String,
    /// Plugin name: the component file stem in the plugins folder.
    pub plugin: String,
    /// The streams it reads (one for most stages).
    pub inputs: Vec<String>,
    pub output: String,
    pub params: Vec<(String, String)>,
    pub limits: Limits,
    pub allowed_lateness_ms: i64,
    /// Take a checkpoint (snapshot) once the replay log holds this many events (each call also
    /// counts one). Bounds the memory of the log and the replay after a failure.
    pub checkpoint_every: usize,
    /// Consecutive failures before quarantine.
    pub max_failures: u32,
}

/// What a stage persists across restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageCheckpoint {
    pub plugin_version: String,
    pub state_version: u32,
    /// The plugin's state bytes (base64 in JSON; a JSON array of bytes is read too).
    #[serde(with = "state_bytes")]
    pub state: Vec<u8>,
    /// Newest event time accepted, per input lane (source partition).
    #[serde(default)]
    pub lanes: BTreeMap<i32, Timestamp>,
    pub watermark: Timestamp,
}

/// State bytes as base64 text: a third of the size of a JSON array of numbers, and faster.
mod state_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Base64(String),
            Bytes(Vec<u8>),
        }
        match Stored::deserialize(d)? {
            Stored::Base64(text) => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(serde::de::Error::custom),
            Stored::Bytes(bytes) => Ok(bytes),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("{new} is a {new_kind:?} but stage {stage} runs a {old_kind:?}")]
    KindMismatch {
        stage: String,
        new: String,
        new_kind: PluginKind,
        old_kind: PluginKind,
    },
    #[error("new version {version} of {plugin} {step}: {error}")]
    Rejected {
        plugin: String,
        version: String,
        step: &'static str,
        error: PluginError,
    },
    #[error("the running version of {plugin} failed to export its state: {error}")]
    Snapshot { plugin: String, error: PluginError },
}

#[derive(Debug, thiserror::Error)]
#[error("stage {stage}: plugin {plugin} {step}: {error}{}", self.hint())]
pub struct StartError {
    pub stage: String,
    pub plugin: String,
    pub step: &'static str,
    pub error: PluginError,
}

impl StartError {
    /// The plugin refused the saved state it was given (not its parameters or instantiation).
    pub fn refused_state(&self) -> bool {
        self.step == super::swap::REFUSED_STATE
    }

    fn hint(&self) -> &'static str {
        match self.refused_state() {
            true => " (the saved state is kept; install a plugin version that reads it, or set runtime.on_bad_state = \"start-empty\" to start this stage without it, losing its open windows)",
            false => "",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    Quarantined,
    Unloaded,
}

/// A stage's counters since it started (see [`crate::observe`] for how they become metrics).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageStats {
    pub batches: u64,
    pub events_in: u64,
    pub events_out: u64,
    pub failures: u64,
    pub dead_letters: u64,
    pub swaps: u64,
    /// Failed calls by [`PluginError::kind`], in the order of [`PluginError::KINDS`].
    pub failures_by_kind: [u64; PluginError::KINDS.len()],
    /// Dead letters by [`DeadLetterKind::label`], in the order of [`DeadLetterKind::ALL`].
    pub dead_by_kind: [u64; DeadLetterKind::ALL.len()],
    pub quarantines: u64,
    /// Quarantines that went back to the previous version.
    pub rollbacks: u64,
    /// The time of each call with a batch.
    pub calls: Latency,
}

impl StageStats {
    /// What was counted after `earlier` (a copy of these stats taken before).
    pub fn since(&self, earlier: &StageStats) -> StageStats {
        let sub = |a: &[u64], b: &[u64], out: &mut [u64]| {
            for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
                *o = a.saturating_sub(*b);
            }
        };
        let mut d = StageStats {
            batches: self.batches.saturating_sub(earlier.batches),
            events_in: self.events_in.saturating_sub(earlier.events_in),
            events_out: self.events_out.saturating_sub(earlier.events_out),
            failures: self.failures.saturating_sub(earlier.failures),
            dead_letters: self.dead_letters.saturating_sub(earlier.dead_letters),
            swaps: self.swaps.saturating_sub(earlier.swaps),
            quarantines: self.quarantines.saturating_sub(earlier.quarantines),
            rollbacks: self.rollbacks.saturating_sub(earlier.rollbacks),
            calls: self.calls.since(&earlier.calls),
            ..Default::default()
        };
        sub(
            &self.failures_by_kind,
            &earlier.failures_by_kind,
            &mut d.failures_by_kind,
        );
        sub(
            &self.dead_by_kind,
            &earlier.dead_by_kind,
            &mut d.dead_by_kind,
        );
        d
    }

    pub fn add(&mut self, other: &StageStats) {
        self.batches += other.batches;
        self.events_in += other.events_in;
        self.events_out += other.events_out;
        self.failures += other.failures;
        self.dead_letters += other.dead_letters;
        self.swaps += other.swaps;
        self.quarantines += other.quarantines;
        self.rollbacks += other.rollbacks;
        self.calls.add(&other.calls);
        for (a, b) in self
            .failures_by_kind
            .iter_mut()
            .zip(&other.failures_by_kind)
        {
            *a += b;
        }
        for (a, b) in self.dead_by_kind.iter_mut().zip(&other.dead_by_kind) {
            *a += b;
        }
    }
}
