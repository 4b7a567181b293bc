//! The retail simulator ([`crate::sim`]) as a source of `host run`: messages generated at the
//! configured rate, batched per topic, resuming after the steps a previous run processed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::Sender;

use super::{
    Dimensions, Position, ProductRow, Source, SourceBatch, SourceEvent, StopFlag, StoreRow, LINGER,
};
use crate::plugin::RawRecord;
use crate::sim::{Simulator, SimulatorConfig};

pub struct SimulatorSource {
    config: SimulatorConfig,
    batch_size: usize,
    duration: Option<Duration>,
    sim: Simulator,
}

impl SimulatorSource {
    /// A simulator that continues after `resume` steps (regenerated and skipped).
    pub fn new(config: SimulatorConfig, batch_size: usize, resume: u64) -> anyhow::Result<Self> {
        let duration = config
            .duration
            .as_deref()
            .map(crate::units::parse_duration)
            .transpose()
            .map_err(|e| anyhow::anyhow!("source {}: duration {e}", config.name))?;
        // Without a start, end the simulated span around now, so "the last hour" queries find
        // the data.
        let span_ms = duration.map_or(0.0, |d| d.as_secs_f64() * config.time_scale * 1_000.0);
        let start_ms = config.start_ms(crate::units::now_ms(), span_ms as i64)?;
        let mut sim = Simulator::new(&config, start_ms);
        sim.skip(resume);
        Ok(SimulatorSource {
            config,
            batch_size: batch_size.max(1),
            duration,
            sim,
        })
    }
}

impl Source for SimulatorSource {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn dimensions(&self) -> Option<Dimensions> {
        Some(Dimensions {
            stores: (self.sim.stores.iter())
                .map(|s| StoreRow {
                    id: s.id.clone(),
                    city: s.city.to_string(),
                })
                .collect(),
            products: (self.sim.products.iter())
                .map(|p| ProductRow {
                    sku: p.sku.clone(),
                    name: p.name.clone(),
                    category: p.category.to_string(),
                    base_price: p.base_price,
                })
                .collect(),
        })
    }

    fn run(self: Box<Self>, out: &Sender<SourceEvent>, stop: &StopFlag) -> anyhow::Result<()> {
        let SimulatorSource {
            config: c,
            batch_size,
            duration,
            mut sim,
        } = *self;
        let max_steps = c.max_events.unwrap_or(u64::MAX);
        let started = Instant::now();
        let mut buffers: BTreeMap<String, Vec<RawRecord>> = BTreeMap::new();
        // When the oldest buffered record was made: a paced run sends partial batches after
        // LINGER, not every few milliseconds (at 2,000 messages/s, batches of 2-3 records cost
        // the pipeline 50 us of CPU per record).
        let mut oldest: Option<Instant> = None;
        let mut messages: u64 = 0;
        // Every buffered batch, with the position after all of them; false: nobody listens.
        let flush = |buffers: &mut BTreeMap<String, Vec<RawRecord>>, steps: u64| {
            let position = Position::Count(steps);
            for (topic, records) in std::mem::take(buffers) {
                let batch = SourceBatch {
                    source: c.name.clone(),
                    topic,
                    records,
                    position: position.clone(),
                };
                if out.send(SourceEvent::Batch(batch)).is_err() {
                    return false;
                }
            }
            true
        };
        while !stop.is_stopped() && sim.steps() < max_steps {
            if duration.is_some_and(|d| started.elapsed() >= d) {
                break;
            }
            // Generate the messages due by now (paced by `rate`), at most about one batch.
            let due = if c.rate > 0.0 {
                (started.elapsed().as_secs_f64() * c.rate) as u64
            } else {
                u64::MAX
            };
            let mut produced = 0;
            while messages < due && sim.steps() < max_steps && produced < batch_size {
                for r in sim.step() {
                    buffers.entry(r.topic.clone()).or_default().push(r);
                    produced += 1;
                    messages += 1;
                }
            }
            if produced > 0 && oldest.is_none() {
                oldest = Some(Instant::now());
            }
            let send = c.rate <= 0.0 // unpaced: every turn makes a full batch
                || buffers.values().any(|b| b.len() >= batch_size)
                || oldest.is_some_and(|t| t.elapsed() >= LINGER);
            if send {
                if !flush(&mut buffers, sim.steps()) {
                    return Ok(());
                }
                oldest = None;
            }
            if produced == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // What is still buffered when the run ends or is stopped.
        if !flush(&mut buffers, sim.steps()) {
            return Ok(());
        }
        if let Some(path) = &c.ground_truth {
            let truth = sim.ground_truth();
            let json = serde_json::to_vec(&truth).expect("the ground truth serialises");
            std::fs::write(path, json)
                .with_context(|| format!("writing the ground truth to {}", path.display()))?;
            tracing::info!(path = %path.display(), incidents = truth.incidents.len(), "ground truth written");
        }
        Ok(())
    }
}
