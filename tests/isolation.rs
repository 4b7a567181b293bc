//! Deliberately bad plugins are contained: a trap, an endless loop, unbounded allocation and a
//! stack overflow each fail only their batch (dead-lettered with the reason), the instance comes
//! back from its last good state, repeated failure quarantines or rolls back, a plugin importing
//! what the host does not offer is refused, and the other plugins keep processing.

mod common;

use std::time::{Duration, Instant};

use common::*;
use shelfstream::harness::{shared_engine, PluginHarness};
use shelfstream::pipeline::{Batch, DeadLetterKind, Pipeline, Stage, StageSpec, Status};
use shelfstream::plugin::Event;
use shelfstream::plugin::{Limits, LoadError};
use shelfstream::sinks::{MemorySink, Sink};

const TRIGGER: &str = "SKU-66666";

fn normal(n: usize, ts: i64) -> Vec<Event> {
    (0..n)
        .map(|i| sale(&format!("T{ts}-{i}"), "S001", "SKU-00001", 1, 1.0, ts))
        .collect()
}

fn poisoned(ts: i64) -> Vec<Event> {
    let mut batch = normal(2, ts);
    batch.push(sale("BOOM", "S001", TRIGGER, 1, 1.0, ts));
    batch
}

fn misbehaving(mode: &str) -> PluginHarness {
    PluginHarness::builder(fixture("misbehave"))
        .param("mode", mode)
        .limits(Limits {
            memory_bytes: 16 << 20,
            deadline: Duration::from_millis(200),
        })
        .allowed_lateness_ms(i64::MAX / 4)
        .checkpoint_every(2)
        .start()
        .unwrap()
}

fn saved_count(h: &mut PluginHarness) -> u64 {
    let saved = h.snapshot().unwrap();
    u64::from_le_bytes(saved.state.try_into().expect("8-byte counter"))
}

fn contained(mode: &str, reason: &str) {
    let mut h = misbehaving(mode);
    assert_eq!(h.process(normal(3, 1)).len(), 3);
    assert_eq!(h.process(normal(2, 2)).len(), 2);
    assert_eq!(
        h.process(normal(1, 3)).len(),
        1,
        "replayed after the checkpoint at 2 calls"
    );

    let started = Instant::now();
    let out = h.process(poisoned(4));
    assert!(out.is_empty(), "{mode}: the failing batch emits nothing");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{mode} was stopped"
    );
    let dead = h.take_dead_letters();
    assert_eq!(dead.len(), 3, "{mode}: the whole batch is dead-lettered");
    for d in &dead {
        assert_eq!(d.kind, DeadLetterKind::PluginFailure);
        assert_eq!(d.plugin, "misbehave");
        assert_eq!(d.plugin_version.len(), 12);
        assert!(
            d.reason.contains(reason),
            "{mode}: {:?} should mention {reason:?}",
            d.reason
        );
    }

    // Re-created from the last good state: the failed batch left no trace, nothing was lost.
    assert_eq!(
        h.process(normal(4, 5)).len(),
        4,
        "{mode}: processing continues"
    );
    assert_eq!(
        saved_count(&mut h),
        3 + 2 + 1 + 4,
        "{mode}: state = every good batch, once"
    );
    assert_eq!(h.stage().status(), Status::Running);
}

#[test]
fn a_trap_fails_only_its_batch() {
    if !components_built() {
        return;
    }
    contained("trap", "misbehave: trap on purpose");
}

#[test]
fn an_endless_loop_hits_the_cpu_deadline() {
    if !components_built() {
        return;
    }
    contained("loop", "CPU deadline of 200ms");
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    if !components_built() {
        return;
    }
    contained("alloc", "memory limit of 16777216 bytes");
}

#[test]
fn runaway_recursion_overflows_the_stack_safely() {
    if !components_built() {
        return;
    }
    contained("recurse", "overflowed its stack");
}

