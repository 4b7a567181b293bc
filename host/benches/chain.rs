//! Benchmark: events/s through cleaner -> window -> alert (sales-cleaner -> revenue-aggregator ->
//! sales-spike-alert) on simulated sales, as WebAssembly components in the real pipeline, and the
//! same plugin code compiled natively, in the same run; plus per-call overhead and hot-swap pause.
//!
//!     plugins/build.sh && cargo bench -p host --bench chain
//!
//! Figures are printed, never asserted. Ratios compare measurements taken in the same run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use shelfstream::pipeline::{Batch, Pipeline, Stage, StageSpec};
use shelfstream::plugin::{Limits, PluginEngine, RawRecord};
use shelfstream::sim::{Simulator, SimulatorConfig};
use shelfstream::sinks::{MemorySink, Sink};
use shelfstream::topics::SALES;
use shelfstream_sdk as sdk;
use shelfstream_sdk::Plugin;

const LATENESS_MS: i64 = 30_000;

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The components measured: `plugins/`, or `CHAIN_PLUGINS` (to compare two builds).
fn plugin(name: &str) -> std::path::PathBuf {
    std::env::var_os("CHAIN_PLUGINS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo().join("plugins"))
        .join(format!("{name}.wasm"))
}

fn sales_records(n: usize) -> Vec<RawRecord> {
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
    out
}

fn spec(name: &str, plugin: &str, input: &str, output: &str) -> StageSpec {
    StageSpec {
        name: name.into(),
        plugin: plugin.into(),
        inputs: vec![input.into()],
        output: output.into(),
        params: Vec::new(),
        limits: Limits {
            memory_bytes: 256 << 20,
            deadline: Duration::from_secs(10),
        },
        allowed_lateness_ms: LATENESS_MS,
        checkpoint_every: 65_536,
        max_failures: 3,
    }
}

fn wasm_pipeline(engine: &PluginEngine) -> (Pipeline, MemorySink) {
    let load = |name: &str| {
        engine
            .load(&plugin(name))
            .expect("run plugins/build.sh first")
    };
    let stages = vec![
        Stage::start(
            spec("clean", "sales-cleaner", SALES, "sales"),
            load("sales-cleaner"),
            None,
        )
        .unwrap(),
        Stage::start(
            spec("window", "revenue-aggregator", "sales", "sales_1m"),
            load("revenue-aggregator"),
            None,
        )
        .unwrap(),
        Stage::start(
            spec("alert", "sales-spike-alert", "sales_1m", "alerts"),
            load("sales-spike-alert"),
            None,
        )
        .unwrap(),
    ];
    let sink = MemorySink::new(false);
    (Pipeline::new(stages), sink)
}

/// The stage semantics (lateness, watermark, on-watermark) around a natively compiled plugin.
struct NativeStage<P> {
    plugin: P,
    max_seen: i64,
    watermark: i64,
}

impl<P: Plugin> NativeStage<P> {
    fn new() -> Self {
        NativeStage {
            plugin: sdk::rt::new_plugin::<P>(Vec::new()).unwrap(),
            max_seen: i64::MIN,
            watermark: i64::MIN,
        }
    }

    fn process(&mut self, batch: Vec<sdk::Event>) -> Vec<sdk::Event> {
        let wm = self.watermark;
        let on_time: Vec<sdk::Event> = batch
            .into_iter()
            .filter(|e| sdk::event_time(e) >= wm)
            .collect();
        if on_time.is_empty() {
            return Vec::new();
        }
        let newest = on_time.iter().map(sdk::event_time).max().unwrap();
        let mut out = self.plugin.process(on_time);
        self.max_seen = self.max_seen.max(newest);
        let next = self.max_seen.saturating_sub(LATENESS_MS);
        if next > self.watermark {
            self.watermark = next;
            out.extend(self.plugin.on_watermark(next));
        }
        out
    }
}

struct NativeChain {
    cleaner: sales_cleaner::SalesCleaner,
    window: NativeStage<revenue_aggregator::RevenueAggregator>,
    alert: NativeStage<sales_spike_alert::SalesSpikeAlert>,
    outputs: u64,
}

impl NativeChain {
    fn new() -> Self {
        NativeChain {
            cleaner: sdk::rt::new_plugin(Vec::new()).unwrap(),
            window: NativeStage::new(),
            alert: NativeStage::new(),
            outputs: 0,
        }
    }

    fn push(&mut self, batch: Vec<sdk::RawRecord>) {
        let cleaned = self.cleaner.clean(batch);
        let events: Vec<sdk::Event> = cleaned
            .into_iter()
            .filter_map(Result::ok)
            .flatten()
            .collect();
        self.outputs += events.len() as u64;
        let metrics = self.window.process(events);
        self.outputs += metrics.len() as u64;
        let alerts = self.alert.process(metrics);
        self.outputs += alerts.len() as u64;
        black_box(alerts);
    }
}

fn to_sdk(r: &RawRecord) -> sdk::RawRecord {
    sdk::RawRecord {
        topic: r.topic.clone(),
        partition: r.partition,
        offset: r.offset,
        key: r.key.clone(),
        payload: r.payload.clone(),
        timestamp: r.timestamp,
    }
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn main() {
    let engine = PluginEngine::new(None).unwrap();
    if std::env::var("CHAIN_PROFILE").is_ok_and(|v| v == "native") {
        // Only the native chain at batch 1024, several rounds: for `perf record`.
        let records: Vec<sdk::RawRecord> = sales_records(200_000).iter().map(to_sdk).collect();
        let started = Instant::now();
        for _ in 0..10 {
            let mut native = NativeChain::new();
            for c in records.chunks(1024) {
                native.push(c.to_vec());
            }
        }
        println!("native ev/s: {:.0}", rate(2_000_000, started.elapsed()));
        return;
    }
    if std::env::var_os("CHAIN_PROFILE").is_some() {
        // Only the WebAssembly chain at batch 1024, several rounds: for `perf record`.
        let records = sales_records(200_000);
        let started = Instant::now();
        for _ in 0..5 {
            let (mut pipeline, mut sink) = wasm_pipeline(&engine);
            for c in records.chunks(1024) {
                let out = pipeline.push(SALES, Batch::Raw(c.to_vec()));
                sink.write_outputs(&out).unwrap();
            }
        }
        println!("wasm ev/s: {:.0}", rate(1_000_000, started.elapsed()));
        return;
    }
    println!("shelfstream chain benchmark: sales-cleaner -> revenue-aggregator (1m tumbling) -> sales-spike-alert");
    println!(
        "wasmtime component-model-async feature: {}",
        cfg!(feature = "component-model-async")
    );
    println!();
    println!(
        "{:>6} {:>9} {:>14} {:>14} {:>12} {:>10}",
        "batch", "events", "wasm ev/s", "native ev/s", "wasm/native", "outputs"
    );

    for (batch_size, n) in [(1usize, 20_000usize), (64, 200_000), (1024, 400_000)] {
        let records = sales_records(n);
        let wasm_batches: Vec<Batch> = records
            .chunks(batch_size)
            .map(|c| Batch::Raw(c.to_vec()))
            .collect();
        let native_batches: Vec<Vec<sdk::RawRecord>> = records
            .chunks(batch_size)
            .map(|c| c.iter().map(to_sdk).collect())
            .collect();

        let (mut pipeline, mut sink) = wasm_pipeline(&engine);
        let started = Instant::now();
        for b in wasm_batches {
            let out = pipeline.push(SALES, b);
            sink.write_outputs(&out).unwrap();
        }
        let wasm = started.elapsed();
        let counts = sink.take().counts;
        let wasm_outputs: u64 = counts.values().sum();

        let mut native = NativeChain::new();
        let started = Instant::now();
        for b in native_batches {
            native.push(b);
        }
        let native_time = started.elapsed();
        assert_eq!(
            native.outputs, wasm_outputs,
            "the native baseline computes the same outputs"
        );

        println!(
            "{batch_size:>6} {n:>9} {:>14.0} {:>14.0} {:>11.2}x {:>10}",
            rate(n, wasm),
            rate(n, native_time),
            wasm.as_secs_f64() / native_time.as_secs_f64(),
            wasm_outputs
        );
    }

    // Per stage, batch 1024: where the chain's time goes.
    let records = sales_records(200_000);
    let cleaner = engine.load(&plugin("sales-cleaner")).unwrap();
    let mut wasm_cleaner = cleaner.instantiate(&Limits::default()).unwrap();
    wasm_cleaner.configure(&[]).unwrap();
    let started = Instant::now();
    let mut sales = Vec::new();
    for chunk in records.chunks(1024) {
        for r in wasm_cleaner.clean(chunk).unwrap() {
            sales.extend(r.unwrap_or_default());
        }
    }
    let wasm_clean = started.elapsed();
    let mut native_cleaner: sales_cleaner::SalesCleaner = sdk::rt::new_plugin(Vec::new()).unwrap();
    let native_records: Vec<sdk::RawRecord> = records.iter().map(to_sdk).collect();
    let started = Instant::now();
    let mut native_sales = Vec::new();
    for chunk in native_records.chunks(1024) {
        for r in native_cleaner.clean(chunk.to_vec()) {
            native_sales.extend(r.unwrap_or_default());
        }
    }
    let native_clean = started.elapsed();
    // What JSON tokenising alone costs natively: the floor under any JSON cleaner.
    let started = Instant::now();
    for r in &native_records {
        black_box(serde_json::from_slice::<serde::de::IgnoredAny>(&r.payload).unwrap());
    }
    let tokenise = started.elapsed();
    let aggregator = engine.load(&plugin("revenue-aggregator")).unwrap();
    let mut wasm_window = aggregator.instantiate(&Limits::default()).unwrap();
    wasm_window.configure(&[]).unwrap();
    let started = Instant::now();
    for chunk in sales.chunks(1024) {
        wasm_window.process(chunk).unwrap();
        let wm = shelfstream::plugin::event_time(chunk.last().unwrap()) - LATENESS_MS;
        black_box(wasm_window.on_watermark(wm).unwrap());
    }
    let wasm_agg = started.elapsed();
    let mut native_window: revenue_aggregator::RevenueAggregator =
        sdk::rt::new_plugin(Vec::new()).unwrap();
    let started = Instant::now();
    for chunk in native_sales.chunks(1024) {
        native_window.process(chunk.to_vec());
        let wm = sdk::event_time(chunk.last().unwrap()) - LATENESS_MS;
        black_box(native_window.on_watermark(wm));
    }
    let native_agg = started.elapsed();
    // The alert rule on the aggregator's metric rows (made again, untimed: keeping them while
    // timing the aggregator would time the host's heap growth too).
    let (mut metrics, mut native_metrics) = (Vec::new(), Vec::new());
    let mut window = aggregator.instantiate(&Limits::default()).unwrap();
    window.configure(&[]).unwrap();
    let mut native_window: revenue_aggregator::RevenueAggregator =
        sdk::rt::new_plugin(Vec::new()).unwrap();
    for (chunk, native_chunk) in sales.chunks(1024).zip(native_sales.chunks(1024)) {
        window.process(chunk).unwrap();
        native_window.process(native_chunk.to_vec());
        let wm = shelfstream::plugin::event_time(chunk.last().unwrap()) - LATENESS_MS;
        metrics.extend(window.on_watermark(wm).unwrap());
        native_metrics.extend(native_window.on_watermark(wm));
    }
    let alert = engine.load(&plugin("sales-spike-alert")).unwrap();
    let mut wasm_alert = alert.instantiate(&Limits::default()).unwrap();
    wasm_alert.configure(&[]).unwrap();
    let started = Instant::now();
    for chunk in metrics.chunks(1024) {
        black_box(wasm_alert.process(chunk).unwrap());
    }
    let wasm_rule = started.elapsed();
    let mut native_alert: sales_spike_alert::SalesSpikeAlert =
        sdk::rt::new_plugin(Vec::new()).unwrap();
    let started = Instant::now();
    for chunk in native_metrics.chunks(1024) {
        black_box(native_alert.process(chunk.to_vec()));
    }
    let native_rule = started.elapsed();
    // The boundary alone: the same sales into a plugin that skips them (sales-spike-alert reads
    // only metric rows): copying each sale's strings in, and dropping them.
    let alert = engine.load(&plugin("sales-spike-alert")).unwrap();
    let mut skipping = alert.instantiate(&Limits::default()).unwrap();
    skipping.configure(&[]).unwrap();
    let started = Instant::now();
    for chunk in sales.chunks(1024) {
        black_box(skipping.process(chunk).unwrap());
    }
    let boundary = started.elapsed();
    // And metric rows into a plugin that skips them (the aggregator reads only sales).
    let mut skipping = aggregator.instantiate(&Limits::default()).unwrap();
    skipping.configure(&[]).unwrap();
    let started = Instant::now();
    for chunk in metrics.chunks(1024) {
        black_box(skipping.process(chunk).unwrap());
    }
    let metric_boundary = started.elapsed();
    println!();
    println!("per stage at batch 1024 (200,000 sales; native includes the batch copy the host does not need):");
    println!(
        "  cleaner:    wasm {:>9.0} ev/s  native {:>9.0} ev/s  ratio {:.2}x",
        rate(200_000, wasm_clean),
        rate(200_000, native_clean),
        wasm_clean.as_secs_f64() / native_clean.as_secs_f64()
    );
    println!(
        "              native: {:.0} ns per record, of which {:.0} ns only tokenise its JSON ({} bytes on average)",
        native_clean.as_nanos() as f64 / 200_000.0,
        tokenise.as_nanos() as f64 / 200_000.0,
        native_records.iter().map(|r| r.payload.len()).sum::<usize>() / native_records.len()
    );
    println!(
        "  aggregator: wasm {:>9.0} ev/s  native {:>9.0} ev/s  ratio {:.2}x",
        rate(200_000, wasm_agg),
        rate(200_000, native_agg),
        wasm_agg.as_secs_f64() / native_agg.as_secs_f64()
    );
    println!(
        "  alert rule: wasm {:>9.0} ev/s  native {:>9.0} ev/s  ratio {:.2}x  ({} metric rows, {:.2} per sale)",
        rate(metrics.len(), wasm_rule),
        rate(metrics.len(), native_rule),
        wasm_rule.as_secs_f64() / native_rule.as_secs_f64(),
        metrics.len(),
        metrics.len() as f64 / sales.len() as f64
    );
    println!(
        "  boundary:   {:>9.0} sales/s into a plugin that skips them ({:.0} ns per sale)",
        rate(sales.len(), boundary),
        boundary.as_nanos() as f64 / sales.len() as f64
    );
    println!(
        "              {:>9.0} metric rows/s into a plugin that skips them ({:.0} ns per row)",
        rate(metrics.len(), metric_boundary),
        metric_boundary.as_nanos() as f64 / metrics.len() as f64
    );

    // Per-call overhead: an empty batch into the aggregator, wasm vs a native call.
    let aggregator = engine.load(&plugin("revenue-aggregator")).unwrap();
    let mut instance = aggregator.instantiate(&Limits::default()).unwrap();
    instance.configure(&[]).unwrap();
    let calls = 200_000;
    let started = Instant::now();
    for _ in 0..calls {
        black_box(instance.process(black_box(&[])).unwrap());
    }
    let wasm_call = started.elapsed() / calls;
    let mut native: revenue_aggregator::RevenueAggregator =
        sdk::rt::new_plugin(Vec::new()).unwrap();
    let started = Instant::now();
    for _ in 0..calls {
        black_box(native.process(black_box(Vec::new())));
    }
    let native_call = started.elapsed() / calls;
    println!();
    println!("per-call overhead (empty batch): wasm {wasm_call:?}, native {native_call:?}");

    // Hot-swap pause: the aggregator holding 5,000 open windows swaps to a new version.
    let mut stage = Stage::start(
        spec("window", "revenue-aggregator", "sales", "sales_1m"),
        aggregator.clone(),
        None,
    )
    .unwrap();
    let mut dead = Vec::new();
    let events: Vec<_> = (0..5_000)
        .map(|i| {
            shelfstream::plugin::Event::Sale(shelfstream::plugin::bindings::Sale {
                transaction_id: format!("T{i}"),
                line: 0,
                store_id: format!("S{:03}", i % 50),
                product_id: format!("SKU-{:05}", i / 50),
                category: None,
                quantity: 1,
                unit_price: 1.0,
                total_amount: 1.0,
                customer_id: None,
                payment_method: "card".into(),
                timestamp: 1_000,
            })
        })
        .collect();
    stage.process(Batch::events(events), &mut dead);
    let mut bytes = std::fs::read(plugin("revenue-aggregator")).unwrap();
    bytes.extend_from_slice(&[0, 5, 4, b'b', b'e', b'n', b'c']); // a custom section: a new version hash
    let v2 = engine
        .load_bytes(std::path::Path::new("revenue-aggregator.wasm"), &bytes)
        .unwrap();
    let pause = stage.swap(v2).unwrap();
    println!("hot-swap pause with 5,000 open windows: {pause:?} (snapshot, instantiate, configure, restore)");
}
