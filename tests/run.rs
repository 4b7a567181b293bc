//! `host run` end to end: the embedded default writes every stream; a restart (clean, or after
//! SIGTERM) resumes sources and window state so the combined output equals one uninterrupted
//! run; `host test-plugin` prints what a plugin emits.

mod common;

use std::process::{Command, Stdio};

use common::*;
use shelfstream::checkpoint::SavedState;

fn host() -> Command {
    Command::new(env!("CARGO_BIN_EXE_host"))
}

#[test]
fn the_default_run_writes_every_stream_and_dead_letters() {
    if !components_built() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let status = host()
        .args(["run", "--plugins"])
        .arg(repo().join("plugins"))
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "--rate",
            "0",
            "--max-events",
            "20000",
            "--no-watch",
            "--quiet",
            "--close-windows-at-end",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    for stream in [
        "sales",
        "inventory",
        "sales_1m",
        "inventory_1m",
        "alerts",
        "forecasts",
        "dead_letters",
    ] {
        let rows = stream_rows(data.path(), stream);
        assert!(!rows.is_empty(), "{stream} is empty");
    }
    let dead = stream_rows(data.path(), "dead_letters");
    assert!(
        dead.iter()
            .all(|d| d.contains("\"kind\":\"rejected\"") && d.contains("\"source\"")),
        "{dead:?}"
    );
}

#[test]
fn a_restart_resumes_where_the_last_run_stopped() {
    if !components_built() {
        return;
    }
    let plugins = repo().join("plugins");
    let once = tempfile::tempdir().unwrap();
    run_to_end(
        &plugins,
        pipeline_config(once.path(), 0.0, Some(12_000), true),
        false,
    );

    let twice = tempfile::tempdir().unwrap();
    run_to_end(
        &plugins,
        pipeline_config(twice.path(), 0.0, Some(5_000), false),
        false,
    );
    let saved = SavedState::load(twice.path()).unwrap();
    assert_eq!(saved.sources["simulator"], 5_000);
    assert!(
        !saved.stages["sales-per-minute"].state.is_empty(),
        "open windows are saved"
    );
    run_to_end(
        &plugins,
        pipeline_config(twice.path(), 0.0, Some(12_000), true),
        false,
    );

    for stream in ["sales", "sales_1m", "alerts", "forecasts", "dead_letters"] {
        assert_eq!(
            stream_rows(twice.path(), stream),
            stream_rows(once.path(), stream),
            "{stream}"
        );
    }
}

#[test]
fn sigterm_drains_saves_state_and_the_next_run_completes_the_same_output() {
    if !components_built() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let config_path = data.path().join("pipeline.toml");
    let config = std::fs::read_to_string(repo().join("host/pipeline.toml"))
        .unwrap()
        .replace(
            "# start = \"2026-11-22T00:00:00Z\"",
            "start = \"2026-11-01T08:00:00Z\"",
        )
        .replace("rate = 2000 ", "rate = 4000 ");
    std::fs::write(&config_path, config).unwrap();
    let mut child = host()
        .args(["run", "--no-watch", "--quiet", "--plugins"])
        .arg(repo().join("plugins"))
        .arg("--config")
        .arg(&config_path)
        .arg("--data-dir")
        .arg(data.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sales_1m = data.path().join("out/sales_1m.ndjson");
    assert!(wait_for(60, || std::fs::metadata(&sales_1m)
        .map(|m| m.len() > 0)
        .unwrap_or(false)));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "a clean exit after SIGTERM: {status:?}");
    let saved = SavedState::load(data.path()).unwrap();
    let position = saved.sources["simulator"];
    assert!(position > 0);
    let stages = shelfstream::config::PipelineConfig::parse(shelfstream::config::DEFAULT_PIPELINE)
        .unwrap()
        .stages
        .len();
    assert_eq!(saved.stages.len(), stages, "every stage's state is saved");

    // Finish the same input in a second run, and compare with one run over all of it.
    let total = position + 3_000;
    let resume = host()
        .args([
            "run",
            "--no-watch",
            "--quiet",
            "--rate",
            "4000",
            "--close-windows-at-end",
            "--plugins",
        ])
        .arg(repo().join("plugins"))
        .arg("--config")
        .arg(&config_path)
        .arg("--data-dir")
        .arg(data.path())
        .args(["--max-events", &total.to_string()])
        .status()
        .unwrap();
    assert!(resume.success());
    let once = tempfile::tempdir().unwrap();
    let mut c = pipeline_config(once.path(), 4_000.0, Some(total), true);
    for s in &mut c.sources {
        if let shelfstream::sources::SourceConfig::Simulator(sim) = s {
            sim.stores = 10;
            sim.products = 100;
        }
    }
    let started = std::time::Instant::now();
    run_to_end(&repo().join("plugins"), c, false);
    eprintln!("reference run took {:?}", started.elapsed());
    for stream in [
        "sales",
        "sales_1m",
        "sales_1h",
        "alerts",
        "price_alerts",
        "shrinkage_alerts",
        "forecasts",
        "customers",
    ] {
        assert_eq!(
            stream_rows(data.path(), stream),
            stream_rows(once.path(), stream),
            "{stream}"
        );
    }
}

