//! Benchmark: replay from the archive against the same chain fed from memory, in one run.
//!
//! Simulated sales are archived the way `host run` archives them (gzip NDJSON objects, lines
//! tagged with their batch of 1024), then run through the chain of the chain bench
//! (sales-cleaner -> revenue-aggregator -> sales-spike-alert, as configured in
//! host/pipeline.toml) four ways, one after another in each round: from memory with no output
//! written (the chain bench's figure), by `host replay --streams sales_alerts` (reading and
//! decompressing the archive, writing only the rule's alerts), from memory with the outputs
//! written as NDJSON files (what a replay writes), and by `host replay` writing every stream.
//! Rates are the best of the rounds; ratios are the median of each round's ratio to that
//! round's in-memory rate (the machine's speed drifts between rounds, much less within one).
//! Then the archive reader's own rate (`ArchiveReader` listing, reading and decoding every
//! object, as a replay does), and the whole shipped pipeline replays a simulated sample: the
//! time for one simulated day of the default simulator's volume follows from its rate. The last line is machine-readable:
//!
//!     replay batch=1024 in_memory_ev_s=N replay_ev_s=N ratio=X replay_alerts_only_ev_s=N ratio_alerts_only=X
//!
//!     plugins/build.sh && cargo bench -p host --bench replay
//!
//! Figures are printed, never asserted. `REPLAY_EVENTS` sets the number of sales (default
//! 200,000), `REPLAY_ROUNDS` the rounds (default 9: single rounds range over ±10% on a
//! noisy machine, and the median of nine is steadier than of five).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use shelfstream::archive::{ArchiveReader, Range, RawStore, RawStoreConfig};
use shelfstream::config::PipelineConfig;
use shelfstream::pipeline::{Batch, ShardId, Shards};
use shelfstream::plugin::registry::load_plugins;
use shelfstream::plugin::{PluginEngine, RawRecord};
use shelfstream::replay::{replay, ReplayOptions};
use shelfstream::sim::{Simulator, SimulatorConfig};
use shelfstream::sinks::{FileSink, Sink};
use shelfstream::topics::SALES;

const BATCH: usize = 1024;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shipped config with `stages` only and an NDJSON source of sales (one local shard).
fn config(data_dir: &Path, stages: Option<&[&str]>) -> PipelineConfig {
    let mut c = PipelineConfig::parse(shelfstream::config::DEFAULT_PIPELINE).unwrap();
    c.runtime.data_dir = data_dir.to_path_buf();
    c.runtime.batch_size = BATCH;
    if let Some(stages) = stages {
        c.sources = vec![shelfstream::sources::SourceConfig::Ndjson(
            shelfstream::sources::NdjsonConfig {
                name: "archive".into(),
                path: "-".into(),
                topic: SALES.into(),
            },
        )];
        c.stages.retain(|s| stages.contains(&s.name.as_str()));
    }
    c
}

const CHAIN: [&str; 3] = ["clean-sales", "sales-per-minute", "sales-spikes"];

fn sales(n: usize) -> Vec<RawRecord> {
    let config = SimulatorConfig {
        malformed_rate: 0.0,
        ..SimulatorConfig::default()
    };
    let mut sim = Simulator::new(&config, 1_793_520_000_000);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.extend(sim.step().filter(|r| r.topic == SALES));
    }
    out.truncate(n);
    for (i, r) in out.iter_mut().enumerate() {
        (r.partition, r.offset) = (0, i as i64);
    }
    out
}

/// Archive `records` in batches of `BATCH` under `data_dir/raw` (as `host run` does).
fn archive(data_dir: &Path, records: &[RawRecord]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut store =
        RawStore::new(&RawStoreConfig::default(), data_dir, rt.handle().clone()).unwrap();
    for chunk in records.chunks(BATCH) {
        store.write(chunk);
    }
    store.wait();
}

