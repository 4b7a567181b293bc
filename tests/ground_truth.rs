//! The exercise suite against the simulator's ground truth: three simulated weeks with injected
//! sales bursts, price errors, theft, promotions, shelves that stop selling and products bought
//! together, through `host run` with the shipped pipeline. Measures each rule's precision and
//! recall (printed; README.md "Exercise suite" quotes them) and asserts floors well below them,
//! so a broken rule fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use shelfstream::config::{PipelineConfig, DEFAULT_PIPELINE};
use shelfstream::pipeline::dead_letter::event_from_json;
use shelfstream::plugin::{Alert, Event, MetricRow};
use shelfstream::sim::SimulatorConfig;
use shelfstream::sim::{score, AlertAt, GroundTruth, IncidentKind, Simulator};

const START: &str = "2026-10-05T00:00:00Z"; // a Monday
const STEPS: u64 = 55_000; // about three simulated weeks at 30 s per step

fn simulator_toml() -> String {
    format!(
        r#"
[[source]]
kind = "simulator"
name = "simulator"
seed = 11
rate = 0
stores = 5
products = 40
time_scale = 30000
malformed_rate = 0.002
duplicate_rate = 0.002
partitions = 3
max_events = {STEPS}
start = "{START}"
sales_anomalies_per_day = 3
price_errors_per_day = 3
thefts_per_day = 3
promotions_per_day = 3
stop_selling_share = 0.03
affinity_pairs = 6
"#
    )
}

fn config_text(data_dir: &std::path::Path) -> String {
    let stages = &DEFAULT_PIPELINE[DEFAULT_PIPELINE.find("[[stage]]").unwrap()..];
    format!(
        "[runtime]\ndata_dir = {:?}\nclose_windows_at_end = true\n{}\n{stages}",
        data_dir.display().to_string(),
        simulator_toml()
    )
}

