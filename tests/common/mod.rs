//! Shared helpers for the integration tests: where the built components are, event builders,
//! running the pipeline in-process; [`services`]: the real servers; [`delivery`]: what the
//! delivery tests look at.
#![allow(dead_code)]

pub mod delivery;
pub mod services;

use std::path::PathBuf;

use shelfstream::plugin::{Event, InventoryUpdate, MetricRow, Sale};

/// Whether the plugin components and test fixtures are built (`plugins/build.sh --fixtures`).
/// Without them a plain `cargo test` skips the tests that load them and says so on the
/// terminal; under tests/run.sh (`SHELFSTREAM_TEST_ALL=1`) nothing is skipped, and a missing
/// component fails the test that needs it.
pub fn components_built() -> bool {
    let built = ["revenue-aggregator", "sales-cleaner"]
        .iter()
        .all(|p| repo().join("plugins").join(format!("{p}.wasm")).exists())
        && ["misbehave", "malformed"].iter().all(|f| {
            repo()
                .join(format!("tests/fixtures/wasm/{f}.wasm"))
                .exists()
        });
    if built || std::env::var_os("SHELFSTREAM_TEST_ALL").is_some() {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    // Straight to the terminal: the test harness captures print!/eprint! of passing tests.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: the plugin components are not built (plugins/build.sh --fixtures; tests/run.sh builds them)"
    );
    false
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn existing(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: build the components first with `plugins/build.sh --fixtures` (tests/run.sh does)",
        path.display()
    );
    path
}

/// A shipped plugin component, e.g. `plugin("revenue-aggregator")`.
pub fn plugin(name: &str) -> PathBuf {
    existing(repo().join("plugins").join(format!("{name}.wasm")))
}

/// A deliberately bad plugin from `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    existing(
        repo()
            .join("tests/fixtures/wasm")
            .join(format!("{name}.wasm")),
    )
}

/// The same component with a different version hash (an extra custom section, same behaviour).
pub fn new_version_of(path: &std::path::Path, tag: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let name = b"shelfstream-test-version";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    bytes.push(0); // custom section id
    let mut len = payload.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.extend_from_slice(&payload);
    bytes
}

pub const MIN: i64 = 60_000;

pub fn sale(tx: &str, store: &str, product: &str, quantity: i32, price: f64, ts: i64) -> Event {
    Event::Sale(Sale {
        transaction_id: tx.into(),
        line: 0,
        store_id: store.into(),
        product_id: product.into(),
        category: None,
        quantity,
        unit_price: price,
        total_amount: (price * quantity as f64 * 100.0).round() / 100.0,
        customer_id: None,
        payment_method: "card".into(),
        timestamp: ts,
    })
}

pub fn stock(store: &str, product: &str, level: i32, capacity: i32, ts: i64) -> Event {
    Event::Inventory(InventoryUpdate {
        update_id: format!("U{ts}"),
        store_id: store.into(),
        product_id: product.into(),
        quantity_change: 0,
        stock_level: level,
        capacity,
        reason: "sale".into(),
        timestamp: ts,
    })
}

pub fn units_row(store: &str, product: &str, units: f64, start: i64) -> Event {
    Event::Metric(MetricRow {
        metric: "sales_1m".into(),
        window_start: start,
        window_end: start + MIN,
        dimensions: vec![
            ("store_id".into(), store.into()),
            ("product_id".into(), product.into()),
        ],
        values: vec![("units_sold".into(), units)],
    })
}

/// The value column `name` of a metric row.
pub fn value(event: &Event, name: &str) -> f64 {
    let Event::Metric(m) = event else {
        panic!("not a metric row: {event:?}")
    };
    m.values
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no {name} in {m:?}"))
        .1
}

/// The shipped pipeline (host/pipeline.toml) with a fixed simulator start, so runs compare.
pub fn pipeline_config(
    data_dir: &std::path::Path,
    rate: f64,
    max_events: Option<u64>,
    close_at_end: bool,
) -> shelfstream::config::PipelineConfig {
    use shelfstream::config::PipelineConfig;
    use shelfstream::sources::SourceConfig;
    let mut c = PipelineConfig::parse(shelfstream::config::DEFAULT_PIPELINE).unwrap();
    c.runtime.data_dir = data_dir.to_path_buf();
    c.runtime.close_windows_at_end = close_at_end;
    for s in &mut c.sources {
        if let SourceConfig::Simulator(sim) = s {
            sim.rate = rate;
            sim.max_events = max_events;
            sim.start = Some("2026-11-01T08:00:00Z".into());
            sim.stores = 4;
            sim.products = 30;
        }
    }
    c
}

/// A copy of the shipped plugins in a fresh folder (tests that change plugin files).
pub fn plugins_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("plugins")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "wasm") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

/// The lines of an output stream without provenance fields (stage, plugin, version, partition),
/// sorted: comparable across runs.
pub fn stream_rows(data_dir: &std::path::Path, stream: &str) -> Vec<String> {
    let path = data_dir.join("out").join(format!("{stream}.ndjson"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut rows: Vec<String> = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let m = v.as_object_mut().unwrap();
            m.remove("_plugin_version");
            m.remove("_stage");
            m.remove("_plugin");
            m.remove("_partition");
            v.to_string()
        })
        .collect();
    rows.sort();
    rows
}

/// Two sorted row lists are equal; on a difference, the counts and the first rows only one side
/// has (a whole stream in a failure message is unreadable).
pub fn assert_same_rows(got: &[String], want: &[String], what: &str) {
    if got == want {
        return;
    }
    let diff = |a: &[String], b: &[String]| -> Vec<String> {
        let mut b: std::collections::BTreeMap<&String, usize> =
            b.iter().fold(Default::default(), |mut m, r| {
                *m.entry(r).or_default() += 1;
                m
            });
        a.iter()
            .filter(|r| match b.get_mut(r) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    false
                }
                _ => true,
            })
            .cloned()
            .collect()
    };
    let (extra, missing) = (diff(got, want), diff(want, got));
    panic!(
        "{what}: {} rows, expected {}; {} extra (first: {:?}), {} missing (first: {:?})",
        got.len(),
        want.len(),
        extra.len(),
        extra.iter().take(3).collect::<Vec<_>>(),
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>()
    );
}

/// The plugin versions that produced a stream.
pub fn stream_versions(
    data_dir: &std::path::Path,
    stream: &str,
) -> std::collections::BTreeSet<String> {
    let path = data_dir.join("out").join(format!("{stream}.ndjson"));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["_plugin_version"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Run the pipeline in-process to completion.
pub fn run_to_end(
    plugins: &std::path::Path,
    config: shelfstream::config::PipelineConfig,
    watch: bool,
) -> shelfstream::runtime::RunReport {
    let opts = shelfstream::runtime::RunOptions {
        plugins_dir: plugins.to_path_buf(),
        config,
        watch,
        config_path: None,
        summary: false,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(shelfstream::runtime::run(opts, std::future::pending()))
        .unwrap()
}

/// Wait up to `secs` for `cond`.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// `(status, content type, body)` of a GET (with a bearer token), or `None` when nothing
/// answers.
pub fn http_get(url: &str, token: Option<&str>) -> Option<(u16, String, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut request = reqwest::Client::new().get(url);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let r = (request
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await)
            .ok()?;
        let status = r.status().as_u16();
        let kind = (r.headers().get("content-type"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Some((status, kind, r.text().await.ok()?))
    })
}
