//! Shadow stages: a candidate plugin running beside a live stage of the same pipeline, on the
//! same input batches, with its own instance, state, limits and isolation (a trap, a deadline
//! or memory overrun is handled by its own [`Stage`], never by the live one). What it emits is
//! returned apart ([`ShadowOutput`]): it never feeds the stages downstream and never reaches the
//! live sinks. Promotion replaces the live stage with the shadow's stage, warm state and all,
//! at a batch boundary; the live plugin is kept as the previous version for rollback.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{
    Batch, DeadLetter, Labels, Output, Outputs, Pipeline, Provenance, Stage, StageSpec, SwapOutcome,
};
use crate::plugin::EventBatch;
use crate::sources::TopicPartition;

/// A shadow as configured: the live stage it runs beside, and its own stage spec.
#[derive(Debug, Clone)]
pub struct ShadowSpec {
    pub of: String,
    pub spec: StageSpec,
}

/// A running shadow of one pipeline.
pub(super) struct Shadow {
    /// The live stage's index.
    pub(super) of: usize,
    pub(super) stage: Stage,
}

/// One output batch of a shadow.
#[derive(Debug, Clone)]
pub struct ShadowOutput {
    pub shadow: Arc<str>,
    /// The live stage it shadows.
    pub of: Arc<str>,
    pub output: Output,
}

/// A dead letter of a shadow (its own failures and rejections).
#[derive(Debug, Clone)]
pub struct ShadowDeadLetter {
    pub shadow: Arc<str>,
    pub dead_letter: DeadLetter,
}

impl Pipeline {
    /// Run `stage` beside the live stage `of` (it waits for the same input lanes). False when
    /// there is no such stage.
    pub fn add_shadow(&mut self, of: &str, mut stage: Stage) -> bool {
        let Some(i) = self.stages.iter().position(|s| s.spec().name == of) else {
            return false;
        };
        stage.expect_lanes(&self.stages[i].lane_ids());
        self.shadows.push(Shadow { of: i, stage });
        true
    }

    /// Stop a shadow (its state is dropped).
    pub fn remove_shadow(&mut self, name: &str) -> Option<Stage> {
        let i = self
            .shadows
            .iter()
            .position(|s| s.stage.spec().name == name)?;
        Some(self.shadows.remove(i).stage)
    }

    /// The running shadows: (name, the live stage's name).
    pub fn shadows(&self) -> impl Iterator<Item = (&Stage, &str)> {
        (self.shadows.iter()).map(|s| (&s.stage, self.stages[s.of].spec().name.as_str()))
    }

    /// The shadow takes over the live stage it shadows, with its warm state (see
    /// [`Stage::promote`]). Returns the pause, or `None` without such a shadow.
    pub fn promote(&mut self, shadow: &str) -> Option<Duration> {
        let i = self
            .shadows
            .iter()
            .position(|s| s.stage.spec().name == shadow)?;
        let shadow = self.shadows.remove(i);
        Some(self.stages[shadow.of].promote(shadow.stage))
    }

    /// End of input: the shadows of stage `i` close their windows (when the live stage does, so
    /// they have had every input the live stage had).
    pub(super) fn flush_shadows(&mut self, i: usize, outputs: &mut Outputs) {
        let of: Arc<str> = self.stages[i].spec().name.as_str().into();
        for s in self.shadows.iter_mut().filter(|s| s.of == i) {
            let mut dead = Vec::new();
            let out = s.stage.flush(&mut dead);
            Self::shadow_out(s, &of, out, &self.positions, self.partition, dead, outputs);
        }
    }

    /// New parameters for a shadow (with its state).
    pub fn reconfigure_shadow(&mut self, spec: &StageSpec) -> Option<SwapOutcome> {
        let s = (self.shadows.iter_mut()).find(|s| s.stage.spec().name == spec.name)?;
        let result = s.stage.reconfigure(spec.params.clone());
        Some(SwapOutcome {
            stage: spec.name.clone(),
            result,
        })
    }

    /// Run the shadows of stage `i` on its input.
    pub(super) fn run_shadows(
        &mut self,
        i: usize,
        input: &Batch,
        lane: i32,
        outputs: &mut Outputs,
    ) {
        let of: Arc<str> = self.stages[i].spec().name.as_str().into();
        for s in self.shadows.iter_mut().filter(|s| s.of == i) {
            let mut dead = Vec::new();
            let out = s.stage.process_lane(input.clone(), lane, &mut dead);
            Self::shadow_out(s, &of, out, &self.positions, self.partition, dead, outputs);
        }
    }

    pub(super) fn shadow_out(
        s: &mut Shadow,
        of: &Arc<str>,
        out: EventBatch,
        positions: &Arc<BTreeMap<TopicPartition, i64>>,
        partition: Option<i32>,
        dead: Vec<DeadLetter>,
        outputs: &mut Outputs,
    ) {
        let labels = Labels::of(&s.stage);
        outputs
            .shadow_dead_letters
            .extend(dead.into_iter().map(|dead_letter| ShadowDeadLetter {
                shadow: labels.stage.clone(),
                dead_letter,
            }));
        if out.is_empty() {
            return;
        }
        let origins = s.stage.take_origins();
        let provenance = Provenance {
            stage: labels.stage.clone(),
            plugin: labels.plugin,
            version: labels.version,
            origins: if origins.len() == out.len() {
                origins
            } else {
                Vec::new()
            },
            positions: positions.clone(),
            partition,
        };
        outputs.shadows.push(ShadowOutput {
            shadow: labels.stage,
            of: of.clone(),
            output: Output {
                stream: labels.stream,
                provenance,
                events: Arc::new(out),
            },
        });
    }
}
