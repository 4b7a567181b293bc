//! A [`Live`] snapshot as Prometheus text (format 0.0.4), written by prometheus-client's
//! encoder through a custom collector: the counters live in the pipeline thread's snapshot, not
//! in a registry of atomics.
//!
//! Names and labels: `shelfstream_stage_*{stage,plugin,version}`,
//! `shelfstream_partition_*{topic,partition}`, `shelfstream_sink_*{sink}` and a few for the
//! host as a whole; durations in seconds, counters end in `_total`. The README lists them all.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Latency, Live};
use crate::pipeline::DeadLetterKind;
use crate::plugin::PluginError;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The snapshot as the body of a `/metrics` answer.
pub fn render(live: Arc<Live>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(live)));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("writing to a String does not fail");
    out
}

#[derive(Debug)]
struct Snapshot(Arc<Live>);

type Labels = Vec<(&'static str, String)>;

enum Value<'a> {
    Counter(u64),
    Seconds(f64),
    Gauge(f64),
    Histogram(&'a Latency),
}

/// One metric family: a descriptor, then one sample (or histogram) per label set.
fn family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, Value<'a>)>,
) -> std::fmt::Result {
    let mut rows = rows.into_iter().peekable();
    let Some((_, first)) = rows.peek() else {
        return Ok(());
    };
    let kind = match first {
        Value::Counter(_) | Value::Seconds(_) => MetricType::Counter,
        Value::Gauge(_) => MetricType::Gauge,
        Value::Histogram(_) => MetricType::Histogram,
    };
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in rows {
        let mut sample = metric.encode_family(&labels)?;
        match value {
            Value::Counter(v) => sample.encode_counter::<NoLabelSet, _, u64>(&v, None)?,
            Value::Seconds(v) => sample.encode_counter::<NoLabelSet, _, f64>(&v, None)?,
            Value::Gauge(v) => sample.encode_gauge(&v)?,
            Value::Histogram(l) => {
                sample.encode_histogram::<NoLabelSet>(l.sum_secs, l.count, &l.pairs(), None)?
            }
        }
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let live = &*self.0;
        let host = || -> Labels { Vec::new() };
        shadows(&mut e, &live.shadows)?;
        family(
            &mut e,
            "shelfstream_records_in",
            "Records read from every source.",
            [(host(), Value::Counter(live.records_in))],
        )?;
        family(
            &mut e,
            "shelfstream_uptime_seconds",
            "Seconds since the host started.",
            [(host(), Value::Gauge(live.uptime_secs))],
        )?;
        family(
            &mut e,
            "shelfstream_ready",
            "1 when sources are connected and sinks accept writes (see /readyz).",
            [(
                host(),
                Value::Gauge(if live.ready.ready { 1.0 } else { 0.0 }),
            )],
        )?;
        family(
            &mut e,
            "shelfstream_checkpoints",
            "Checkpoints taken (sinks durable, then state and positions saved).",
            [(host(), Value::Counter(live.checkpoints.count))],
        )?;
        if let Some(age) = live.checkpoints.last_age_secs {
            family(
                &mut e,
                "shelfstream_checkpoint_age_seconds",
                "Seconds since the last checkpoint ended.",
                [(host(), Value::Gauge(age))],
            )?;
        }
        if let Some(took) = live.checkpoints.last_duration_secs {
            family(
                &mut e,
                "shelfstream_checkpoint_duration_seconds",
                "How long the last checkpoint took.",
                [(host(), Value::Gauge(took))],
            )?;
        }
        self.stages(&mut e)?;
        self.partitions(&mut e)?;
        self.sinks(&mut e)
    }
}

