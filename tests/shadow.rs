//! Shadow stages: a candidate beside a live stage on the same input, its outputs only in its
//! own folder, a running divergence report that agrees with an offline diff of the two output
//! sets; a trapping shadow leaves every live output unchanged; promotion by a config change
//! while events flow hands the stage the shadow's warm state and loses or doubles nothing.

mod common;

use std::path::Path;
use std::process::Command;

use common::delivery::*;
use common::*;
use serde_json::Value;
use shelfstream::config::{PipelineConfig, ShadowConfig, StageConfig};

fn shadow(stage: &str, plugin: &str, name: &str, params: &[(&str, toml::Value)]) -> ShadowConfig {
    ShadowConfig {
        stage: stage.into(),
        plugin: plugin.into(),
        name: Some(name.into()),
        params: (!params.is_empty()).then(|| {
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        }),
    }
}

/// The shipped pipeline on 3,000 simulator steps, with a pass-through rule on the sales (the
/// misbehave fixture, never triggered) so a trapping shadow has a live stage to sit beside.
fn config(data: &Path) -> PipelineConfig {
    let mut c = pipeline_config(data, 0.0, Some(3_000), true);
    c.stages.push(StageConfig {
        name: "pass-sales".into(),
        plugin: "misbehave".into(),
        input: vec!["sales".into()],
        output: "sales_copy".into(),
        params: Default::default(),
        memory_limit: None,
        deadline: None,
        allowed_lateness: None,
    });
    c
}

