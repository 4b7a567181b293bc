//! Against a real Kafka-protocol broker (tansu, started here per test on a free port with
//! in-memory storage; installed by tests/services/install.sh): `host simulate` produces the
//! retail topics, `host run` consumes them through the plugins, and the outputs equal those of
//! the same simulated input read directly; a restart resumes from the saved offsets.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use common::*;
use shelfstream::config::SourceConfig;
use shelfstream::sources::kafka::KafkaSourceConfig;

struct Broker {
    child: Child,
    address: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn broker() -> Broker {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let child = Command::new("tansu")
        .args([
            "broker",
            "--listener-url",
            &format!("tcp://{address}"),
            "--advertised-listener-url",
            &format!("tcp://{address}"),
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tansu is installed by tests/services/install.sh kafka");
    assert!(
        wait_for(30, || std::net::TcpStream::connect(&address).is_ok()),
        "tansu did not start"
    );
    Broker { child, address }
}

fn simulate(brokers: &str, steps: u64, skip: u64) {
    let status = Command::new(env!("CARGO_BIN_EXE_host"))
        .args([
            "simulate",
            "--brokers",
            brokers,
            "--rate",
            "0",
            "--stores",
            "4",
            "--products",
            "30",
        ])
        .args([
            "--start",
            "2026-11-01T08:00:00Z",
            "--max-events",
            &steps.to_string(),
            "--skip-steps",
            &skip.to_string(),
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

fn kafka_config(
    data: &std::path::Path,
    brokers: &str,
    close: bool,
) -> shelfstream::config::PipelineConfig {
    let mut c = pipeline_config(data, 0.0, None, close);
    c.sources = vec![SourceConfig::Kafka(KafkaSourceConfig {
        brokers: brokers.into(),
        stop_when_idle: Some("2s".into()),
        ..KafkaSourceConfig::default()
    })];
    c
}

const STREAMS: [&str; 6] = [
    "sales",
    "sales_1m",
    "inventory_1m",
    "alerts",
    "forecasts",
    "dead_letters",
];

#[test]
fn kafka_in_equals_the_same_events_read_directly_and_restarts_resume() {
    let broker = broker();
    let reference = tempfile::tempdir().unwrap();
    run_to_end(
        &repo().join("plugins"),
        pipeline_config(reference.path(), 0.0, Some(4_000), true),
        false,
    );

    // First half produced and consumed; the host stops (idle) and saves state and offsets.
    let data = tempfile::tempdir().unwrap();
    simulate(&broker.address, 2_000, 0);
    let first = run_to_end(
        &repo().join("plugins"),
        kafka_config(data.path(), &broker.address, false),
        false,
    );
    let saved = shelfstream::run::SavedState::load(data.path()).unwrap();
    let offsets = &saved.offsets["kafka"];
    assert_eq!(
        offsets.values().sum::<i64>() as u64,
        first.records_in,
        "offsets cover every record read"
    );

    // Second half; the next run resumes at the saved offsets and closes the windows at the end.
    simulate(&broker.address, 4_000, 2_000);
    let second = run_to_end(
        &repo().join("plugins"),
        kafka_config(data.path(), &broker.address, true),
        false,
    );
    assert!(second.records_in > 0);

    for stream in STREAMS {
        let (got, want) = (
            stream_rows(data.path(), stream),
            stream_rows(reference.path(), stream),
        );
        assert!(!want.is_empty(), "{stream}");
        assert_eq!(
            got, want,
            "{stream}: nothing lost, nothing doubled across the restart"
        );
    }
    let dead = stream_rows(data.path(), "dead_letters");
    assert!(
        dead.iter()
            .all(|d| d.contains("\"topic\":\"retail-sales-transactions\"")),
        "dead letters name the source topic"
    );
}
