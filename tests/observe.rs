//! The host as a person or Prometheus sees it: `/metrics` parsed as Prometheus text and checked
//! against `/api/status`, `/healthz` and `/readyz`, `host top`, and the live page in a real
//! browser (Debian's headless Chromium driven through chromedriver), with a hot swap during the
//! test that must show up in the page's history without a reload.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use common::delivery::host_binary;
use common::services::free_port;
use common::{components_built, http_get, new_version_of, plugins_copy, repo, wait_for};
use serde_json::Value;
use sha2::Digest;

/// `host run` reading sales from its stdin (kept open, so the host stays up when idle), with the
/// plugins folder watched and HTTP on a free port.
struct LiveHost {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    plugins: tempfile::TempDir,
    data: tempfile::TempDir,
}

impl LiveHost {
    fn start() -> LiveHost {
        let (plugins, data, port) = (plugins_copy(), tempfile::tempdir().unwrap(), free_port());
        let log = std::fs::File::create(data.path().join("host.log")).unwrap();
        let child = Command::new(host_binary())
            .args(["run", "--quiet", "--input", "-", "--plugins"])
            .arg(plugins.path())
            .arg("--data-dir")
            .arg(data.path())
            .args(["--http", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut host = LiveHost {
            stdin: None,
            child,
            port,
            plugins,
            data,
        };
        host.stdin = host.child.stdin.take();
        assert!(
            wait_for(60, || http_get(&host.url("/healthz"), None)
                .is_some_and(|r| r.0 == 200)),
            "the host did not serve /healthz: {}",
            host.log()
        );
        host
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("host.log")).unwrap_or_default()
    }

    fn feed(&mut self, lines: &[String]) {
        let stdin = self.stdin.as_mut().expect("input open");
        for line in lines {
            writeln!(stdin, "{line}").unwrap();
        }
        stdin.flush().unwrap();
    }

    fn status(&self) -> Value {
        let (code, _, body) = http_get(&self.url("/api/status"), None).expect("status answers");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Wait until the host has read `n` records and published a snapshot after that.
    fn wait_records(&self, n: u64) -> Value {
        let mut last = Value::Null;
        let reached = wait_for(60, || {
            last = self.status();
            last["records_in"].as_u64() == Some(n)
        });
        assert!(
            reached,
            "records_in stayed at {} (want {n}): {}",
            last["records_in"],
            self.log()
        );
        // One more snapshot, so counters of the last batch are in it.
        std::thread::sleep(Duration::from_millis(1200));
        self.status()
    }

    /// Install a new version of `plugin` (same code, new hash); returns the version.
    fn swap(&self, plugin: &str) -> String {
        let path = self.plugins.path().join(format!("{plugin}.wasm"));
        let bytes = new_version_of(&path, "observed");
        let digest = sha2::Sha256::digest(&bytes);
        let version: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        let tmp = self.plugins.path().join(format!("{plugin}.wasm.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(tmp, path).unwrap();
        version
    }

    /// Close the input: the host drains, checkpoints and exits.
    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "host failed: {}", self.log());
    }
}

impl Drop for LiveHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` sale payloads from the simulator, and `bad` lines the cleaner must reject.
fn sales(n: usize, bad: usize) -> Vec<String> {
    let config = shelfstream::sim::SimulatorConfig {
        malformed_rate: 0.0,
        duplicate_rate: 0.0,
        ..Default::default()
    };
    let mut sim = shelfstream::sim::Simulator::new(&config, 1_793_491_200_000); // 2026-11-01
    let mut out = Vec::new();
    while out.len() < n {
        let step: Vec<_> = sim.step().collect();
        out.extend(
            (step.into_iter())
                .filter(|r| r.topic == shelfstream::topics::SALES)
                .map(|r| String::from_utf8(r.payload).unwrap()),
        );
    }
    out.truncate(n);
    out.extend((0..bad).map(|i| format!("{{\"not a sale\": {i}}}")));
    out
}

/// The samples of one metric as (labels, value).
fn samples<'a>(
    scrape: &'a prometheus_parse::Scrape,
    name: &str,
) -> Vec<(&'a prometheus_parse::Labels, f64)> {
    (scrape.samples.iter())
        .filter(|s| s.metric == name)
        .map(|s| {
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            (&s.labels, v)
        })
        .collect()
}

/// A metric summed over series, per value of `label`.
fn by_label(scrape: &prometheus_parse::Scrape, name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (labels, v) in samples(scrape, name) {
        *out.entry(labels.get(label).unwrap_or("").to_string())
            .or_default() += v;
    }
    out
}

fn scrape(host: &LiveHost) -> prometheus_parse::Scrape {
    let (code, kind, body) = http_get(&host.url("/metrics"), None).expect("metrics answer");
    assert_eq!(code, 200);
    assert!(
        kind.starts_with("text/plain; version=0.0.4"),
        "content type {kind}"
    );
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text")
}

#[test]
fn metrics_parse_as_prometheus_text_and_agree_with_the_status_and_top() {
    if !components_built() {
        return;
    }
    let mut host = LiveHost::start();
    host.feed(&sales(3000, 7));
    let status = host.wait_records(3007);
    let m = scrape(&host);

    assert_eq!(samples(&m, "shelfstream_records_in_total")[0].1, 3007.0);
    let events_in = by_label(&m, "shelfstream_stage_events_in_total", "stage");
    let events_out = by_label(&m, "shelfstream_stage_events_out_total", "stage");
    let stages = status["stages"].as_array().unwrap();
    assert!(stages.len() >= 8, "the sales chain's stages: {stages:?}");
    for s in stages {
        let name = s["name"].as_str().unwrap();
        assert_eq!(
            events_in[name],
            s["events_in"].as_f64().unwrap(),
            "events in of {name}"
        );
        assert_eq!(
            events_out[name],
            s["events_out"].as_f64().unwrap(),
            "events out of {name}"
        );
    }
    assert_eq!(events_in["clean-sales"], 3007.0);

    // Dead letters by reason: the seven bad lines, rejected by the cleaner.
    let rejected: f64 = (samples(&m, "shelfstream_stage_dead_letters_total").into_iter())
        .filter(|(l, _)| {
            l.get("stage") == Some("clean-sales") && l.get("reason") == Some("rejected")
        })
        .map(|(_, v)| v)
        .sum();
    assert_eq!(rejected, 7.0);

    // The call histogram counts one call per batch.
    let histogram = (m.samples.iter())
        .find(|s| {
            s.metric == "shelfstream_stage_call_duration_seconds"
                && s.labels.get("stage") == Some("clean-sales")
        })
        .expect("call duration of clean-sales");
    let prometheus_parse::Value::Histogram(buckets) = &histogram.value else {
        panic!("not a histogram: {histogram:?}");
    };
    let batches = by_label(&m, "shelfstream_stage_batches_total", "stage")["clean-sales"];
    assert_eq!(buckets.last().unwrap().count, batches);
    assert!(
        buckets.windows(2).all(|w| w[0].count <= w[1].count),
        "cumulative buckets"
    );

    // Every stage series names its plugin version; the sink of this run is the files.
    for (labels, _) in samples(&m, "shelfstream_stage_events_in_total") {
        assert_eq!(labels.get("version").map(str::len), Some(12), "{labels:?}");
    }
    assert!(by_label(&m, "shelfstream_sink_queue_depth", "sink").contains_key("files"));

    let (ready, _, why) = http_get(&host.url("/readyz"), None).unwrap();
    assert_eq!(ready, 200, "{why}");

    // host top, once, shows the same stages and the record count.
    let top = Command::new(host_binary())
        .args(["top", "--once", "--url", &host.url("")])
        .env("COLUMNS", "200")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(
        top.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&top.stderr)
    );
    assert!(text.contains("3007 records"), "{text}");
    let row = (text.lines())
        .find(|l| l.starts_with("clean-sales "))
        .expect("clean-sales in top");
    assert_eq!(row.split_whitespace().nth(3), Some("3007"), "{row}");

    // A hot swap is a new series with its own version; the old version's counts stay.
    let old = stages
        .iter()
        .find(|s| s["name"] == "sales-per-minute")
        .unwrap()["version"]
        .clone();
    let new = host.swap("revenue-aggregator");
    assert!(
        wait_for(30, || {
            let h = host.status()["history"].clone();
            h.as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "hot_swap" && e["version"] == new.as_str())
        }),
        "no hot swap in the history: {}",
        host.log()
    );
    host.feed(&sales(3500, 0)[3000..]);
    host.wait_records(3507);
    let m = scrape(&host);
    let versions: BTreeMap<String, f64> = (samples(&m, "shelfstream_stage_events_in_total")
        .into_iter())
    .filter(|(l, _)| l.get("stage") == Some("sales-per-minute"))
    .map(|(l, v)| (l.get("version").unwrap().to_string(), v))
    .collect();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(
        versions[old.as_str().unwrap()],
        events_in["sales-per-minute"]
    );
    assert!(versions[&new] > 0.0, "{versions:?}");
    let swaps = (samples(&m, "shelfstream_stage_hot_swaps_total").into_iter())
        .filter(|(l, _)| {
            l.get("stage") == Some("sales-per-minute") && l.get("version") == Some(new.as_str())
        })
        .map(|(_, v)| v)
        .sum::<f64>();
    assert_eq!(swaps, 1.0);
    host.finish();
}

/// chromedriver for the browser test, on a free port; killed on drop.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Option<Driver> {
    let installed = ["/usr/bin/chromedriver", "/usr/bin/chromium"]
        .iter()
        .all(|p| std::path::Path::new(p).exists());
    if !installed {
        assert!(
            std::env::var_os("SHELFSTREAM_TEST_ALL").is_none(),
            "chromium and chromedriver are missing (tests/services/install.sh browser installs them)"
        );
        eprintln!("skipped: no chromium/chromedriver (tests/services/install.sh browser)");
        return None;
    }
    let port = free_port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = wait_for(20, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "chromedriver did not start");
    Some(Driver(child, port))
}

#[test]
fn the_live_page_shows_what_metrics_say_and_a_hot_swap_without_a_reload() {
    if !components_built() {
        return;
    }
    let Some(driver) = chromedriver() else {
        return;
    };
    let mut host = LiveHost::start();
    host.feed(&sales(2000, 3));
    host.wait_records(2003);
    // The host is idle now: what the page shows must be these numbers.
    let m = scrape(&host);
    let events_in = by_label(&m, "shelfstream_stage_events_in_total", "stage");
    let dead = by_label(&m, "shelfstream_stage_dead_letters_total", "stage");
    let profile = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use fantoccini::{ClientBuilder, Locator};
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--no-first-run", "--window-size=1400,1900", format!("--user-data-dir={}", profile.path().display())],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let browser = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.1))
            .await
            .expect("a chromedriver session");
        browser.goto(&host.url("/")).await.unwrap();
        // The page fills itself from /api/status.
        let cell = |stage: &'static str, field: &'static str| {
            let browser = browser.clone();
            async move {
                let css = format!("tr[data-stage='{stage}'] td[data-field='{field}']");
                browser.wait().for_element(Locator::Css(&css)).await.unwrap().text().await.unwrap()
            }
        };
        let records = browser.wait().for_element(Locator::Id("records-in")).await.unwrap();
        for _ in 0..50 {
            if records.text().await.unwrap() != "-" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for stage in ["clean-sales", "sales-per-minute", "sales-spikes"] {
            assert_eq!(cell(stage, "events_in").await, format!("{}", events_in[stage]), "{stage} events in");
            assert_eq!(cell(stage, "dead_letters").await, format!("{}", dead[stage]), "{stage} dead letters");
        }
        assert_eq!(records.text().await.unwrap(), "2,003");
        let version = cell("sales-per-minute", "version").await;
        let graph = browser.find_all(Locator::Css("#graph g.node")).await.unwrap();
        assert!(graph.len() >= 10, "graph nodes: {}", graph.len());

        // A hot swap while the page is open: it appears without a reload.
        let new = host.swap("revenue-aggregator");
        let css = format!("#history li[data-kind='hot_swap'][data-version='{new}']");
        let entry = (browser.wait().at_most(Duration::from_secs(30)))
            .for_element(Locator::Css(&css))
            .await
            .unwrap_or_else(|e| panic!("no hot swap in the page's history: {e}\n{}", host.log()));
        let text = entry.text().await.unwrap();
        assert!(text.contains("sales-per-minute") || text.contains("revenue-aggregator"), "{text}");
        assert!(text.contains(&format!("was {version}")), "{text}");
        for _ in 0..50 {
            if cell("sales-per-minute", "version").await == new {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(cell("sales-per-minute", "version").await, new);

        let png = browser.screenshot().await.unwrap();
        let artifacts = repo().join("target/test-artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        std::fs::write(artifacts.join("live-page.png"), &png).unwrap();
        browser.close().await.unwrap();
    });
    host.finish();
}

/// Every metric family the host can export: a snapshot with every section filled, rendered.
fn exported_families() -> std::collections::BTreeSet<String> {
    use shelfstream::observe::*;
    let live = Live {
        series: vec![StageSeries::default()],
        partitions: vec![PartitionLive {
            high_watermark: Some(1),
            lag: Some(1),
            watermark_ms: Some(1),
            checkpoint_age_secs: Some(1.0),
            checkpoint_duration_secs: Some(1.0),
            ..Default::default()
        }],
        sinks: vec![SinkReading::default()],
        checkpoints: CheckpointLive {
            count: 1,
            last_age_secs: Some(1.0),
            last_duration_secs: Some(1.0),
        },
        ..Default::default()
    };
    let text = prom::render(std::sync::Arc::new(live));
    (text.lines())
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

#[test]
fn every_prometheus_expression_of_the_dashboards_names_an_exported_metric() {
    let families = exported_families();
    assert!(
        families.contains("shelfstream_stage_call_duration_seconds"),
        "{families:?}"
    );
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("sql/grafana/dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in json["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let Some(expr) = target["expr"].as_str() else {
                    continue;
                };
                let names: Vec<&str> = (expr
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
                .filter(|w| w.starts_with("shelfstream_"))
                .collect();
                assert!(
                    !names.is_empty(),
                    "{}: {expr} names no shelfstream metric",
                    panel["title"]
                );
                for name in names {
                    let family = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(*f)))
                        .unwrap_or(name);
                    assert!(
                        families.contains(family),
                        "{}: {name} is not exported ({families:?})",
                        panel["title"]
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 15, "{checked} metric references checked");
}
