//! Upgrading from contract 0.1.0 keeps state. `tests/fixtures/state-0.1/` holds what the 0.1.0
//! host and plugins (commit 0ab4f49) wrote, made by `make.sh` there:
//! - `pipeline.json.gz`: the saved state of the shipped pipeline after a run stopped with
//!   windows open;
//! - `closed.ndjson.gz`: what the 0.1.0 host emitted when it restarted on that state and closed
//!   every window (each line an output row, `_stream` naming its stream).
//!
//! Today's plugins restore that state in every stage and close the same windows with the same
//! rows: a restart after upgrading loses and changes nothing. A stage whose saved state its
//! plugin refuses stops the shard with the choices, or starts empty when configured so.

mod common;

use std::collections::BTreeMap;
use std::io::Read;

use common::*;
use shelfstream::checkpoint::SavedState;
use shelfstream::config::PipelineConfig;
use shelfstream::harness::shared_engine;
use shelfstream::pipeline::dead_letter::event_from_json;
use shelfstream::pipeline::{
    event_json, OnBadState, Pipeline, ShardId, Shards, Stage, StageCheckpoint,
};
use shelfstream::plugin::registry;

fn gunzip(name: &str) -> String {
    let path = repo().join("tests/fixtures/state-0.1").join(name);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// Rows per stream, each as its canonical JSON text, sorted (a stage's output order within one
/// flush is not part of the contract).
type Rows = BTreeMap<String, Vec<String>>;

/// What the 0.1.0 host closed, from its NDJSON output lines.
fn closed_by_0_1() -> Rows {
    let mut rows = Rows::new();
    for line in gunzip("closed.ndjson.gz").lines() {
        let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
        let map = value.as_object_mut().unwrap();
        let stream = map.remove("_stream").unwrap().as_str().unwrap().to_string();
        map.retain(|k, _| !k.starts_with('_'));
        let event = event_from_json(&value.to_string()).unwrap();
        rows.entry(stream)
            .or_default()
            .push(event_json(&event).to_string());
    }
    rows.values_mut().for_each(|v| v.sort());
    rows
}

#[test]
fn state_saved_by_the_0_1_plugins_restores_into_every_stage_and_closes_the_same_windows() {
    if !components_built() {
        return;
    }
    let mut saved: SavedState = serde_json::from_str(&gunzip("pipeline.json.gz")).unwrap();
    let config = PipelineConfig::load(None).unwrap();
    let specs = config.stage_specs().unwrap();
    assert!(specs.len() >= 20, "the shipped pipeline");
    let plugins = registry::load_plugins(shared_engine(), &repo().join("plugins")).unwrap();
    let mut stages = Vec::new();
    for spec in specs {
        let checkpoint = saved.stages.remove(&spec.name);
        let checkpoint = checkpoint.unwrap_or_else(|| panic!("no saved state for {}", spec.name));
        let plugin = plugins.loaded[&spec.plugin].clone();
        assert_ne!(
            checkpoint.plugin_version, plugin.version,
            "{}: a new build",
            spec.name
        );
        let stage = Stage::start(spec.clone(), plugin, Some(checkpoint));
        stages.push(stage.unwrap_or_else(|e| panic!("{}: {e}", spec.name)));
    }
    let out = Pipeline::new(stages).flush_windows();
    assert!(
        out.dead_letters.is_empty(),
        "no stage failed: {:?}",
        out.dead_letters.first()
    );
    let mut closed = Rows::new();
    for batch in &out.batches {
        let rows = batch.events.rows();
        let stream = closed.entry(batch.stream.to_string()).or_default();
        stream.extend(rows.iter().map(|e| event_json(e).to_string()));
    }
    closed.values_mut().for_each(|v| v.sort());

    let expected = closed_by_0_1();
    let windows = expected.get("sales_1m").map_or(0, Vec::len);
    assert!(windows > 0, "the fixture has open per-minute windows");
    let streams: Vec<&String> = expected.keys().chain(closed.keys()).collect();
    for stream in streams {
        let (want, got) = (&expected.get(stream), &closed.get(stream));
        let (want, got) = (want.map_or(&[][..], |v| v), got.map_or(&[][..], |v| v));
        let first_difference = want.iter().zip(got).find(|(w, g)| w != g);
        assert!(
            want.len() == got.len() && first_difference.is_none(),
            "{stream}: 0.1.0 closed {} rows, today's plugins {}; first difference: {first_difference:#?}",
            want.len(),
            got.len()
        );
    }
}

/// A way to break a saved state.
type Break = dyn Fn(&mut StageCheckpoint);

#[test]
fn refused_state_stops_the_shard_with_the_choices_or_starts_that_stage_empty_as_configured() {
    if !components_built() {
        return;
    }
    let truncate = |c: &mut StageCheckpoint| c.state.truncate(c.state.len() / 2);
    let unknown_version = |c: &mut StageCheckpoint| c.state_version = 99;
    let garbage = |c: &mut StageCheckpoint| c.state = vec![0xff; 64];
    let breaks: [(&str, &Break); 3] = [
        ("truncated", &truncate),
        ("an unknown version", &unknown_version),
        ("garbage", &garbage),
    ];
    let expected = closed_by_0_1();
    let saved: SavedState = serde_json::from_str(&gunzip("pipeline.json.gz")).unwrap();
    let specs = PipelineConfig::load(None).unwrap().stage_specs().unwrap();
    let plugins = registry::load_plugins(shared_engine(), &repo().join("plugins")).unwrap();
    let shards = || Shards::new(specs.clone(), plugins.loaded.clone());
    // The fixture's state with the per-minute aggregator's state broken as `break_it` says.
    let with_broken_stage = |break_it: &Break| {
        let mut stages = saved.stages.clone();
        break_it(stages.get_mut("sales-per-minute").expect("in the fixture"));
        stages
    };
    for (what, break_it) in breaks {
        // Default: the shard does not open, and the error says which stage, why and what to do.
        let error = shards()
            .open(ShardId::Local, with_broken_stage(break_it))
            .map(|_| ())
            .expect_err(what);
        let message = error.to_string();
        for part in ["sales-per-minute", "refused the state", "on_bad_state"] {
            assert!(message.contains(part), "{what}: {message}");
        }
        // start-empty: that stage starts without its windows; every other stage keeps its own.
        let mut shards = shards().with_on_bad_state(OnBadState::StartEmpty);
        let pipeline = shards.open(ShardId::Local, with_broken_stage(break_it));
        let out = pipeline.expect(what).flush_windows();
        assert!(out.dead_letters.is_empty(), "{what}");
        assert_eq!(
            out.events_of("sales_1m").count(),
            0,
            "{what}: its windows are gone"
        );
        let hourly = out.events_of("sales_1h").count();
        assert_eq!(
            hourly,
            expected["sales_1h"].len(),
            "{what}: other stages kept theirs"
        );
    }
}
