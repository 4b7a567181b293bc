//! Kafka security settings work, and secrets stay secret. tansu 0.6 offers SASL/SCRAM logins
//! (`--authentication`; its PLAIN mechanism is not built in, and its `--cert`/`--key` TLS options
//! are accepted but not used by the listener), so the test runs the Kafka source, the alert and
//! dead-letter sinks and `host simulate` over SASL/SCRAM-SHA-512 against it. A wrong password is
//! a clear error within seconds, not a hang. Recognisable secrets (the Kafka password, the S3
//! secret key, the ClickHouse password, the token of the metrics and page) appear in no log
//! (debug level, librdkafka's security debug on), output, error, metric, status or page; the
//! page and metrics refuse requests without the token, and show the Kafka partitions with
//! their lag.

mod common;

use std::process::{Command, Stdio};

use common::delivery::*;
use common::services::*;
use common::*;

const USER: &str = "alice";
const PASSWORD: &str = "kafka-SECRET-5e1f9c";
/// The token of the host's metrics and page.
const HTTP_TOKEN: &str = "http-SECRET-77d2aa";
/// The password of the ClickHouse user the sink logs in as.
const CH_PASSWORD: &str = "clickhouse-SECRET-31c8e0";
const S3_SECRET: &str = "s3-SECRET-9a7d21";

