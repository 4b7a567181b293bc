//! Helpers of the delivery tests (Kafka in; ClickHouse, S3 and Kafka out): the `host` binary
//! run and simulating, what the raw objects and the shard checkpoints hold, what a topic holds.

use std::process::{Child, Command, Stdio};

use super::repo;
use super::services::{shared_clickhouse, S3};

/// (topic, partition, offset) of every record in every raw object under the bucket.
pub fn raw_offsets(bucket: &std::path::Path) -> Vec<(String, i32, i64)> {
    let mut out = Vec::new();
    let mut stack = vec![bucket.join("raw")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(".ndjson.gz") {
                let rel = path
                    .strip_prefix(bucket.join("raw"))
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let topic = rel.split('/').next().unwrap().to_string();
                let object = std::fs::read(&path).unwrap();
                let records = shelfstream::archive::decode(&topic, &object).unwrap();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let (first, last) = name.trim_end_matches(".ndjson.gz").split_once('-').unwrap();
                assert_eq!(
                    (records[0].offset, records.last().unwrap().offset),
                    (first.parse().unwrap(), last.parse().unwrap()),
                    "{rel}"
                );
                out.extend(
                    records
                        .iter()
                        .map(|r| (topic.clone(), r.partition, r.offset)),
                );
            }
        }
    }
    out.sort();
    out
}

/// The `host` binary the delivery tests run: this build's, or `SHELFSTREAM_HOST_BIN` (the long
/// soak runs a copy, so that building meanwhile does not replace it under the soak).
pub fn host_binary() -> std::path::PathBuf {
    std::env::var_os("SHELFSTREAM_HOST_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_host").into())
}

/// A raw object of `n` records from offset `first`, as a host that crashed before a checkpoint
/// covered it leaves behind (dated 2026-11-01, the simulator's start in these tests).
pub fn plant_raw_object(s3: &S3, topic: &str, partition: i32, first: i64, n: i64) {
    let dir = s3.dir.path().join(format!(
        "retail-data/raw/{topic}/date=2026-11-01/partition={partition}"
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let records: Vec<shelfstream::plugin::RawRecord> = (first..first + n)
        .map(|offset| shelfstream::plugin::RawRecord {
            topic: topic.into(),
            partition,
            offset,
            key: None,
            payload: b"{}".to_vec(),
            timestamp: 0,
            headers: Vec::new(),
        })
        .collect();
    std::fs::write(
        dir.join(format!("{first:020}-{:020}.ndjson.gz", first + n - 1)),
        shelfstream::archive::encode(&records),
    )
    .unwrap();
}

/// `host simulate` of `steps` steps after the first `skip` (4 stores, 30 products, a fixed
/// start), as fast as possible.
pub fn simulate(brokers: &str, steps: u64, skip: u64) {
    simulate_at(brokers, 0, steps, skip);
}

/// The same at `rate` messages/s (0: as fast as possible).
fn simulate_at(brokers: &str, rate: u32, steps: u64, skip: u64) {
    let status = Command::new(host_binary())
        .args([
            "simulate",
            "--brokers",
            brokers,
            "--rate",
            &rate.to_string(),
        ])
        .args(["--stores", "4", "--products", "30"])
        .args(["--start", "2026-11-01T08:00:00Z"])
        .args(["--max-events", &steps.to_string()])
        .args(["--skip-steps", &skip.to_string()])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Every message of a topic (all partitions, from the beginning) as (key, payload; a payload
/// that is not JSON as a JSON string).
pub fn consume_all(brokers: &str, topic: &str) -> Vec<(String, serde_json::Value)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut idle_since = std::time::Instant::now();
    while idle_since.elapsed() < std::time::Duration::from_secs(2) {
        if let Some(Ok(m)) = consumer.poll(std::time::Duration::from_millis(100)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let payload = m.payload().unwrap_or_default();
            // A payload that is not JSON (a malformed message) as a string.
            let value = serde_json::from_slice(payload).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(payload).into_owned())
            });
            out.push((key, value));
            idle_since = std::time::Instant::now();
        }
    }
    out
}

/// Every message of a topic: (key, payload, headers).
pub type Message = (Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>);

pub fn consume_messages(brokers: &str, topic: &str) -> Vec<Message> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut idle = std::time::Instant::now();
    while idle.elapsed() < std::time::Duration::from_secs(2) {
        if let Some(Ok(m)) = consumer.poll(std::time::Duration::from_millis(100)) {
            let headers = shelfstream::sources::kafka::headers_of(&m);
            out.push((
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or_default().to_vec(),
                headers,
            ));
            idle = std::time::Instant::now();
        }
    }
    out
}

