//! Hot swap: a new plugin version dropped into the watched folder while events flow takes over
//! at a batch boundary with its predecessor's state; nothing is lost or processed twice. Broken
//! or incompatible versions are rejected and the running version stays; removing a file unloads.

mod common;

use std::time::Duration;

use common::*;
use shelfstream::harness::{shared_engine, HarnessSwapError, PluginHarness};
use shelfstream::pipeline::{Batch, DeadLetterKind, Pipeline, Stage, StageSpec, Status, SwapError};
use shelfstream::plugin::Limits;
use shelfstream::sinks::{MemorySink, Sink};

#[test]
fn a_live_swap_loses_nothing_doubles_nothing_and_keeps_window_state() {
    if !components_built() {
        return;
    }
    // Baseline: the same simulated input (same seed, start and rate) without any swap.
    let baseline = tempfile::tempdir().unwrap();
    let plugins = plugins_copy();
    run_to_end(
        plugins.path(),
        pipeline_config(baseline.path(), 6_000.0, Some(20_000), true),
        false,
    );

    // Live: paced, with a new aggregator version and a broken alert rule dropped in mid-stream.
    let live = tempfile::tempdir().unwrap();
    let dir = plugins.path().to_path_buf();
    let out = live.path().join("out").join("sales_1m.ndjson");
    let swapper = std::thread::spawn(move || {
        assert!(
            wait_for(60, || std::fs::metadata(&out)
                .map(|m| m.len() > 0)
                .unwrap_or(false)),
            "no output yet"
        );
        let v2 = new_version_of(&dir.join("revenue-aggregator.wasm"), "v2");
        std::fs::write(dir.join("revenue-aggregator.wasm.tmp"), v2).unwrap();
        std::fs::rename(
            dir.join("revenue-aggregator.wasm.tmp"),
            dir.join("revenue-aggregator.wasm"),
        )
        .unwrap();
        std::fs::write(dir.join("low-stock-alert.wasm.tmp"), b"\0asm garbage").unwrap();
        std::fs::rename(
            dir.join("low-stock-alert.wasm.tmp"),
            dir.join("low-stock-alert.wasm"),
        )
        .unwrap();
    });
    let report = run_to_end(
        plugins.path(),
        pipeline_config(live.path(), 6_000.0, Some(20_000), true),
        true,
    );
    swapper.join().unwrap();

    assert!(
        report.swaps >= 1,
        "the new version was swapped in: {report:?}"
    );
    let versions = stream_versions(live.path(), "sales_1m");
    assert_eq!(versions.len(), 2, "rows from both versions: {versions:?}");
    let (live_rows, base_rows) = (
        stream_rows(live.path(), "sales_1m"),
        stream_rows(baseline.path(), "sales_1m"),
    );
    assert!(base_rows.len() > 100);
    assert_eq!(
        live_rows, base_rows,
        "every window exactly once, with the state carried across the swap"
    );
    assert_eq!(
        stream_rows(live.path(), "alerts"),
        stream_rows(baseline.path(), "alerts"),
        "the broken alert rule was rejected; the old one kept running"
    );
    assert_eq!(
        stream_rows(live.path(), "forecasts"),
        stream_rows(baseline.path(), "forecasts")
    );
}

#[test]
fn broken_or_incompatible_versions_are_rejected_and_the_running_one_stays() {
    if !components_built() {
        return;
    }
    let mut h = PluginHarness::builder(plugin("low-stock-alert"))
        .allowed_lateness_ms(i64::MAX / 4)
        .start()
        .unwrap();
    assert_eq!(
        h.process(vec![stock("S001", "SKU-00001", 1, 100, 1)]).len(),
        1
    );
    let running = h.stage().plugin().version.clone();

    // Same kind, but it cannot read the state: refused at the swap, nothing changes.
    let err = h.swap_to(fixture("misbehave")).unwrap_err();
    assert!(
        matches!(
            err,
            HarnessSwapError::Swap(SwapError::Rejected {
                step: "refused the state",
                ..
            })
        ),
        "{err}"
    );
    // Another kind of plugin.
    let err = h.swap_to(plugin("revenue-aggregator")).unwrap_err();
    assert!(
        matches!(err, HarnessSwapError::Swap(SwapError::KindMismatch { .. })),
        "{err}"
    );
    // Not a component at all.
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("low-stock-alert.wasm");
    std::fs::write(&garbage, b"not wasm").unwrap();
    assert!(matches!(
        h.swap_to(&garbage).unwrap_err(),
        HarnessSwapError::Load(_)
    ));

    assert_eq!(h.stage().plugin().version, running);
    assert_eq!(h.stage().status(), Status::Running);
    // Its state is intact: the product already in alert does not alert again; a new one does.
    assert!(
        h.process(vec![stock("S001", "SKU-00001", 0, 100, 2)]).len() == 1,
        "escalates to out of stock"
    );
    assert!(h
        .process(vec![stock("S001", "SKU-00001", 0, 100, 3)])
        .is_empty());
}