fn plugins_with_fixtures() -> tempfile::TempDir {
    let dir = plugins_copy();
    std::fs::copy(fixture("misbehave"), dir.path().join("misbehave.wasm")).unwrap();
    dir
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn shadows_write_only_their_own_outputs_report_what_an_offline_diff_finds_and_a_trap_changes_nothing_live(
) {
    if !components_built() {
        return;
    }
    let plugins = plugins_with_fixtures();
    let reference = tempfile::tempdir().unwrap();
    run_to_end(plugins.path(), config(reference.path()), false);

    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path());
    c.shadows = vec![
        shadow("sales-spikes", "sales-spike-alert", "same-spikes", &[]),
        shadow(
            "sales-spikes",
            "sales-spike-alert",
            "eager-spikes",
            &[
                ("factor", 2.0.into()),
                ("min_units", 5.into()),
                ("alpha", 0.2.into()),
            ],
        ),
        shadow(
            "pass-sales",
            "misbehave",
            "trapping",
            &[("mode", "trap".into()), ("trigger", "SKU-00001".into())],
        ),
    ];
    let report = run_to_end(plugins.path(), c, false);

    // Every live output is the run without shadows', and no shadow wrote into it.
    let streams: Vec<String> = std::fs::read_dir(reference.path().join("out"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(streams.len() > 10);
    for stream in &streams {
        assert_eq!(
            stream_rows(data.path(), stream),
            stream_rows(reference.path(), stream),
            "{stream}: the shadows changed nothing live"
        );
    }
    assert_eq!(report.failures, 0, "no live stage failed");
    let shadow_dir = data.path().join("shadow");

    // The trapping shadow failed on its own: its dead letters are in its folder only.
    let trapped = lines(&shadow_dir.join("trapping/dead_letters.ndjson"));
    assert!(!trapped.is_empty());
    assert!(
        trapped
            .iter()
            .any(|d| d["reason"].as_str().unwrap().contains("trap on purpose")),
        "{:?}",
        trapped[0]
    );

    // Reports: the same rule agrees everywhere; the eager one adds alerts, exactly those an
    // offline diff of the two output files finds.
    let out = Command::new(host_binary())
        .args(["shadow-report", "--json", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let reports: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |n: &str| {
        reports
            .iter()
            .find(|r| r["shadow"] == n)
            .unwrap_or_else(|| panic!("{n}: {reports:?}"))
            .clone()
    };
    let same = by_name("same-spikes");
    assert!(same["same"].as_u64().unwrap() > 0);
    assert_eq!(
        (
            same["agreement"].as_f64(),
            same["changed"].as_u64(),
            same["only_live"].as_u64(),
            same["only_shadow"].as_u64()
        ),
        (Some(1.0), Some(0), Some(0), Some(0)),
        "{same}"
    );
    let live_alerts = lines(&data.path().join("out/sales_alerts.ndjson"));
    let eager_alerts = lines(&shadow_dir.join("eager-spikes/sales_alerts.ndjson"));
    assert!(
        eager_alerts.len() > live_alerts.len(),
        "{} vs {}",
        eager_alerts.len(),
        live_alerts.len()
    );
    assert!(eager_alerts.iter().all(|a| a["_stage"] == "eager-spikes"));
    let key = |a: &Value| {
        format!(
            "{}|{}|{}|{}",
            a["rule"], a["store_id"], a["product_id"], a["timestamp"]
        )
    };
    let live_keys: std::collections::BTreeSet<String> = live_alerts.iter().map(key).collect();
    let eager_keys: std::collections::BTreeSet<String> = eager_alerts.iter().map(key).collect();
    let eager = by_name("eager-spikes");
    let spike = &eager["alerts"]["sales_spike"];
    assert_eq!(
        spike["added"].as_u64().unwrap() as usize,
        eager_keys.difference(&live_keys).count(),
        "{eager}"
    );
    assert_eq!(
        spike["removed"].as_u64().unwrap() as usize,
        live_keys.difference(&eager_keys).count(),
        "{eager}"
    );
    assert_eq!(
        eager["live_rows"].as_u64().unwrap() as usize,
        live_alerts.len()
    );
    assert_eq!(
        eager["shadow_rows"].as_u64().unwrap() as usize,
        eager_alerts.len()
    );
    let text = Command::new(host_binary())
        .args(["shadow-report", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("eager-spikes") && text.contains("agreement 100.00%"),
        "{text}"
    );
}

/// host/pipeline.toml with a fixed, paced simulator and `extra` appended.
fn config_text(rate: u32, steps: u64, sales_per_minute_plugin: &str, extra: &str) -> String {
    let base = std::fs::read_to_string(repo().join("host/pipeline.toml")).unwrap();
    base.replace(
        "seed = 42\nrate = 2000",
        &format!(
            "seed = 42\nmax_events = {steps}\nstart = \"2026-11-01T08:00:00Z\"\nrate = {rate}"
        ),
    )
    .replace(
        "name = \"sales-per-minute\"\nplugin = \"revenue-aggregator\"",
        &format!("name = \"sales-per-minute\"\nplugin = \"{sales_per_minute_plugin}\""),
    ) + extra
}

#[test]
fn promoting_a_shadow_while_events_flow_keeps_its_state_and_loses_or_doubles_nothing() {
    if !components_built() {
        return;
    }
    let steps = 24_000;
    let plugins = plugins_copy();
    let v2 = plugins.path().join("revenue-aggregator-v2.wasm");
    std::fs::write(&v2, new_version_of(&plugin("revenue-aggregator"), "v2")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = common::services::free_port();
    let http = format!("127.0.0.1:{port}");
    let run = |config: &Path, data: &Path, http: &str| {
        let mut cmd = Command::new(host_binary());
        cmd.args([
            "run",
            "--quiet",
            "--close-windows-at-end",
            "--http",
            http,
            "--plugins",
        ])
        .arg(plugins.path())
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .stderr(std::fs::File::create(data.with_extension("log")).unwrap());
        cmd
    };
    // Reference: the same input (the rate sets the simulated time per step), no change.
    let reference = dir.path().join("reference");
    let reference_config = dir.path().join("reference.toml");
    std::fs::write(
        &reference_config,
        config_text(4_000, steps, "revenue-aggregator", ""),
    )
    .unwrap();
    assert!(run(&reference_config, &reference, "off")
        .arg("--no-watch")
        .status()
        .unwrap()
        .success());

    // Live: the candidate shadows sales-per-minute; a few seconds in, the config promotes it.
    let data = dir.path().join("data");
    let config = dir.path().join("pipeline.toml");
    let shadowed = "\n[[shadow]]\nname = \"v2\"\nstage = \"sales-per-minute\"\nplugin = \"revenue-aggregator-v2\"\n";
    std::fs::write(
        &config,
        config_text(4_000, steps, "revenue-aggregator", shadowed),
    )
    .unwrap();
    let mut host = run(&config, &data, &http).spawn().unwrap();
    let log = data.with_extension("log");
    assert!(wait_for(60, || std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("first batch")
        || data.join("shadow/v2/report.json").exists()));
    std::thread::sleep(std::time::Duration::from_secs(3));
    // The shadow's comparison is on /metrics and /api/status while it runs.
    let (_, _, metrics) = http_get(&format!("http://{http}/metrics"), None).expect("metrics");
    let gauge = |name: &str| -> f64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(
        gauge("shelfstream_shadow_agreement{shadow=\"v2\",stage=\"sales-per-minute\"}"),
        1.0
    );
    assert!(
        gauge("shelfstream_shadow_rows{shadow=\"v2\",stage=\"sales-per-minute\",outcome=\"same\"}")
            > 0.0,
        "{metrics}"
    );
    let (_, _, status) = http_get(&format!("http://{http}/api/status"), None).expect("status");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["shadows"][0]["shadow"], "v2", "{status}");
    std::fs::write(
        &config,
        config_text(4_000, steps, "revenue-aggregator-v2", ""),
    )
    .unwrap();
    assert!(
        host.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("shadow promoted"), "{text}");

    // Before the promotion the shadow agreed with the live stage row for row.
    let report: Value =
        serde_json::from_slice(&std::fs::read(data.join("shadow/v2/report.json")).unwrap())
            .unwrap();
    assert!(report["same"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        (report["changed"].as_u64(), report["only_shadow"].as_u64()),
        (Some(0), Some(0)),
        "{report}"
    );

    // Both versions wrote windows, and together exactly the reference's: the promoted stage
    // carried the shadow's open windows (a cold start would have lost their first part).
    let rows = lines(&data.join("out/sales_1m.ndjson"));
    let versions: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r["_plugin_version"].as_str().unwrap())
        .collect();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(
        stream_rows(&data, "sales_1m"),
        stream_rows(&reference, "sales_1m"),
        "nothing lost or doubled across the promotion"
    );
    for stream in ["sales_1h", "sales_alerts", "sales_daily_store"] {
        assert_eq!(
            stream_rows(&data, stream),
            stream_rows(&reference, stream),
            "{stream}"
        );
    }
}

/// (rule, store, product, time in s) of each alert line in a file.
fn alert_ids(path: &Path) -> std::collections::BTreeSet<(String, String, String, i64)> {
    lines(path)
        .iter()
        .filter(|a| a["kind"] == "alert")
        .map(|a| {
            (
                a["rule"].as_str().unwrap().to_string(),
                a["store_id"].as_str().unwrap().to_string(),
                a["product_id"].as_str().unwrap().to_string(),
                a["timestamp"].as_i64().unwrap() / 1000,
            )
        })
        .collect()
}

#[test]
#[ignore = "needs tansu, s3s-fs and ClickHouse: run tests/run.sh"]
fn shadow_rows_go_to_a_clickhouse_database_of_their_own_and_never_to_live_tables_or_topics() {
    use common::services::*;
    let broker = broker();
    let s3 = s3();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let database = format!("shadow_live_{}", std::process::id());
    let config = dir.path().join("pipeline.toml");
    write_config(&config, &broker.address, &s3, &database);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[[shadow]]\nname = \"low-stock-25\"\nstage = \"low-stock\"\nplugin = \"low-stock-alert\"\nparams = { low_pct = 25 }\n");
    std::fs::write(&config, text).unwrap();
    simulate(&broker.address, 12_000, 0);
    let status = host_run(&config, &data, true).status().unwrap();
    assert!(status.success(), "host run: {}", log_of(&data));

    let diff = |baseline: String, candidate: String, report: &str| -> Value {
        let output = Command::new(env!("CARGO_BIN_EXE_host"))
            .args([
                "diff", &baseline, &candidate, "--report", report, "--config",
            ])
            .arg(&config)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&std::fs::read(dir.path().join(report).join("report.json")).unwrap())
            .unwrap()
    };
    let shadow_dir = data.join("shadow/low-stock-25");
    let shadow_db = format!("{database}_shadow_low_stock_25");
    // The shadow's rows in its own database are its files' rows.
    let r = diff(
        shadow_dir.display().to_string(),
        format!("clickhouse:{shadow_db}"),
        "shadow",
    );
    assert_eq!(r["divergent"], 0, "{r}");
    let alerts = r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "streaming_alerts");
    assert!(alerts.is_some_and(|t| t["same"].as_u64() > Some(0)), "{r}");
    // The live tables hold the live files' rows, nothing else.
    let r = diff(
        data.join("out").display().to_string(),
        format!("clickhouse:{database}"),
        "live",
    );
    assert_eq!(r["divergent"], 0, "{r}");

    // The alerts only the shadow raised are in its database and nowhere live.
    let live = alert_ids(&data.join("out/alerts.ndjson"));
    let only_shadow: Vec<_> = alert_ids(&shadow_dir.join("alerts.ndjson"))
        .into_iter()
        .filter(|a| !live.contains(a))
        .collect();
    assert!(
        !only_shadow.is_empty(),
        "a threshold of 25% alerts on more shelves"
    );
    let rows = |db: &str| -> std::collections::BTreeSet<(String, String, String, i64)> {
        clickhouse_query(db, &format!("SELECT rule, store_id, product_id, toUInt32(alert_time) FROM {db}.streaming_alerts FINAL"))
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f[0].into(), f[1].into(), f[2].into(), f[3].parse().unwrap())
            })
            .collect()
    };
    let (live_rows, shadow_rows) = (rows(&database), rows(&shadow_db));
    for a in &only_shadow {
        assert!(shadow_rows.contains(a) && !live_rows.contains(a), "{a:?}");
    }
    let topic = consume_all(&broker.address, "retail-restock-alerts");
    let live_alerts: usize = std::fs::read_dir(data.join("out"))
        .unwrap()
        .map(|e| {
            lines(&e.unwrap().path())
                .iter()
                .filter(|l| l["kind"] == "alert")
                .count()
        })
        .sum();
    assert_eq!(
        topic.len(),
        live_alerts,
        "the alerts topic has the live alerts only"
    );
    for (_, a) in &topic {
        let id = (
            a["rule"].as_str().unwrap().to_string(),
            a["store_id"].as_str().unwrap().to_string(),
            a["product_id"].as_str().unwrap().to_string(),
            a["timestamp"].as_i64().unwrap() / 1000,
        );
        assert!(!only_shadow.contains(&id), "{a}");
    }
    assert_eq!(
        clickhouse_query(
            &shadow_db,
            &format!("SELECT count() FROM {shadow_db}.fact_sales")
        )
        .trim(),
        "0",
        "the shadow's database holds only what the shadow made"
    );
}