fn events(data_dir: &std::path::Path, stream: &str) -> Vec<Event> {
    let path = data_dir.join("out").join(format!("{stream}.ndjson"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| event_from_json(l).unwrap())
        .collect()
}

fn alerts_of(data_dir: &std::path::Path, stream: &str) -> Vec<Alert> {
    events(data_dir, stream)
        .into_iter()
        .filter_map(|e| match e {
            Event::Alert(a) => Some(a),
            _ => None,
        })
        .collect()
}

fn metrics_of(data_dir: &std::path::Path, stream: &str) -> Vec<MetricRow> {
    events(data_dir, stream)
        .into_iter()
        .filter_map(|e| match e {
            Event::Metric(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn dim<'a>(m: &'a MetricRow, name: &str) -> &'a str {
    &m.dimensions.iter().find(|(k, _)| k == name).unwrap().1
}

/// `host diff --ground-truth`: the run's outputs against a candidate without its price alerts
/// score both sides as the library does at ClickHouse's second: the candidate finds no price
/// error, the other rules the same.
fn diff_scores_both_sides(out: &std::path::Path, truth: &GroundTruth, alerts: &[AlertAt]) {
    let candidate = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(out.join("out")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "price_alerts.ndjson" {
            std::fs::copy(&path, candidate.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let report_dir = candidate.path().join("report");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
        .arg("diff")
        .arg(out.join("out"))
        .arg(candidate.path())
        .arg("--ground-truth")
        .arg(out.join("ground_truth.json"))
        .arg("--report")
        .arg(&report_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("alert rule vs truth"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report_dir.join("report.json")).unwrap()).unwrap();
    let scores = report["ground_truth"].as_array().unwrap();
    let rules: Vec<&str> = scores.iter().map(|s| s["rule"].as_str().unwrap()).collect();
    assert_eq!(
        rules,
        [
            "out_of_stock",
            "price_anomaly",
            "sales_anomaly",
            "shrinkage"
        ]
    );
    let seconds = score(truth, alerts, 1000);
    for (s, want) in scores.iter().zip(&seconds) {
        let side = |name: &str| -> shelfstream::sim::RuleScore {
            serde_json::from_value(s[name].clone()).unwrap()
        };
        assert_eq!(side("baseline"), *want, "{}", want.rule);
        if want.rule == "price_anomaly" {
            let c = side("candidate");
            assert!(want.found > 0);
            assert_eq!((c.alerts, c.found, c.recall), (0, 0, 0.0));
            assert_eq!(c.incidents, want.incidents);
        } else {
            assert_eq!(side("candidate"), *want);
        }
    }
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(md.contains("## Against the ground truth"), "{md}");
}

#[test]
fn rules_find_what_the_simulator_injected() {
    if !components_built() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let config_path = data.path().join("pipeline.toml");
    std::fs::write(&config_path, config_text(&data.path().join("data"))).unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["run", "--plugins"])
        .arg(repo().join("plugins"))
        .arg("--config")
        .arg(&config_path)
        .args(["--no-watch", "--quiet"])
        .status()
        .unwrap();
    assert!(status.success());
    let out = data.path().join("data");
    // Multi-input stages wait for their slowest input: nothing is late, only bad input is dead.
    let dead = std::fs::read_to_string(out.join("out/dead_letters.ndjson")).unwrap();
    let kinds: BTreeSet<String> = dead
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, BTreeSet::from(["rejected".to_string()]));

    // The same simulation again, in process, for its ground truth.
    let parsed = PipelineConfig::parse(&config_text(&out)).unwrap();
    let shelfstream::sources::SourceConfig::Simulator(sim_config) = &parsed.sources[0] else {
        panic!()
    };
    let sim_config: SimulatorConfig = sim_config.clone();
    let start = humantime::parse_rfc3339(START)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut sim = Simulator::new(&sim_config, start);
    sim.skip(STEPS);
    let end = sim.clock_ms();
    let truth = sim.ground_truth();
    println!(
        "simulated {:.1} days; ground truth: {} incidents",
        (end - start) as f64 / 86_400_000.0,
        truth.incidents.len()
    );

    // Each rule's alerts, wherever its stage writes them, scored as `host diff --ground-truth` does.
    let alerts: Vec<AlertAt> = [
        "anomaly_alerts",
        "price_alerts",
        "alerts",
        "shrinkage_alerts",
    ]
    .iter()
    .flat_map(|stream| alerts_of(&out, stream))
    .map(|a| AlertAt {
        rule: a.rule,
        store_id: a.store_id,
        product_id: a.product_id,
        timestamp: a.timestamp,
        window_start: a.window_start,
        window_end: a.window_end,
    })
    .collect();
    let report: BTreeMap<String, (f64, f64, u64, u64)> = score(&truth, &alerts, 1)
        .into_iter()
        .map(|s| (s.rule, (s.precision, s.recall, s.alerts, s.incidents)))
        .collect();
    // `host run` wrote the same truth beside its outputs, for `host diff --ground-truth`.
    let written: GroundTruth = serde_json::from_slice(
        &std::fs::read(out.join("ground_truth.json")).expect("the run's ground_truth.json"),
    )
    .unwrap();
    assert_eq!(written.until, truth.until);
    assert_eq!(written.incidents, truth.incidents);
    assert_eq!(written.affinities, truth.affinities);
    diff_scores_both_sides(&out, &truth, &alerts);

    for (rule, (p, r, alerts, incidents)) in &report {
        println!(
            "{rule}: precision {p:.2}, recall {r:.2} ({alerts} alerts, {incidents} incidents)"
        );
    }
    let floor = |rule: &str, min_p: f64, min_r: f64| {
        let (p, r, ..) = report[rule];
        assert!(
            p >= min_p && r >= min_r,
            "{rule}: precision {p:.2} (floor {min_p}), recall {r:.2} (floor {min_r})"
        );
    };
    floor("price_anomaly", 0.9, 0.9);
    floor("out_of_stock", 0.9, 0.9);
    floor("shrinkage", 0.9, 0.8);
    floor("sales_anomaly", 0.7, 0.8);

    // Slow movers: shelves that stopped selling a whole lookback (14 days) before the last
    // labelled day are DEAD on it.
    let rows = metrics_of(&out, "slow_movers");
    let last_day = rows
        .iter()
        .map(|m| m.window_end)
        .max()
        .expect("slow-mover rows");
    let dead: BTreeSet<(String, String)> = rows
        .iter()
        .filter(|m| m.window_end == last_day && dim(m, "label") == "DEAD")
        .map(|m| {
            (
                dim(m, "store_id").to_string(),
                dim(m, "product_id").to_string(),
            )
        })
        .collect();
    let stopped: Vec<_> = truth
        .of_kind(IncidentKind::StoppedSelling)
        .filter(|i| i.start <= last_day - 14 * 86_400_000)
        .collect();
    let found = stopped
        .iter()
        .filter(|i| dead.contains(&(i.store_id.clone(), i.product_id.clone())))
        .count();
    let true_dead = dead
        .iter()
        .filter(|(s, p)| {
            truth
                .of_kind(IncidentKind::StoppedSelling)
                .any(|i| &i.store_id == s && &i.product_id == p)
        })
        .count();
    println!("slow movers: {} of {} stopped shelves labelled DEAD; {} of {} DEAD labels are stopped shelves", found, stopped.len(), true_dead, dead.len());
    assert!(!stopped.is_empty() && found as f64 >= 0.8 * stopped.len() as f64);

    // Cross-sell: each injected pair is among the product's top recommendations.
    let recs = metrics_of(&out, "cross_sell");
    let last = recs
        .iter()
        .map(|m| m.window_end)
        .max()
        .expect("cross-sell rows");
    let top: BTreeSet<(String, String)> = recs
        .iter()
        .filter(|m| m.window_end == last)
        .map(|m| {
            (
                dim(m, "product_id").to_string(),
                dim(m, "recommended_product_id").to_string(),
            )
        })
        .collect();
    let hits = truth
        .affinities
        .iter()
        .filter(|pair| top.contains(*pair))
        .count();
    println!(
        "cross-sell: {hits} of {} injected pairs in the top 3",
        truth.affinities.len()
    );
    assert!(hits as f64 >= 0.8 * truth.affinities.len() as f64);

    // Forecasts exist for the last week, with intervals around the prediction.
    let forecasts = events(&out, "daily_forecasts");
    assert!(forecasts.iter().any(|e| matches!(e, Event::Forecast(f) if f.lower <= f.predicted && f.predicted <= f.upper && f.upper > f.lower)));
    assert!(!metrics_of(&out, "stock_plans").is_empty());
}
