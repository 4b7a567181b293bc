//! End-to-end benchmark: events/s from Kafka through the shipped plugin chain into ClickHouse,
//! raw batches to S3 and alerts back to Kafka, against the rate at which a bare rdkafka consumer
//! reads the same topics from the same broker, in the same run; plus the host's CPU per event.
//!
//!     tests/services/start.sh && plugins/build.sh && cargo bench -p host --bench e2e
//!
//! Uses the services on their default ports (a fresh topic set is produced first). Figures are
//! printed, never asserted. tansu slows as its sqlite database grows over runs (a bare consumer
//! read 3,186 msg/s with 245 MB of earlier runs, 31,562 from an empty database): the bench warns
//! when it is slow and says how to restart it on an empty one.
//!
//!     E2E_BROKER=mock cargo bench -p host --bench e2e
//!
//! runs the same against librdkafka's in-process mock cluster instead, where the broker is not
//! the bottleneck (tansu is: a bare consumer reads 26-52k messages/s from it here): raw batches
//! go to a local folder and there is no ClickHouse, so the figure is the consumer and the chain.
//! `E2E_PLUGINS=DIR` runs the plugins built into `DIR` instead of `plugins/` (to compare builds).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use shelfstream::archive::RawStoreConfig;
use shelfstream::config::PipelineConfig;
use shelfstream::sim::{Simulator, SimulatorConfig};
use shelfstream::sinks::{clickhouse::ClickHouseConfig, kafka::KafkaSinkConfig};
use shelfstream::sources::{KafkaSourceConfig, SourceConfig};
use shelfstream::tools::kafka::{create_topics, end_offsets, RecordProducer};
use shelfstream::topics::{ALERTS, DEAD_LETTERS, RETAIL as TOPICS};

const LOCAL_BROKER: &str = "127.0.0.1:9092";
/// How long the bare consumer waits for its first message.
const FIRST_WAIT: Duration = Duration::from_secs(60);
/// tansu's CPU per message served above which its database has grown too large to compare runs
/// (15-45 us on an empty one here; 312 us with 245 MB of earlier runs).
const SLOW_TANSU_US: f64 = 60.0;