#[test]
fn removing_a_plugin_unloads_it_and_putting_it_back_resumes_with_its_state() {
    if !components_built() {
        return;
    }
    let spec = StageSpec {
        name: "agg".into(),
        plugin: "revenue-aggregator".into(),
        inputs: vec!["sales".into()],
        output: "sales_1m".into(),
        params: vec![],
        limits: Limits::default(),
        allowed_lateness_ms: MIN,
        checkpoint_every: 4,
        max_failures: 3,
    };
    let v1 = shared_engine().load(&plugin("revenue-aggregator")).unwrap();
    let sink = MemorySink::new(true);
    let mut p = Pipeline::new(vec![Stage::start(spec, v1, None).unwrap()]);
    let out = p.push(
        "sales",
        Batch::events(vec![sale("T1", "S001", "SKU-00001", 2, 1.0, 1_000)]),
    );
    sink.clone().write_outputs(&out).unwrap();
    assert_eq!(p.unload("revenue-aggregator"), vec!["agg".to_string()]);
    let out = p.push(
        "sales",
        Batch::events(vec![sale("T2", "S001", "SKU-00001", 5, 1.0, 2_000)]),
    );
    sink.clone().write_outputs(&out).unwrap();
    let dead = sink.take().dead_letters;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].kind, DeadLetterKind::Unloaded);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revenue-aggregator.wasm");
    std::fs::write(&path, new_version_of(&plugin("revenue-aggregator"), "back")).unwrap();
    let v2 = shared_engine().load(&path).unwrap();
    let outcomes = p.swap(&v2);
    assert!(outcomes[0].result.is_ok(), "{outcomes:?}");
    let out = p.push(
        "sales",
        Batch::events(vec![sale("T3", "S001", "SKU-00001", 1, 1.0, 3 * MIN)]),
    );
    sink.clone().write_outputs(&out).unwrap();
    let rows = sink.take().streams.remove("sales_1m").unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        value(&rows[0], "units_sold"),
        2.0,
        "state from before the unload; the dead-lettered batch not counted"
    );
}

#[test]
fn swap_pause_is_small() {
    if !components_built() {
        return;
    }
    // Reported, not asserted: the figure is in the benchmark too.
    let mut h = PluginHarness::builder(plugin("revenue-aggregator"))
        .allowed_lateness_ms(MIN)
        .start()
        .unwrap();
    h.process(
        (0..1000)
            .map(|i| {
                sale(
                    &format!("T{i}"),
                    "S001",
                    &format!("SKU-{:05}", i % 200),
                    1,
                    1.0,
                    i,
                )
            })
            .collect(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revenue-aggregator.wasm");
    std::fs::write(
        &path,
        new_version_of(&plugin("revenue-aggregator"), "pause"),
    )
    .unwrap();
    shared_engine().load(&path).unwrap(); // compile off the measured path, as the watcher does
    let pause: Duration = h.swap_to(&path).unwrap();
    eprintln!("hot swap pause with 200 open windows: {pause:?}");
    assert_eq!(h.advance_watermark(MIN).len(), 200);
}

#[test]
fn changing_a_parameter_in_the_config_file_applies_it_live_with_the_state() {
    if !components_built() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let config_path = data.path().join("pipeline.toml");
    let shipped = std::fs::read_to_string(repo().join("host/pipeline.toml")).unwrap();
    let old_params = r#"params = { window = "1m", metric = "sales_1m" }"#;
    assert!(shipped.contains(old_params));
    std::fs::write(&config_path, &shipped).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["run", "--quiet", "--plugins"])
        .arg(repo().join("plugins"))
        .arg("--config")
        .arg(&config_path)
        .arg("--data-dir")
        .arg(data.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = data.path().join("out/sales_1m.ndjson");
    let rows = || std::fs::read_to_string(&out).unwrap_or_default();
    let wait = |what: &dyn Fn(&str) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if what(&rows()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    };
    assert!(wait(&|r| r.contains("\"metric\":\"sales_1m\"")));

    // A parameter the plugin rejects changes nothing; a valid one applies from the next batch.
    let bad = shipped.replace(
        old_params,
        r#"params = { window = "soon", metric = "sales_1m" }"#,
    );
    std::fs::write(&config_path, bad).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let good = shipped.replace(
        old_params,
        r#"params = { window = "1m", metric = "sales_per_minute" }"#,
    );
    std::fs::write(&config_path, good).unwrap();
    assert!(
        wait(&|r| r.contains("\"metric\":\"sales_per_minute\"")),
        "the new metric name appears"
    );
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("new parameters rejected"), "{log}");
    assert!(log.contains("new parameters applied"), "{log}");

    // The state moved to the new instance: no window is emitted twice.
    let mut minutes: Vec<(String, String, i64)> = rows()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let d = &v["dimensions"];
            (
                d[0][1].as_str().unwrap().to_string(),
                d[1][1].as_str().unwrap().to_string(),
                v["window_start"].as_i64().unwrap(),
            )
        })
        .collect();
    let n = minutes.len();
    minutes.sort();
    minutes.dedup();
    assert_eq!(minutes.len(), n, "no window emitted twice");
}

