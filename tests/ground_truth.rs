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
use shelfstream::sim::{GroundTruth, IncidentKind, Simulator};

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

/// Precision and recall of `alerts` against incidents of `kind`; `matches` says whether an
/// alert is about an incident (same shelf is checked here).
fn score(
    truth: &GroundTruth,
    kind: IncidentKind,
    alerts: &[Alert],
    matches: impl Fn(&Alert, &shelfstream::sim::Incident) -> bool,
) -> (f64, f64, usize, usize) {
    let incidents: Vec<_> = truth.of_kind(kind).collect();
    let same_shelf = |a: &Alert, i: &&shelfstream::sim::Incident| {
        a.store_id == i.store_id && a.product_id == i.product_id && matches(a, i)
    };
    let true_alerts = alerts
        .iter()
        .filter(|a| incidents.iter().any(|i| same_shelf(a, i)))
        .count();
    let found = incidents
        .iter()
        .filter(|i| alerts.iter().any(|a| same_shelf(a, i)))
        .count();
    let precision = true_alerts as f64 / alerts.len().max(1) as f64;
    let recall = found as f64 / incidents.len().max(1) as f64;
    (precision, recall, alerts.len(), incidents.len())
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
    let mut truth = sim.ground_truth().clone();
    // Incidents need time to show: a burst its hour, a theft the shelf's next update.
    truth.incidents.retain(|i| i.start < end - 2 * 3_600_000);
    println!(
        "simulated {:.1} days; ground truth: {} incidents",
        (end - start) as f64 / 86_400_000.0,
        truth.incidents.len()
    );

    let mut report = BTreeMap::new();
    let anomalies = alerts_of(&out, "anomaly_alerts");
    report.insert(
        "sales_anomaly",
        score(&truth, IncidentKind::SalesAnomaly, &anomalies, |a, i| {
            a.window_start < i.end && a.window_end > i.start
        }),
    );
    let prices = alerts_of(&out, "price_alerts");
    report.insert(
        "price_anomaly",
        score(&truth, IncidentKind::PriceError, &prices, |a, i| {
            a.timestamp == i.start
        }),
    );
    let out_of_stock: Vec<Alert> = alerts_of(&out, "alerts")
        .into_iter()
        .filter(|a| a.rule == "out_of_stock")
        .collect();
    report.insert(
        "out_of_stock",
        score(&truth, IncidentKind::StockOut, &out_of_stock, |a, i| {
            a.timestamp == i.start
        }),
    );
    let shrinkage = alerts_of(&out, "shrinkage_alerts");
    report.insert(
        "shrinkage",
        score(&truth, IncidentKind::Theft, &shrinkage, |a, i| {
            a.window_start <= i.start && i.start <= a.window_end
        }),
    );
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