/// CPU time (user + system) in seconds from a /proc `stat` file: `/proc/self/stat` for this
/// process, `/proc/thread-self/stat` for the calling thread, `/proc/<pid>/stat`.
fn stat_cpu(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn cpu_seconds() -> f64 {
    stat_cpu("/proc/self/stat")
}

/// The local service processes (tansu, ClickHouse, s3s-fs), found by name in /proc once: their
/// CPU is where the rest of the machine's goes while the host runs. (Scanning all of /proc at
/// every sample cost the sampler, a thread of this process, 22 ms of CPU a second.)
struct Services(Vec<(&'static str, Vec<String>)>);

impl Services {
    fn find() -> Services {
        let names = [
            ("tansu", "tansu"),
            ("clickhouse", "clickhouse-serv"),
            ("s3s-fs", "s3s-fs"),
        ];
        let mut found: Vec<(&'static str, Vec<String>)> =
            names.iter().map(|(n, _)| (*n, Vec::new())).collect();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if let Some(i) = names.iter().position(|(_, c)| comm.trim() == *c) {
                found[i]
                    .1
                    .push(entry.path().join("stat").display().to_string());
            }
        }
        Services(found)
    }

    /// CPU seconds used so far by each service.
    fn cpu(&self) -> Vec<(&'static str, f64)> {
        (self.0.iter())
            .map(|(name, stats)| (*name, stats.iter().map(|s| stat_cpu(s)).sum()))
            .collect()
    }
}

struct Sample {
    /// Seconds since the host run started.
    at: f64,
    /// This process, less the sampling thread itself.
    host: f64,
    services: Vec<(&'static str, f64)>,
}

fn main() {
    // RUST_LOG=shelfstream=debug shows the host's log on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock_mode = std::env::var("E2E_BROKER").is_ok_and(|b| b == "mock");
    // The mock cluster keeps at most 5 MB or 100,000 messages per partition and drops older
    // segments (librdkafka's rdkafka_mock.c), so its slice is smaller: 40,000 steps fill the
    // busiest partition to about 4 MB.
    let steps: u64 = std::env::var("E2E_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if mock_mode { 40_000 } else { 300_000 });
    // Both readers stop after this long without a message. The host's idle clock runs from
    // its start, so against tansu it must outlast the late first fetch too.
    let idle = Duration::from_secs(if mock_mode { 2 } else { 20 });
    // The mock cluster lives as long as this binding.
    let mock = mock_mode.then(|| rdkafka::mocking::MockCluster::new(1).unwrap());
    let brokers_owned = match &mock {
        Some(m) => {
            let topics = TOPICS.iter().chain([&ALERTS, &DEAD_LETTERS]);
            for t in topics {
                m.create_topic(t, 3, 1).unwrap();
            }
            m.bootstrap_servers()
        }
        None => {
            rt.block_on(create_topics(&LOCAL_BROKER.into(), 3)).unwrap();
            LOCAL_BROKER.to_string()
        }
    };
    let brokers = brokers_owned.as_str();
    println!(
        "broker: {}",
        if mock_mode {
            "librdkafka mock cluster (in process)"
        } else {
            "tansu on loopback"
        }
    );
    let topics: Vec<String> = TOPICS.iter().map(|t| t.to_string()).collect();
    let before = end_offsets(&brokers.into(), &topics).unwrap();

    // Produce a fresh slice of simulated traffic.
    let sim_config = SimulatorConfig {
        rate: 0.0,
        stores: 10,
        products: 100,
        ..SimulatorConfig::default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut sim = Simulator::new(&sim_config, now);
    let producer = RecordProducer::new(&brokers.into()).unwrap();
    let started = Instant::now();
    let mut produced = 0u64;
    while sim.steps() < steps {
        for r in sim.step().collect::<Vec<_>>() {
            producer.send(&r).unwrap();
            produced += 1;
        }
    }
    producer.flush().unwrap();
    println!(
        "produced {produced} messages to {brokers} in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // Bare consumer: read exactly the new slice.
    let bare: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "e2e-bare")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (tp, start) in &before {
        tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*start))
            .unwrap();
    }
    bare.assign(&tpl).unwrap();
    let services = Services::find();
    let bare_services_before = services.cpu();
    let bare_cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut read = 0u64;
    let mut last = started;
    // Until everything produced is read, or nothing came for `idle` (the host's idle stop too).
    // The first message may take longer: tansu answers the first fetch of a large slice late
    // (over 2 s with a large database), and that wait is part of the consumer's time.
    while read < produced && last.elapsed() < if read == 0 { FIRST_WAIT } else { idle } {
        if let Some(Ok(_)) = bare.poll(Duration::from_millis(100)) {
            read += 1;
            last = Instant::now();
        }
    }
    let bare_rate = read as f64 / (last - started).as_secs_f64().max(1e-3);
    println!("bare rdkafka consumer: {read} messages, {bare_rate:.0} msg/s");
    if read < produced {
        println!(
            "WARNING: the bare consumer read {read} of {produced} messages (a mock partition over its size bound drops its oldest messages: lower E2E_STEPS)"
        );
    }
    let bare_tansu = services.cpu()[0].1 - bare_services_before[0].1;
    let tansu_per_message = 1e6 * bare_tansu / read.max(1) as f64;
    println!(
        "CPU per message during the bare read: consumer {:.1} us, tansu {tansu_per_message:.1} us",
        1e6 * (cpu_seconds() - bare_cpu_before) / read.max(1) as f64,
    );
    if !mock_mode && tansu_per_message > SLOW_TANSU_US {
        println!(
            "WARNING: tansu spent over {SLOW_TANSU_US} us per message (its sqlite database slows as it grows): for figures comparable with the README's, restart it on an empty one: tests/services/stop.sh kafka && rm -rf ~/.cache/shelfstream/services/kafka && tests/services/start.sh kafka"
        );
    }

    // The host: same slice, full chain, ClickHouse + raw batches (S3) + alerts to Kafka.
    let data = tempfile::tempdir().unwrap();
    let mut config = PipelineConfig::load(None).unwrap();
    config.runtime.data_dir = data.path().to_path_buf();
    // ClickHouse, S3 and Kafka are the sinks here; E2E_FILE_OUTPUTS=1 adds the NDJSON copies.
    config.runtime.file_outputs = std::env::var_os("E2E_FILE_OUTPUTS").is_some();
    let group = format!("e2e-{now}");
    config.sources = vec![SourceConfig::Kafka(KafkaSourceConfig {
        stop_when_idle: Some(format!("{}ms", idle.as_millis())),
        brokers: brokers.to_string(),
        group_id: group.clone(),
        // E2E_CONSUMER_PROPERTIES="fetch.wait.max.ms=100,..." tries librdkafka settings.
        properties: std::env::var("E2E_CONSUMER_PROPERTIES")
            .unwrap_or_default()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
        ..KafkaSourceConfig::default()
    })];
    config.kafka_sink = Some(KafkaSinkConfig {
        brokers: brokers.to_string(),
        ..KafkaSinkConfig::default()
    });
    config.raw_store = Some(match mock_mode {
        true => RawStoreConfig::default(), // a local folder under the data dir
        false => RawStoreConfig {
            kind: "s3".into(),
            endpoint: Some("http://127.0.0.1:9010".into()),
            access_key_id: Some("minioadmin".into()),
            secret_access_key: Some("minioadmin".into()),
            ..RawStoreConfig::default()
        },
    });
    if !mock_mode {
        config.clickhouse = Some(ClickHouseConfig {
            database: "shelfstream_bench".into(),
            ..ClickHouseConfig::default()
        });
    }
    // Start exactly at the slice: a fresh group whose shard checkpoints hold the slice's start.
    let ends = before.clone();
    let store = shelfstream::checkpoint::ShardStore::new(
        config.raw_store.as_ref().unwrap(),
        data.path(),
        &group,
        rt.handle().clone(),
    )
    .unwrap();
    shelfstream::checkpoint::start_at(&store, &ends).unwrap();

    let config_file_outputs = config.runtime.file_outputs;
    let opts = shelfstream::runtime::RunOptions {
        // `E2E_PLUGINS`: another build of the plugins (to compare two builds).
        plugins_dir: std::env::var_os("E2E_PLUGINS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins")
            }),
        config,
        watch: false,
        config_path: None,
        summary: false,
    };
    // Compile the plugins into the run's cache first: CPU per event is the pipeline's, not
    // Cranelift's.
    let engine = shelfstream::plugin::PluginEngine::new(Some(data.path().join("cache"))).unwrap();
    shelfstream::plugin::registry::load_plugins(&engine, &opts.plugins_dir).unwrap();
    drop(engine);
    // CPU of the host and the services sampled every 50 ms, so that per-event figures cover the
    // busy span only (not start-up, the group join or the final checkpoints).
    let run_started = Instant::now();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let services = Services::find();
            let mut samples = Vec::new();
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let services = services.cpu();
                samples.push(Sample {
                    at: run_started.elapsed().as_secs_f64(),
                    host: cpu_seconds() - stat_cpu("/proc/thread-self/stat"),
                    services,
                });
                std::thread::sleep(Duration::from_millis(50));
            }
            samples
        })
    };
    let report = rt
        .block_on(shelfstream::runtime::run(opts, std::future::pending()))
        .unwrap();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    // The span starts when the partitions are assigned (the bare consumer's clock starts at its
    // assign too): the consumer cannot fetch before.
    let start = report.assigned_secs.or(report.first_batch_secs);
    let (first, last) = (
        start.unwrap_or(0.0),
        report.last_batch_secs.unwrap_or(report.elapsed_secs),
    );
    // The last sample at or before the first batch and the first at or after the last batch.
    let from = samples
        .iter()
        .rev()
        .find(|s| s.at <= first)
        .unwrap_or(&samples[0]);
    let to = samples
        .iter()
        .find(|s| s.at >= last)
        .unwrap_or(samples.last().unwrap());
    let cpu = to.host - from.host;
    let services: Vec<(&str, f64)> = (to.services.iter())
        .zip(&from.services)
        .map(|((name, after), (_, before))| (*name, after - before))
        .collect();
    // The busy span: from the assignment to the end of the last batch. The whole run adds
    // start-up, joining the group and the final checkpoints; the idle wait is taken off.
    // CPU figures cover the sampled span (to.at - from.at), a little wider than `busy`.
    let busy = match (start, report.last_batch_secs) {
        (Some(first), Some(last)) if last > first => last - first,
        _ => (report.elapsed_secs - idle.as_secs_f64()).max(1e-3),
    };
    let span = (to.at - from.at).max(1e-3);
    let whole = (report.elapsed_secs - idle.as_secs_f64()).max(1e-3);
    let host_rate = report.records_in as f64 / busy;
    println!("file outputs: {}", config_file_outputs);
    println!(
        "host end to end: {} records in {busy:.2}s = {host_rate:.0} msg/s ({:.0}% of the bare consumer); host CPU {:.1} us/event",
        report.records_in,
        100.0 * host_rate / bare_rate,
        1e6 * cpu / report.records_in.max(1) as f64
    );
    println!(
        "whole run (start-up, group join: assigned after {:.2}s, first batch after {:.2}s; final checkpoints): {whole:.2}s = {:.0} msg/s ({:.0}% of the bare consumer)",
        report.assigned_secs.unwrap_or_default(),
        report.first_batch_secs.unwrap_or_default(),
        report.records_in as f64 / whole,
        100.0 * report.records_in as f64 / whole / bare_rate
    );
    let per_event = |seconds: f64| 1e6 * seconds / report.records_in.max(1) as f64;
    let mut total = per_event(cpu);
    let mut line = format!(
        "CPU per event during the host run: host {:.1} us",
        per_event(cpu)
    );
    for (name, seconds) in &services {
        total += per_event(*seconds);
        line.push_str(&format!(", {name} {:.1} us", per_event(*seconds)));
    }
    println!(
        "{line}; all {total:.1} us = {:.2} cores busy over the busy span (this machine has {})",
        total * 1e-6 * report.records_in as f64 / span,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}