#[test]
fn test_plugin_prints_outputs_dead_letters_and_state() {
    if !components_built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sales.ndjson");
    std::fs::write(
        &input,
        concat!(
            r#"{"transaction_id":"T1","store_id":"S1","timestamp":"2026-11-22T10:00:00Z","items":[{"product_id":"SKU-1","quantity":2,"unit_price":1.25}]}"#,
            "\n",
            r#"{"transaction_id":"T2","store_id":"S1","timestamp":"2026-11-22T10:00:00Z","items":[{"product_id":"SKU-1","quantity":0,"unit_price":1.25}]}"#,
            "\n"
        ),
    )
    .unwrap();
    let out = host()
        .args(["test-plugin"])
        .arg(plugin("sales-cleaner"))
        .arg("--input")
        .arg(&input)
        .args(["--config", "max_quantity=10"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["kind"], "sale");
    assert_eq!(lines[0]["total_amount"], 2.5);
    assert!(lines[1]["dead_letter"]["reason"]
        .as_str()
        .unwrap()
        .contains("quantity"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 events emitted, 1 dead letters"));

    // Bad parameters are shown, not ignored.
    let out = host()
        .args(["test-plugin"])
        .arg(plugin("sales-cleaner"))
        .arg("--input")
        .arg(&input)
        .args(["--config", "max_qty=10"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown parameter(s) max_qty"));
}

#[test]
fn ndjson_from_stdin_runs_through_the_chain() {
    if !components_built() {
        return;
    }
    use std::io::Write;
    let data = tempfile::tempdir().unwrap();
    let mut child = host()
        .args([
            "run",
            "--no-watch",
            "--quiet",
            "--close-windows-at-end",
            "--input",
            "-",
            "--plugins",
        ])
        .arg(repo().join("plugins"))
        .arg("--data-dir")
        .arg(data.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for (i, ts) in ["10:00:05", "10:00:30", "10:01:10"].iter().enumerate() {
        writeln!(
            stdin,
            r#"{{"transaction_id":"T{i}","store_id":"S001","timestamp":"2026-11-22T{ts}Z","items":[{{"product_id":"SKU-00001","quantity":2,"unit_price":1.5}}]}}"#
        )
        .unwrap();
    }
    writeln!(stdin, "not json").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_eq!(stream_rows(data.path(), "sales").len(), 3);
    let minutes = stream_rows(data.path(), "sales_1m");
    assert_eq!(minutes.len(), 2, "{minutes:?}");
    assert!(
        minutes
            .iter()
            .any(|m| m
                .contains(r#"["total_revenue",6.0],["units_sold",4.0],["transaction_count",2.0]"#)),
        "{minutes:?}"
    );
    let dead = stream_rows(data.path(), "dead_letters");
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].contains("invalid JSON") && dead[0].contains(r#""offset":3"#),
        "{dead:?}"
    );
}