impl Snapshot {
    fn stages(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let series = &self.0.series;
        let labels = |i: usize| -> Labels {
            let s = &series[i];
            vec![
                ("stage", s.stage.clone()),
                ("plugin", s.plugin.clone()),
                ("version", s.version.clone()),
            ]
        };
        let each = |f: fn(&super::StageSeries) -> Value<'_>| {
            (0..series.len()).map(move |i| (labels(i), f(&series[i])))
        };
        family(
            e,
            "shelfstream_stage_events_in",
            "Events (or raw records, for a cleaner) a stage received.",
            each(|s| Value::Counter(s.stats.events_in)),
        )?;
        family(
            e,
            "shelfstream_stage_events_out",
            "Events a stage emitted.",
            each(|s| Value::Counter(s.stats.events_out)),
        )?;
        family(
            e,
            "shelfstream_stage_batches",
            "Batches a stage received.",
            each(|s| Value::Counter(s.stats.batches)),
        )?;
        family(
            e,
            "shelfstream_stage_call_duration_seconds",
            "Time of a plugin call with a batch.",
            each(|s| Value::Histogram(&s.stats.calls)),
        )?;
        family(e, "shelfstream_stage_failures", "Failed plugin calls by kind (deadline, stack, memory, trap, refused, malformed output).",
            (0..series.len()).flat_map(|i| {
                (PluginError::KINDS.iter().enumerate()).map(move |(k, kind)| {
                    let mut l = labels(i);
                    l.push(("kind", kind.to_string()));
                    (l, Value::Counter(series[i].stats.failures_by_kind[k]))
                })
            }))?;
        family(
            e,
            "shelfstream_stage_dead_letters",
            "Dead letters a stage produced, by reason.",
            (0..series.len()).flat_map(|i| {
                (DeadLetterKind::ALL.iter()).map(move |kind| {
                    let mut l = labels(i);
                    l.push(("reason", kind.label().to_string()));
                    (
                        l,
                        Value::Counter(series[i].stats.dead_by_kind[kind.index()]),
                    )
                })
            }),
        )?;
        family(
            e,
            "shelfstream_stage_quarantines",
            "Times a plugin version was quarantined after repeated failures.",
            each(|s| Value::Counter(s.stats.quarantines)),
        )?;
        family(
            e,
            "shelfstream_stage_rollbacks",
            "Quarantines that rolled back to the previous version.",
            each(|s| Value::Counter(s.stats.rollbacks)),
        )?;
        family(
            e,
            "shelfstream_stage_hot_swaps",
            "Hot swaps to this plugin version.",
            each(|s| Value::Counter(s.stats.swaps)),
        )?;
        family(
            e,
            "shelfstream_stage_state_bytes",
            "Plugin state at the last snapshot, over every shard.",
            each(|s| Value::Gauge(s.state_bytes as f64)),
        )
    }

    fn partitions(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let parts = &self.0.partitions;
        let labels = |i: usize| -> Labels {
            vec![
                ("topic", parts[i].topic.clone()),
                ("partition", parts[i].partition.to_string()),
            ]
        };
        let some = |f: fn(&super::PartitionLive) -> Option<f64>| {
            (0..parts.len()).filter_map(move |i| f(&parts[i]).map(|v| (labels(i), Value::Gauge(v))))
        };
        family(
            e,
            "shelfstream_partition_position",
            "The next offset the host reads.",
            some(|p| Some(p.position as f64)),
        )?;
        family(
            e,
            "shelfstream_partition_high_watermark",
            "The broker's next offset, from librdkafka's statistics.",
            some(|p| p.high_watermark.map(|v| v as f64)),
        )?;
        family(
            e,
            "shelfstream_partition_lag",
            "Consumer lag in messages: high watermark minus position.",
            some(|p| p.lag.map(|v| v as f64)),
        )?;
        family(
            e,
            "shelfstream_partition_watermark_seconds",
            "Event-time watermark of the partition's shard (its slowest stage), Unix seconds.",
            some(|p| p.watermark_ms.map(|v| v as f64 / 1e3)),
        )?;
        family(
            e,
            "shelfstream_partition_checkpoint_age_seconds",
            "Seconds since the partition's last checkpoint.",
            some(|p| p.checkpoint_age_secs),
        )?;
        family(
            e,
            "shelfstream_partition_checkpoint_duration_seconds",
            "How long the partition's last checkpoint took.",
            some(|p| p.checkpoint_duration_secs),
        )
    }

    fn sinks(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let sinks = &self.0.sinks;
        let each = |f: fn(&super::SinkReading) -> Value<'_>| {
            sinks
                .iter()
                .map(move |s| (vec![("sink", s.name.clone())], f(s)))
        };
        family(
            e,
            "shelfstream_sink_rows",
            "Rows (objects, for the object store) a sink made durable.",
            each(|s| Value::Counter(s.rows)),
        )?;
        family(
            e,
            "shelfstream_sink_write_duration_seconds",
            "Time of one insert, upload or delivery wait, retries included.",
            each(|s| Value::Histogram(&s.latency)),
        )?;
        family(
            e,
            "shelfstream_sink_queue_depth",
            "Rows handed to a sink and not durable yet.",
            each(|s| Value::Gauge(s.queued as f64)),
        )?;
        family(
            e,
            "shelfstream_sink_retries",
            "Failed writes that were retried.",
            each(|s| Value::Counter(s.retries)),
        )?;
        family(
            e,
            "shelfstream_sink_backpressure_seconds",
            "Time the pipeline waited for the sink (its writes in flight at the limit).",
            each(|s| Value::Seconds(s.backpressure_secs)),
        )
    }
}

/// Each shadow against its live stage: rows by outcome, agreement, alerts by rule and change.
fn shadows(e: &mut DescriptorEncoder, reports: &[super::ShadowLive]) -> std::fmt::Result {
    if reports.is_empty() {
        return Ok(());
    }
    let labels = |r: &super::ShadowLive| -> Labels {
        vec![("shadow", r.shadow.clone()), ("stage", r.stage.clone())]
    };
    family(
        e,
        "shelfstream_shadow_rows",
        "Rows of a shadow and its live stage so far, by outcome: same, changed, only_live, only_shadow.",
        reports.iter().flat_map(|r| {
            [
                ("same", r.same),
                ("changed", r.changed),
                ("only_live", r.only_live),
                ("only_shadow", r.only_shadow),
            ]
            .map(|(outcome, n)| {
                let mut l = labels(r);
                l.push(("outcome", outcome.to_string()));
                (l, Value::Gauge(n as f64))
            })
        }),
    )?;
    family(
        e,
        "shelfstream_shadow_agreement",
        "Share of rows a shadow and its live stage agree on (same over all).",
        reports
            .iter()
            .map(|r| (labels(r), Value::Gauge(r.agreement))),
    )?;
    family(
        e,
        "shelfstream_shadow_alerts",
        "Alerts of a shadow against its live stage, per rule: added, removed, changed.",
        reports.iter().flat_map(|r| {
            r.alerts.iter().flat_map(move |(rule, a)| {
                [("added", a.0), ("removed", a.1), ("changed", a.2)].map(|(change, n)| {
                    let mut l = labels(r);
                    l.push(("rule", rule.clone()));
                    l.push(("change", change.to_string()));
                    (l, Value::Gauge(n as f64))
                })
            })
        }),
    )
}