#[test]
fn reading_or_rewriting_a_plugin_file_unchanged_hands_on_nothing() {
    use shelfstream::hotswap::{watch, Change, DEBOUNCE};
    if !components_built() {
        return;
    }
    let plugins = plugins_copy();
    let engine = std::sync::Arc::new(shelfstream::plugin::PluginEngine::new(None).unwrap());
    let path = plugins.path().join("revenue-aggregator.wasm");
    let running = engine.load(&path).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let versions = [(running.name.clone(), running.version.clone())].into();
    let _watcher = watch(plugins.path(), engine.clone(), versions, tx).unwrap();
    let quiet = DEBOUNCE * 6;
    let handed_on = |rx: &crossbeam_channel::Receiver<Change>| match rx.recv_timeout(quiet) {
        Ok(Change::Swap(p)) => Some(format!("swap {} {}", p.name, p.version)),
        Ok(Change::Unload(name)) => Some(format!("unload {name}")),
        Ok(Change::Reconfigure(..)) => Some("reconfigure".into()),
        Err(_) => None,
    };

    // Reads (what loading a file does, the watcher's own loads included), then the same bytes
    // written again: the running version, nothing to swap.
    for _ in 0..3 {
        std::fs::read(&path).unwrap();
    }
    std::fs::write(&path, std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(handed_on(&rx), None);

    // A new version is handed on once; the watcher's read of it does not hand it on again.
    let v2 = new_version_of(&path, "v2");
    std::fs::write(plugins.path().join("revenue-aggregator.wasm.tmp"), v2).unwrap();
    std::fs::rename(plugins.path().join("revenue-aggregator.wasm.tmp"), &path).unwrap();
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Change::Swap(p)) => assert_ne!(p.version, running.version),
        _ => panic!("the new version was not handed on"),
    }
    assert_eq!(handed_on(&rx), None);

    // Removed: unloaded. Put back unchanged: handed on again (the pipeline resumes it).
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(handed_on(&rx).as_deref(), Some("unload revenue-aggregator"));
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(handed_on(&rx), Some(s) if s.starts_with("swap revenue-aggregator")));
    assert_eq!(handed_on(&rx), None);
}

#[test]
fn reading_or_resaving_the_config_file_unchanged_applies_nothing() {
    use shelfstream::hotswap::{watch_config, Change, DEBOUNCE};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.toml");
    let shipped = std::fs::read_to_string(repo().join("host/pipeline.toml")).unwrap();
    std::fs::write(&path, &shipped).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let _watcher = watch_config(&path, tx).unwrap();
    // Changes until the watcher is quiet (at most 10: a watcher that feeds itself never is).
    let changes = |rx: &crossbeam_channel::Receiver<Change>| {
        let mut n = 0;
        while let Ok(change) = rx.recv_timeout(DEBOUNCE * 6) {
            assert!(matches!(change, Change::Reconfigure(..)));
            n += 1;
            if n == 10 {
                break;
            }
        }
        n
    };

    // Reads (the watcher reads the file it loads) and a save of the same text: nothing.
    for _ in 0..3 {
        std::fs::read(&path).unwrap();
    }
    std::fs::write(&path, &shipped).unwrap();
    assert_eq!(changes(&rx), 0);

    // An edit: applied once, and the watcher's own read of it does not apply it again.
    let edited = shipped.replace(r#"metric = "sales_1m""#, r#"metric = "sales_per_minute""#);
    assert_ne!(edited, shipped);
    std::fs::write(&path, edited).unwrap();
    assert_eq!(changes(&rx), 1);
}