#[test]
fn repeated_failure_quarantines_the_plugin() {
    if !components_built() {
        return;
    }
    let mut h = misbehaving("trap");
    h.process(normal(2, 1));
    for i in 0..3 {
        assert!(h.process(poisoned(10 + i)).is_empty());
    }
    assert_eq!(h.stage().status(), Status::Quarantined);
    h.take_dead_letters();
    assert!(h.process(normal(2, 20)).is_empty());
    let dead = h.take_dead_letters();
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|d| d.kind == DeadLetterKind::Quarantined));

    // Installing a new version lifts the quarantine, with the state of the last good batch.
    let dir = tempfile::tempdir().unwrap();
    let v2 = dir.path().join("misbehave.wasm");
    std::fs::write(&v2, new_version_of(&fixture("misbehave"), "v2")).unwrap();
    h.swap_to(&v2).unwrap();
    assert_eq!(h.stage().status(), Status::Running);
    assert_eq!(h.process(normal(1, 30)).len(), 1);
    assert_eq!(saved_count(&mut h), 3);
}

#[test]
fn a_failing_new_version_is_rolled_back_to_the_previous_one() {
    if !components_built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let v2 = dir.path().join("misbehave.wasm");
    std::fs::write(&v2, new_version_of(&fixture("misbehave"), "v2")).unwrap();
    let mut h = misbehaving("trap");
    let v1 = h.stage().plugin().version.clone();
    h.process(normal(2, 1));
    h.swap_to(&v2).unwrap();
    assert_ne!(h.stage().plugin().version, v1);
    for i in 0..3 {
        h.process(poisoned(10 + i));
    }
    assert_eq!(
        h.stage().status(),
        Status::Running,
        "rolled back, not stopped"
    );
    assert_eq!(
        h.stage().plugin().version,
        v1,
        "the previous version runs again"
    );
    assert_eq!(h.process(normal(2, 20)).len(), 2);
    assert_eq!(saved_count(&mut h), 4);
}

#[test]
fn a_plugin_importing_what_the_host_does_not_offer_is_refused() {
    if !components_built() {
        return;
    }
    let err = shared_engine().load(&fixture("sneaky")).unwrap_err();
    assert!(matches!(err, LoadError::Link { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("read-file") || text.contains("filesystem"),
        "{text}"
    );
}

#[test]
fn other_plugins_keep_processing_while_one_misbehaves() {
    if !components_built() {
        return;
    }
    let engine = shared_engine();
    let spec = |name: &str, plugin: &str, params: Vec<(String, String)>| StageSpec {
        name: name.into(),
        plugin: plugin.into(),
        inputs: vec!["sales".into()],
        output: format!("{name}-out"),
        params,
        limits: Limits {
            memory_bytes: 16 << 20,
            deadline: Duration::from_millis(100),
        },
        allowed_lateness_ms: 0,
        checkpoint_every: 8,
        max_failures: 100,
    };
    let bad = Stage::start(
        spec("bad", "misbehave", vec![("mode".into(), "loop".into())]),
        engine.load(&fixture("misbehave")).unwrap(),
        None,
    )
    .unwrap();
    let good = Stage::start(
        spec("good", "revenue-aggregator", vec![]),
        engine.load(&plugin("revenue-aggregator")).unwrap(),
        None,
    )
    .unwrap();
    let sink = MemorySink::new(true);
    let mut pipeline = Pipeline::new(vec![bad, good]);
    for minute in 0..5 {
        let mut batch = normal(3, minute * MIN);
        batch.push(sale("BOOM", "S001", TRIGGER, 1, 1.0, minute * MIN));
        let out = pipeline.push("sales", Batch::events(batch));
        sink.clone().write_outputs(&out).unwrap();
    }
    let got = sink.take();
    let rows: Vec<&Event> = got.streams["good-out"]
        .iter()
        .filter(|e| matches!(e, Event::Metric(m) if m.dimensions[1].1 == "SKU-00001"))
        .collect();
    assert_eq!(rows.len(), 4, "four minutes closed by the fifth");
    for row in rows {
        assert_eq!(value(row, "units_sold"), 3.0);
    }
    assert!(!got.counts.contains_key("bad-out"));
    assert_eq!(got.dead_letters.len(), 5 * 4);
    assert!(got
        .dead_letters
        .iter()
        .all(|d| d.stage == "bad" && d.reason.contains("deadline")));
}