fn sasl(password: &str) -> Vec<(String, String)> {
    [
        ("security.protocol", "sasl_plaintext"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", USER),
        ("sasl.password", password),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn properties_toml(password: &str) -> String {
    let pairs: Vec<String> = sasl(password)
        .iter()
        .map(|(k, v)| format!("{k:?} = {v:?}"))
        .collect();
    format!("{{ {} }}", pairs.join(", "))
}

/// A config: Kafka in and out over SASL, raw batches to an S3 server with a secret key.
fn write_secure_config(path: &std::path::Path, brokers: &str, s3: &S3, password: &str) {
    write_secure_config_with(path, brokers, s3, password, "[http]\nlisten = \"off\"");
}

/// [`write_secure_config`] with more sections (`extra`, TOML).
fn write_secure_config_with(
    path: &std::path::Path,
    brokers: &str,
    s3: &S3,
    password: &str,
    extra: &str,
) {
    let base = std::fs::read_to_string(repo().join("host/pipeline.toml")).unwrap();
    let stages = &base[base.find("[[stage]]").unwrap()..];
    let properties = properties_toml(password);
    // librdkafka's security debug on: its own log must not show the password either.
    let source_properties = properties.replace(" }", ", \"debug\" = \"security,broker\" }");
    let text = format!(
        r#"
[runtime]
batch_size = 256

[[source]]
kind = "kafka"
brokers = "{brokers}"
stop_when_idle = "3s"
session_timeout = "6s"
properties = {source_properties}

[kafka_sink]
brokers = "{brokers}"
properties = {properties}

{extra}

[raw_store]
kind = "s3"
endpoint = "{endpoint}"
access_key_id = "shelfstream"
secret_access_key = "{S3_SECRET}"

{stages}"#,
        endpoint = s3.endpoint
    );
    std::fs::write(path, text).unwrap();
}

/// `host simulate` over SASL; its stderr.
fn simulate_sasl(brokers: &str, password: &str, steps: u64) -> (bool, String) {
    let mut cmd = Command::new(host_binary());
    cmd.args(["simulate", "--quiet", "--brokers", brokers])
        .args(["--stores", "4", "--products", "30"])
        .args(["--start", "2026-11-01T08:00:00Z"])
        .args(["--max-events", &steps.to_string(), "--rate", "0"]);
    for (k, v) in sasl(password) {
        cmd.args(["-X", &format!("{k}={v}")]);
    }
    let out = cmd
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

/// Every file under `dir` (outputs, state, logs), except the config that holds the secrets.
fn everything_written(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().unwrap() != "pipeline.toml" {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn assert_no_secret(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in [
        PASSWORD,
        S3_SECRET,
        "wrong-SECRET-0b3c",
        HTTP_TOKEN,
        CH_PASSWORD,
    ] {
        assert!(!text.contains(secret), "{what} shows the secret {secret:?}");
    }
}

#[test]
#[ignore = "needs tansu and s3s-fs: run tests/run.sh"]
fn the_pipeline_runs_over_sasl_scram_and_no_secret_is_logged() {
    let broker = broker_with_user(USER, PASSWORD);
    let s3 = s3_with_keys("shelfstream", S3_SECRET);
    let steps = 2_000;
    let reference = tempfile::tempdir().unwrap();
    run_to_end(
        &repo().join("plugins"),
        pipeline_config(reference.path(), 0.0, Some(steps), true),
        false,
    );

    let (ok, simulate_log) = simulate_sasl(&broker.address, PASSWORD, steps);
    assert!(ok, "host simulate over SASL:\n{simulate_log}");
    assert_no_secret("host simulate's log", simulate_log.as_bytes());

    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("pipeline.toml");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // Metrics and the page behind a token; ClickHouse as a user with a password.
    let clickhouse = private_clickhouse_with_user("shelfstream", CH_PASSWORD);
    let database = format!("secure_{}", std::process::id());
    let extra = format!(
        "[http]\nlisten = \"{listen}\"\ntoken = \"{HTTP_TOKEN}\"\n\n[clickhouse]\nurl = \"{}\"\ndatabase = \"{database}\"\nuser = \"shelfstream\"\npassword = \"{CH_PASSWORD}\"\n",
        clickhouse.url
    );
    write_secure_config_with(&config, &broker.address, &s3, PASSWORD, &extra);
    let mut run = host_run(&config, data.path(), true)
        .env("RUST_LOG", "debug")
        .spawn()
        .unwrap();
    // While it runs: what the metrics, the status and the page show (the last answer of each).
    let mut seen: std::collections::BTreeMap<&str, String> = Default::default();
    let mut refused_without_token = false;
    // The Kafka source's partitions as the metrics show them while assigned, and their lag.
    let (mut topics, mut lag_seen) = (std::collections::BTreeSet::new(), false);
    while run.try_wait().unwrap().is_none() {
        for path in ["/metrics", "/api/status", "/", "/readyz"] {
            let url = format!("http://{listen}{path}");
            if let Some((200, _, body)) = http_get(&url, Some(HTTP_TOKEN)) {
                if path == "/metrics" {
                    let m =
                        prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
                            .expect("Prometheus text");
                    for s in &m.samples {
                        if s.metric == "shelfstream_partition_position" {
                            topics.extend(s.labels.get("topic").map(String::from));
                        }
                        lag_seen |= s.metric == "shelfstream_partition_lag";
                    }
                }
                seen.insert(path, body);
            }
            refused_without_token |= http_get(&url, None).is_some_and(|r| r.0 == 401);
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let status = run.wait().unwrap();
    let log = log_of(data.path());
    assert!(refused_without_token, "the page and metrics need the token");
    assert_eq!(seen.len(), 4, "answers seen: {:?}", seen.keys());
    for (path, body) in &seen {
        assert_no_secret(&format!("GET {path}"), body.as_bytes());
    }
    assert_eq!(topics.len(), 4, "partition positions per topic: {topics:?}");
    assert!(lag_seen, "consumer lag from librdkafka's statistics");
    // The last status (partitions revoked at the end of the input) still lists every stage.
    let last: serde_json::Value = serde_json::from_str(&seen["/api/status"]).unwrap();
    let stages = last["stages"].as_array().unwrap();
    assert!(
        stages.len() >= 20,
        "stages in the last status: {}",
        stages.len()
    );
    assert!(status.success(), "host run over SASL:\n{log}");
    assert!(
        log.contains("SASL") || log.contains("sasl"),
        "the login shows in librdkafka's debug log"
    );
    // The sink logged in with the password: every sale is in ClickHouse.
    assert_eq!(
        clickhouse.rows(&database, "fact_sales"),
        Some(stream_rows(data.path(), "sales").len() as u64)
    );
    for stream in ["sales", "sales_1m", "alerts", "dead_letters"] {
        assert_same_rows(
            &stream_rows(data.path(), stream),
            &stream_rows(reference.path(), stream),
            stream,
        );
    }
    assert_eq!(
        raw_offsets(&s3.dir.path().join("retail-data")),
        consumed_offsets(&s3)
    );
    for (path, bytes) in everything_written(data.path()) {
        assert_no_secret(&path.display().to_string(), &bytes);
    }

    // A wrong password: a clear error within seconds, naming the login, not the password.
    let wrong = tempfile::tempdir().unwrap();
    let config = wrong.path().join("pipeline.toml");
    write_secure_config(&config, &broker.address, &s3, "wrong-SECRET-0b3c");
    let started = std::time::Instant::now();
    let mut run = host_run(&config, wrong.path(), true)
        .env("RUST_LOG", "debug")
        .spawn()
        .unwrap();
    assert!(
        wait_for(60, || run.try_wait().unwrap().is_some()),
        "a wrong password must not hang the host:\n{}",
        log_of(wrong.path())
    );
    assert!(!run.wait().unwrap().success());
    let log = log_of(wrong.path());
    assert!(
        log.contains("refused this client") && log.contains("SASL"),
        "the error says the login was refused:\n{}",
        log.lines()
            .filter(|l| !l.contains("DEBUG"))
            .chain(log.lines().rev().take(12))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "wrong password: failed after {:.1} s with: {}",
        started.elapsed().as_secs_f64(),
        log.lines()
            .find(|l| l.contains("refused this client"))
            .unwrap_or_default()
    );
    assert_no_secret("the wrong-password run's log", log.as_bytes());
    let (ok, simulate_log) = simulate_sasl(&broker.address, "wrong-SECRET-0b3c", 10);
    assert!(
        !ok && simulate_log.contains("refused this client"),
        "{simulate_log}"
    );
    assert_no_secret(
        "host simulate's log (wrong password)",
        simulate_log.as_bytes(),
    );
}