/// The chain fed from memory; outputs to `sink` if given. Events per second.
fn in_memory(
    plugins: &Path,
    data_dir: &Path,
    batches: &[Vec<RawRecord>],
    mut sink: Option<&mut dyn Sink>,
) -> f64 {
    let c = config(data_dir, Some(&CHAIN));
    let engine = PluginEngine::new(Some(data_dir.join("cache"))).unwrap();
    let set = load_plugins(&engine, plugins).unwrap();
    let mut shards = Shards::new(c.stage_specs().unwrap(), set.loaded);
    shards.open(ShardId::Local, BTreeMap::new()).unwrap();
    let pipeline = shards.get_mut(ShardId::Local).unwrap();
    let n: usize = batches.iter().map(Vec::len).sum();
    let started = Instant::now();
    for batch in batches {
        let outputs = pipeline.push_lane(SALES, Batch::Raw(batch.clone()), 0);
        if let Some(sink) = sink.as_deref_mut() {
            sink.write_outputs(&outputs).unwrap();
        }
    }
    let outputs = pipeline.flush_windows();
    if let Some(sink) = sink {
        sink.write_outputs(&outputs).unwrap();
        sink.flush().unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn replay_rate(
    plugins: &Path,
    data_dir: &Path,
    id: &str,
    stages: Option<&[&str]>,
    streams: Option<&[&str]>,
) -> (f64, u64) {
    let summary = replay(ReplayOptions {
        config: config(data_dir, stages),
        plugins_dir: plugins.to_path_buf(),
        topics: None,
        partitions: None,
        range: Default::default(),
        stages: None,
        candidates: Vec::new(),
        params: Vec::new(),
        id: id.into(),
        out_dir: data_dir.join("replays").join(id),
        clickhouse: false,
        progress: false,
        streams: streams.map(|s| s.iter().map(|x| x.to_string()).collect()),
        dead_letters: None,
        recover: false,
    })
    .unwrap();
    (
        summary.records as f64 / summary.processing_secs,
        summary.records,
    )
}

/// Every record archived under `data_dir`, listed, read and decoded by the replay's own reader.
fn read_archive(data_dir: &Path) -> usize {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reader = ArchiveReader::open(&RawStoreConfig::default(), data_dir).unwrap();
    rt.block_on(async {
        let mut count = 0;
        let objects = reader.objects(SALES, None, Range::default()).await.unwrap();
        for object in objects.values().flatten() {
            count += reader.read(object).await.unwrap().len();
        }
        count
    })
}

fn main() {
    let n: usize = std::env::var("REPLAY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    // Only the chain's plugins, so loading stays short.
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for p in ["sales-cleaner", "revenue-aggregator", "sales-spike-alert"] {
        let file = format!("{p}.wasm");
        std::fs::copy(repo().join("plugins").join(&file), plugins.join(&file))
            .expect("run plugins/build.sh first");
    }
    let data = dir.path().join("data");
    let records = sales(n);
    let bytes: usize = records.iter().map(|r| r.payload.len()).sum();
    let started = Instant::now();
    archive(&data, &records);
    println!(
        "archived {n} sales ({:.1} MB of payload) in {:.2} s",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let batches: Vec<Vec<RawRecord>> = records.chunks(BATCH).map(<[RawRecord]>::to_vec).collect();
    let rounds: usize = std::env::var("REPLAY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    // Each round measures every way once, back to back, so a round's ratios compare runs that
    // shared the machine's mood; the headline ratios are the medians of those per-round ratios.
    let mut runs: Vec<[f64; 4]> = Vec::new();
    for round in 0..rounds {
        let out = dir.path().join(format!("memory-out-{round}"));
        let mut files = FileSink::new(&out).unwrap();
        let a = in_memory(&plugins, &data, &batches, None);
        let id = format!("alerts-{round}");
        let (d, read) = replay_rate(&plugins, &data, &id, Some(&CHAIN), Some(&["sales_alerts"]));
        assert_eq!(read as usize, n, "the replay read every archived sale");
        let b = in_memory(&plugins, &data, &batches, Some(&mut files));
        let (c, read) = replay_rate(
            &plugins,
            &data,
            &format!("chain-{round}"),
            Some(&CHAIN),
            None,
        );
        assert_eq!(read as usize, n, "the replay read every archived sale");
        println!("round {round}: in memory {a:.0} ev/s, replay writing the alerts only {d:.0} ev/s ({:.2}), in memory + files {b:.0} ev/s, replay {c:.0} ev/s ({:.2})", d / a, c / a);
        runs.push([a, b, c, d]);
    }
    let best = |k: usize| runs.iter().map(|r| r[k]).fold(0f64, f64::max);
    let median_ratio = |k: usize| {
        let mut ratios: Vec<f64> = runs.iter().map(|r| r[k] / r[0]).collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    };
    let (memory, memory_files, replayed, alerts_only) = (best(0), best(1), best(2), best(3));
    let (ratio, ratio_alerts_only) = (median_ratio(2), median_ratio(3));
    println!(
        "chain, best of {rounds}: in memory {memory:.0} ev/s, in memory writing outputs {memory_files:.0} ev/s, replay {replayed:.0} ev/s, replay writing the alerts only (--streams sales_alerts) {alerts_only:.0} ev/s"
    );
    println!(
        "chain, median of the {rounds} rounds' ratios to in memory: in memory writing outputs {:.2}, replay {ratio:.2}, replay writing the alerts only {ratio_alerts_only:.2}",
        median_ratio(1)
    );
    // The archive reader's own work (read, inflate, decode every object), on one thread.
    let started = Instant::now();
    let decoded = read_archive(&data);
    let reader_rate = decoded as f64 / started.elapsed().as_secs_f64();
    println!(
        "archive reader alone: {decoded} records at {reader_rate:.0} ev/s, {:.2} us per record ({:.2}x the chain's best in-memory rate)",
        1e6 / reader_rate,
        reader_rate / memory
    );

    // The whole shipped pipeline on a simulated sample: the rate, and what a day takes.
    let whole = dir.path().join("whole");
    let steps: u64 = 40_000;
    let sim_config = config(&whole, None)
        .sources
        .iter()
        .find_map(|s| match s {
            shelfstream::sources::SourceConfig::Simulator(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    let mut sim = Simulator::new(&sim_config, 1_793_520_000_000);
    let mut all = Vec::new();
    for _ in 0..steps {
        all.extend(sim.step());
    }
    let messages = all.len();
    let simulated_ms = sim_config.time_scale * 1000.0 / sim_config.rate * steps as f64;
    // As the simulator source batches them: per topic, about a batch per round.
    let mut by_topic: BTreeMap<String, Vec<RawRecord>> = BTreeMap::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut store = RawStore::new(&RawStoreConfig::default(), &whole, rt.handle().clone()).unwrap();
    for chunk in all.chunks(BATCH) {
        for r in chunk {
            by_topic.entry(r.topic.clone()).or_default().push(r.clone());
        }
        for (_, records) in std::mem::take(&mut by_topic) {
            store.write(&records);
        }
    }
    store.wait();
    let all_plugins = repo().join("plugins");
    let (rate, read) = replay_rate(&all_plugins, &whole, "whole", None, None);
    let day_ms = 86_400_000.0;
    let messages_per_day = messages as f64 * day_ms / simulated_ms;
    println!(
        "whole pipeline ({} stages): {read} messages ({:.0} simulated minutes) replayed at {rate:.0} messages/s; one simulated day of the default simulator ({:.0} messages) takes {:.0} s",
        config(&whole, None).stages.len(),
        simulated_ms / 60_000.0,
        messages_per_day,
        messages_per_day / rate
    );
    println!(
        "replay batch={BATCH} in_memory_ev_s={memory:.0} replay_ev_s={replayed:.0} ratio={ratio:.2} replay_alerts_only_ev_s={alerts_only:.0} ratio_alerts_only={ratio_alerts_only:.2}"
    );
}