/// `host run` over `config` with data in `data`, its log appended to `data/host.log`.
pub fn host_run(
    config: &std::path::Path,
    data: &std::path::Path,
    close_windows_at_end: bool,
) -> Command {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("host.log"))
        .unwrap();
    let mut cmd = Command::new(host_binary());
    cmd.args(["run", "--no-watch", "--quiet", "--plugins"])
        .arg(repo().join("plugins"))
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .stderr(log);
    if close_windows_at_end {
        cmd.arg("--close-windows-at-end");
    }
    cmd
}

/// `host simulate` at `rate` messages/s in the background (a live producer).
pub fn produce_live(brokers: &str, steps: u64, rate: u32) -> std::thread::JoinHandle<()> {
    let brokers = brokers.to_string();
    std::thread::spawn(move || simulate_at(&brokers, rate, steps, 0))
}

/// The next offset of every `topic:partition`, from the shard checkpoints the hosts of group
/// `shelfstream` saved in the object store.
pub fn checkpointed_offsets(s3: &S3) -> std::collections::BTreeMap<String, i64> {
    checkpoint_offsets_in(s3.dir.path()).into_iter().collect()
}

/// The offsets in the shard checkpoints under an s3s-fs data directory as they are now
/// (checkpoints being rewritten at this moment are skipped).
pub fn checkpoint_offsets_in(dir: &std::path::Path) -> Vec<(String, i64)> {
    let dir = dir.join("retail-data/checkpoints/shelfstream");
    let mut offsets = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let Ok(checkpoint) = serde_json::from_reader::<_, shelfstream::checkpoint::ShardCheckpoint>(
            flate2::read::GzDecoder::new(&bytes[..]),
        ) else {
            continue;
        };
        offsets.extend(
            checkpoint
                .offsets
                .into_iter()
                .map(|(tp, o)| (tp.to_string(), o)),
        );
    }
    offsets
}

/// Every offset the hosts consumed, from their checkpoints: what the raw objects must cover once.
pub fn consumed_offsets(s3: &S3) -> Vec<(String, i32, i64)> {
    let mut expected: Vec<(String, i32, i64)> = Vec::new();
    for (key, &next) in &checkpointed_offsets(s3) {
        let (topic, partition) = key.rsplit_once(':').unwrap();
        expected.extend((0..next).map(|o| (topic.to_string(), partition.parse().unwrap(), o)));
    }
    expected.sort();
    expected
}

/// A pipeline config file for the `host` binary: Kafka in (a host stops 3 s after the last
/// message), ClickHouse (the shared one), raw batches, alerts and dead letters (Kafka) out.
pub fn write_config(path: &std::path::Path, brokers: &str, s3: &S3, database: &str) {
    write_config_for(path, brokers, s3, &shared_clickhouse(), database, "3s")
}

/// The same with another ClickHouse and idle time before a host stops.
pub fn write_config_for(
    path: &std::path::Path,
    brokers: &str,
    s3: &S3,
    clickhouse_url: &str,
    database: &str,
    stop_when_idle: &str,
) {
    let base = std::fs::read_to_string(repo().join("host/pipeline.toml")).unwrap();
    let stages = &base[base.find("[[stage]]").unwrap()..];
    let text = format!(
        r#"
[runtime]
batch_size = 256

[[source]]
kind = "kafka"
brokers = "{brokers}"
stop_when_idle = "{stop_when_idle}"
session_timeout = "6s"

[clickhouse]
url = "{clickhouse_url}"
database = "{database}"
batch_rows = 500

[kafka_sink]
brokers = "{brokers}"

[raw_store]
kind = "s3"
endpoint = "{endpoint}"
access_key_id = "minioadmin"
secret_access_key = "minioadmin"

{stages}"#,
        endpoint = s3.endpoint
    );
    std::fs::write(path, text).unwrap();
}

pub fn log_of(data: &std::path::Path) -> String {
    std::fs::read_to_string(data.join("host.log")).unwrap_or_default()
}

pub fn signal_term(child: &Child) {
    signal(child, "-TERM")
}

pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The output streams the delivery tests compare with a clean run.
pub const STREAMS: [&str; 6] = [
    "sales",
    "sales_1m",
    "inventory_1m",
    "alerts",
    "forecasts",
    "dead_letters",
];
