//! Benchmark: events/s through cleaner -> window -> alert (sales-cleaner -> revenue-aggregator ->
//! sales-spike-alert) on simulated sales, as WebAssembly components in the real pipeline, and the
//! same plugin code compiled natively with the same SDK types, in the same run; per stage the
//! time inside the plugin against the time crossing the boundary; the per-call overhead and the
//! hot-swap pause. The last line is machine-readable:
//!
//!     chain batch=1024 wasm_ev_s=N native_ev_s=N ratio=X boundary_ns_per_event=N
//!
//!     plugins/build.sh --fixtures && cargo bench --workspace --bench chain
//!
//! Figures are printed, never asserted. Ratios compare measurements taken in the same run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use shelfstream::pipeline::{Batch, Pipeline, Stage, StageSpec};
use shelfstream::plugin::bindings::Blobs;
use shelfstream::plugin::{
    Event, EventBatch, Limits, PluginEngine, PluginInstance, RawBatch, RawRecord,
};
use shelfstream::sim::{Simulator, SimulatorConfig};
use shelfstream::sinks::MemorySink;
use shelfstream::topics::SALES;
use shelfstream_sdk as sdk;
use shelfstream_sdk::{Emit, Plugin};

const LATENESS_MS: i64 = 30_000;

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> std::path::PathBuf {
    repo()
        .join("tests/fixtures/wasm")
        .join(format!("{name}.wasm"))
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
    spec_every(name, plugin, input, output, 65_536)
}

fn spec_every(
    name: &str,
    plugin: &str,
    input: &str,
    output: &str,
    checkpoint_every: usize,
) -> StageSpec {
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
        checkpoint_every,
        max_failures: 3,
    }
}

fn wasm_pipeline(engine: &PluginEngine) -> (Pipeline, MemorySink) {
    wasm_pipeline_every(engine, 65_536)
}

/// The chain as stages of a pipeline, each checkpointing its state every `every` events.
fn wasm_pipeline_every(engine: &PluginEngine, every: usize) -> (Pipeline, MemorySink) {
    let load = |name: &str| {
        engine
            .load(&plugin(name))
            .expect("run plugins/build.sh first")
    };
    let stages = vec![
        Stage::start(
            spec_every("clean", "sales-cleaner", SALES, "sales", every),
            load("sales-cleaner"),
            None,
        )
        .unwrap(),
        Stage::start(
            spec_every("window", "revenue-aggregator", "sales", "sales_1m", every),
            load("revenue-aggregator"),
            None,
        )
        .unwrap(),
        Stage::start(
            spec_every("alert", "sales-spike-alert", "sales_1m", "alerts", every),
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

    fn process(&mut self, batch: sdk::EventBatch) -> sdk::Batch {
        let wm = self.watermark;
        let mut batch = sdk::Batch::new(batch);
        if !batch.events().all(|e| e.time() >= wm) {
            let mut on_time = Emit::new();
            (batch.events().filter(|e| e.time() >= wm)).for_each(|e| on_time.view(e));
            batch = sdk::Batch::new(on_time.finish());
        }
        let mut out = Emit::new();
        let Some(newest) = batch.events().map(|e| e.time()).max() else {
            return sdk::Batch::new(out.finish());
        };
        self.plugin.process(&batch, &mut out);
        self.max_seen = self.max_seen.max(newest);
        let next = self.max_seen.saturating_sub(LATENESS_MS);
        if next > self.watermark {
            self.watermark = next;
            sdk::rt::set_native_watermark(next);
            self.plugin.on_watermark(next, &mut out);
        }
        sdk::Batch::new(out.finish())
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

    fn push(&mut self, batch: &sdk::RawBatch) {
        let cleaned = sdk::rt::clean(&mut self.cleaner, batch);
        self.outputs += cleaned.origins.len() as u64;
        let metrics = self.window.process(cleaned.events);
        self.outputs += metrics.len() as u64;
        let alerts = self.alert.process(metrics.into_columns());
        self.outputs += alerts.len() as u64;
        black_box(alerts);
    }
}

fn native_batches(records: &[RawRecord], size: usize) -> Vec<sdk::RawBatch> {
    (records.chunks(size))
        .map(|c| sdk::raw_batch(SALES, c.iter().map(|r| r.payload.as_slice())))
        .collect()
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn ns_per(elapsed: Duration, n: usize) -> f64 {
    elapsed.as_nanos() as f64 / n.max(1) as f64
}

fn instance(engine: &PluginEngine, path: &std::path::Path) -> PluginInstance {
    let plugin = engine
        .load(path)
        .expect("run plugins/build.sh --fixtures first");
    let mut instance = plugin.instantiate(&Limits::default()).unwrap();
    instance.configure(&[]).unwrap();
    instance
}

/// Best of `rounds` timings of `f` (the machine is shared and noisy).
fn best(rounds: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..rounds).map(|_| f()).min().unwrap()
}

fn main() {
    let engine = PluginEngine::new(None).unwrap();
    if std::env::var("CHAIN_PROFILE").is_ok_and(|v| v == "native") {
        // Only the native chain at batch 1024, several rounds: for `perf record`.
        let batches = native_batches(&sales_records(200_000), 1024);
        let started = Instant::now();
        for _ in 0..10 {
            let mut native = NativeChain::new();
            batches.iter().for_each(|b| native.push(b));
        }
        println!("native ev/s: {:.0}", rate(2_000_000, started.elapsed()));
        return;
    }
    if let Ok(stage) = std::env::var("CHAIN_PROFILE") {
        if let Some(stage) = stage.strip_prefix("stage=") {
            profile_stage(&engine, stage);
            return;
        }
    }
    if std::env::var_os("CHAIN_PROFILE").is_some() {
        // Only the WebAssembly chain at batch 1024, several rounds: for `perf record`.
        let records = sales_records(200_000);
        let rounds: Vec<Vec<Vec<RawRecord>>> = (0..5)
            .map(|_| records.chunks(1024).map(<[_]>::to_vec).collect())
            .collect();
        let started = Instant::now();
        for batches in rounds {
            let (mut pipeline, _) = wasm_pipeline(&engine);
            for c in batches {
                black_box(pipeline.push(SALES, Batch::Raw(c)));
            }
        }
        println!("wasm ev/s: {:.0}", rate(1_000_000, started.elapsed()));
        return;
    }
    println!("shelfstream chain benchmark: sales-cleaner -> revenue-aggregator (1m tumbling) -> sales-spike-alert");
    println!(
        "contract 0.2.0 (columnar batches); wasmtime concurrency support: {}",
        cfg!(feature = "component-model-async")
    );
    println!(
        "the pipeline runs the chain only: outputs are not materialised as rows (sinks do that)"
    );
    println!();
    println!(
        "{:>6} {:>9} {:>14} {:>14} {:>12} {:>10}",
        "batch", "events", "wasm ev/s", "native ev/s", "wasm/native", "outputs"
    );

    let mut last = (0.0, 0.0, 0.0);
    let mut last_alerts_per_1000 = 0.0;
    for (batch_size, n) in [(1usize, 20_000usize), (64, 200_000), (1024, 400_000)] {
        let records = sales_records(n);
        let wasm_batches: Vec<Batch> = records
            .chunks(batch_size)
            .map(|c| Batch::Raw(c.to_vec()))
            .collect();
        let native_input = native_batches(&records, batch_size);

        let (mut pipeline, _) = wasm_pipeline(&engine);
        let mut wasm_outputs = 0u64;
        let mut alerts = 0usize;
        let started = Instant::now();
        for b in wasm_batches {
            let out = pipeline.push(SALES, b);
            wasm_outputs += out
                .batches
                .iter()
                .map(|o| o.events.len() as u64)
                .sum::<u64>();
            alerts += out.batches.iter().map(|o| o.events.alerts()).sum::<usize>();
            black_box(out);
        }
        let wasm = started.elapsed();

        let mut native = NativeChain::new();
        let started = Instant::now();
        native_input.iter().for_each(|b| native.push(b));
        let native_time = started.elapsed();
        assert_eq!(
            native.outputs, wasm_outputs,
            "the native baseline computes the same outputs"
        );
        let ratio = wasm.as_secs_f64() / native_time.as_secs_f64();
        println!(
            "{batch_size:>6} {n:>9} {:>14.0} {:>14.0} {:>11.2}x {:>10}",
            rate(n, wasm),
            rate(n, native_time),
            ratio,
            wasm_outputs
        );
        last = (rate(n, wasm), rate(n, native_time), ratio);
        last_alerts_per_1000 = alerts as f64 * 1000.0 / n as f64;
    }

    // Per stage, batch 1024: the inputs of each stage, made once.
    let n = 200_000;
    let records = sales_records(n);
    let raw: Vec<RawBatch> = records.chunks(1024).map(RawBatch::from_records).collect();
    let native_raw = native_batches(&records, 1024);
    let (sales, native_sales) = cleaned(&engine, &raw, &native_raw);
    let sale_count: usize = sales.iter().map(EventBatch::len).sum();
    let mut window = instance(&engine, &plugin("revenue-aggregator"));
    let mut native_window: revenue_aggregator::RevenueAggregator =
        sdk::rt::new_plugin(Vec::new()).unwrap();
    let (mut metrics, mut native_metrics) = (Vec::new(), Vec::new());
    for (b, nb) in sales.iter().zip(&native_sales) {
        let wm = b.times().max().unwrap() - LATENESS_MS;
        window.process(b).unwrap();
        metrics.push(window.on_watermark(wm).unwrap());
        sdk::rt::process(&mut native_window, nb.clone());
        native_metrics.push(sdk::rt::on_watermark(&mut native_window, wm));
    }
    let metric_count: usize = metrics.iter().map(EventBatch::len).sum();
    let watermarks: Vec<i64> = (sales.iter())
        .map(|b| b.times().max().unwrap() - LATENESS_MS)
        .collect();

    // Time each stage's calls, wasm and native, best of 3.
    let wasm_clean = best(3, || {
        let mut c = instance(&engine, &plugin("sales-cleaner"));
        let started = Instant::now();
        raw.iter()
            .for_each(|b| drop(black_box(c.clean(b).unwrap())));
        started.elapsed()
    });
    let native_clean = best(3, || {
        let mut c: sales_cleaner::SalesCleaner = sdk::rt::new_plugin(Vec::new()).unwrap();
        let started = Instant::now();
        native_raw
            .iter()
            .for_each(|b| drop(black_box(sdk::rt::clean(&mut c, b))));
        started.elapsed()
    });
    let wasm_agg = best(3, || {
        let mut w = instance(&engine, &plugin("revenue-aggregator"));
        let started = Instant::now();
        for (b, &wm) in sales.iter().zip(&watermarks) {
            w.process(b).unwrap();
            black_box(w.on_watermark(wm).unwrap());
        }
        started.elapsed()
    });
    let native_agg = best(3, || {
        let mut w: revenue_aggregator::RevenueAggregator = sdk::rt::new_plugin(Vec::new()).unwrap();
        let copies = native_sales.clone(); // the wasm side lowers from borrowed columns
        let started = Instant::now();
        for (b, &wm) in copies.into_iter().zip(&watermarks) {
            black_box(sdk::rt::process(&mut w, b));
            black_box(sdk::rt::on_watermark(&mut w, wm));
        }
        started.elapsed()
    });
    let wasm_rule = best(3, || {
        let mut a = instance(&engine, &plugin("sales-spike-alert"));
        let started = Instant::now();
        metrics
            .iter()
            .for_each(|b| drop(black_box(a.process(b).unwrap())));
        started.elapsed()
    });
    let native_rule = best(3, || {
        let mut a: sales_spike_alert::SalesSpikeAlert = sdk::rt::new_plugin(Vec::new()).unwrap();
        let copies = native_metrics.clone();
        let started = Instant::now();
        copies
            .into_iter()
            .for_each(|b| drop(black_box(sdk::rt::process(&mut a, b))));
        started.elapsed()
    });

    // The boundary alone. In: a batch into a plugin that skips its kind (the alert rule reads
    // only metric rows, the aggregator only sales), less the empty call. Out: the same batch
    // through the `malformed` fixture in its `pass` mode, which hands back the batch it was
    // given untouched, less the way in.
    let empty = EventBatch::empty();
    let mut agg = instance(&engine, &plugin("revenue-aggregator"));
    let per_call = best(3, || {
        let started = Instant::now();
        for _ in 0..20_000 {
            black_box(agg.process(black_box(&empty)).unwrap());
        }
        started.elapsed() / 20_000
    });
    let native_call = best(3, || {
        let mut w: revenue_aggregator::RevenueAggregator = sdk::rt::new_plugin(Vec::new()).unwrap();
        let started = Instant::now();
        for _ in 0..20_000 {
            black_box(sdk::rt::process(&mut w, black_box(sdk_empty())));
        }
        started.elapsed() / 20_000
    });
    let through = |path: &std::path::Path, params: &[(String, String)], batches: &[EventBatch]| {
        best(3, || {
            let plugin = engine
                .load(path)
                .expect("run plugins/build.sh --fixtures first");
            let mut p = plugin.instantiate(&Limits::default()).unwrap();
            p.configure(params).unwrap();
            let started = Instant::now();
            batches
                .iter()
                .for_each(|b| drop(black_box(p.process(b).unwrap())));
            started
                .elapsed()
                .saturating_sub(per_call * batches.len() as u32)
        })
    };
    let sales_in = through(&plugin("sales-spike-alert"), &[], &sales);
    let metrics_in = through(&plugin("revenue-aggregator"), &[], &metrics);
    let pass = fixture("malformed");
    let have_pass = pass.exists();
    let mode = [("mode".to_string(), "pass".to_string())];
    let out_of = |batches: &[EventBatch], into: Duration| match have_pass {
        true => through(&pass, &mode, batches).saturating_sub(into),
        false => Duration::ZERO,
    };
    let sales_out = out_of(&sales, sales_in);
    let metrics_out = out_of(&metrics, metrics_in);

    // The dictionary sent with every batch (the contract) against one kept per stream: in a
    // steady state a per-stream dictionary sends no new entries, so the same sales batches with
    // an empty dictionary show what sending it costs (the rule skips sales: no id is read).
    let no_dictionary: Vec<EventBatch> = (sales.iter())
        .map(|b| EventBatch {
            dictionary: Blobs::new(),
            parts: b.parts.clone(),
        })
        .collect();
    let sales_in_bare = through(&plugin("sales-spike-alert"), &[], &no_dictionary);
    let dictionary_bytes: usize = (sales.iter())
        .map(|b| b.dictionary.bytes.len() + 4 * b.dictionary.offsets.len())
        .sum();
    let dictionary_strings: usize = sales.iter().map(|b| b.dictionary.len()).sum();

    // Alerts cross as records (rare, text-rich): what one costs, into a plugin that skips them.
    let alert_rows: Vec<Event> = (0..1024).map(sample_alert).collect();
    let alert_batches: Vec<EventBatch> = (0..50)
        .map(|_| EventBatch::from_rows(&alert_rows))
        .collect();
    let alerts_in = through(&plugin("revenue-aggregator"), &[], &alert_batches);

    println!();
    println!(
        "per stage at batch 1024 ({n} transactions -> {sale_count} sales -> {metric_count} metric rows), best of 3:"
    );
    let row = |name: &str, events: usize, wasm: Duration, native: Duration, crossing: Duration| {
        println!(
            "  {name:<11} wasm {:>9.0} ev/s  native {:>9.0} ev/s  ratio {:.2}x  boundary {:>5.1} ns/ev of {:>6.1} ns/ev in wasm",
            rate(events, wasm),
            rate(events, native),
            wasm.as_secs_f64() / native.as_secs_f64(),
            ns_per(crossing, events),
            ns_per(wasm, events),
        );
    };
    // Each stage crosses with its input in and its output out.
    let clean_out = sales_out; // the cleaner's output is the sales batch
    row("cleaner", n, wasm_clean, native_clean, clean_out);
    let agg_crossing = sales_in + metrics_out;
    row("aggregator", sale_count, wasm_agg, native_agg, agg_crossing);
    row(
        "alert rule",
        metric_count,
        wasm_rule,
        native_rule,
        metrics_in,
    );
    println!(
        "  crossing, per event: sales in {:.1} ns, out {:.1} ns; metric rows in {:.1} ns, out {:.1} ns{}",
        ns_per(sales_in, sale_count),
        ns_per(sales_out, sale_count),
        ns_per(metrics_in, metric_count),
        ns_per(metrics_out, metric_count),
        if have_pass { "" } else { " (outs need tests/fixtures/wasm/malformed.wasm)" }
    );
    println!(
        "  dictionary: {:.1} strings, {:.0} bytes per batch; sales in with it {:.1} ns/ev, without (a per-stream dictionary in steady state) {:.1} ns/ev",
        dictionary_strings as f64 / sales.len() as f64,
        dictionary_bytes as f64 / sales.len() as f64,
        ns_per(sales_in, sale_count),
        ns_per(sales_in_bare, sale_count),
    );
    println!(
        "  alerts as records: {:.1} ns per alert in; {} alerts per 1,000 transactions in the chain ({:.3} ns per transaction)",
        ns_per(alerts_in, 50 * 1024),
        last_alerts_per_1000,
        ns_per(alerts_in, 50 * 1024) * last_alerts_per_1000 / 1000.0,
    );
    println!("per-call overhead (empty batch): wasm {per_call:?}, native {native_call:?}");

    // The host's own share of the chain: the pipeline over the same batches, less the stages'
    // calls timed above (watermarks, late checks, origins, validation, the replay log), and
    // what the periodic state checkpoints (every 65,536 events per stage) add to it.
    let chain_over = |every: usize| {
        best(3, || {
            let batches: Vec<Batch> = records
                .chunks(1024)
                .map(|c| Batch::Raw(c.to_vec()))
                .collect();
            let (mut pipeline, _) = wasm_pipeline_every(&engine, every);
            let started = Instant::now();
            batches
                .into_iter()
                .for_each(|b| drop(black_box(pipeline.push(SALES, b))));
            started.elapsed()
        })
    };
    let (chain, unchecked) = (chain_over(65_536), chain_over(usize::MAX));
    let stages = wasm_clean + wasm_agg + wasm_rule;
    println!(
        "host pipeline at batch 1024: chain {:.0} ns per transaction = plugin calls {:.0} + host {:.0} (checkpoints {:.0} of it)",
        ns_per(chain, n),
        ns_per(stages, n),
        ns_per(chain.saturating_sub(stages), n),
        ns_per(chain.saturating_sub(unchecked), n),
    );

    // What the metrics add to the chain: each plugin call with a batch is timed (two clock
    // reads) into the stage's histogram; the rest of the counters were already there.
    let mut calls = shelfstream::meter::Latency::default();
    let timed = 1_000_000u32;
    let started = Instant::now();
    for _ in 0..timed {
        let call = Instant::now();
        calls.observe(black_box(call).elapsed());
    }
    let per_call = started.elapsed() / timed;
    let calls_per_transaction = 3.0 / 1024.0; // three stages, one call each per batch
    println!(
        "metrics: {per_call:?} per plugin call (clock reads and histogram), {:.3} ns per transaction at batch 1024: {:.4}% of the chain",
        per_call.as_nanos() as f64 * calls_per_transaction,
        100.0 * per_call.as_nanos() as f64 * calls_per_transaction / ns_per(chain, n),
    );

    // Hot-swap pause: the aggregator holding 5,000 open windows swaps to a new version.
    let aggregator = engine.load(&plugin("revenue-aggregator")).unwrap();
    let mut stage = Stage::start(
        spec("window", "revenue-aggregator", "sales", "sales_1m"),
        aggregator.clone(),
        None,
    )
    .unwrap();
    let mut dead = Vec::new();
    let events: Vec<_> = (0..5_000)
        .map(|i| {
            shelfstream::plugin::Event::Sale(shelfstream::plugin::Sale {
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
    let boundary = [
        ns_per(clean_out, n),
        ns_per(agg_crossing, sale_count),
        ns_per(metrics_in, metric_count),
    ]
    .into_iter()
    .fold(0.0, f64::max);
    println!(
        "chain batch=1024 wasm_ev_s={:.0} native_ev_s={:.0} ratio={:.2} boundary_ns_per_event={boundary:.1}",
        last.0, last.1, last.2
    );
}

fn sample_alert(i: usize) -> Event {
    Event::Alert(shelfstream::plugin::Alert {
        rule: "sales_spike".into(),
        severity: shelfstream::plugin::Severity::Warning,
        store_id: format!("S{:03}", i % 10),
        product_id: format!("SKU-{:05}", i % 100),
        message: format!("units sold 42 in the minute, 3.5x the running mean {i}"),
        evidence: vec![("units".into(), 42.0), ("mean".into(), 12.0)],
        window_start: 60_000 * i as i64,
        window_end: 60_000 * (i as i64 + 1),
        timestamp: 60_000 * (i as i64 + 1),
    })
}

fn sdk_empty() -> sdk::EventBatch {
    Emit::new().finish()
}

/// The sales the cleaner makes of `raw` as a component, and of `native_raw` compiled natively.
fn cleaned(
    engine: &PluginEngine,
    raw: &[RawBatch],
    native_raw: &[sdk::RawBatch],
) -> (Vec<EventBatch>, Vec<sdk::EventBatch>) {
    let mut cleaner = instance(engine, &plugin("sales-cleaner"));
    let sales = (raw.iter())
        .map(|b| cleaner.clean(b).unwrap().events)
        .collect();
    let mut native_cleaner: sales_cleaner::SalesCleaner = sdk::rt::new_plugin(Vec::new()).unwrap();
    let native_sales = (native_raw.iter())
        .map(|b| sdk::rt::clean(&mut native_cleaner, b).events)
        .collect();
    (sales, native_sales)
}

/// `CHAIN_PROFILE=stage=cleaner|aggregator|native-cleaner|native-aggregator|pipeline`: one stage, its
/// inputs made first, called over and over for ~10 s, so `perf record` sees little else.
fn profile_stage(engine: &PluginEngine, stage: &str) {
    let records = sales_records(100_000);
    let raw: Vec<RawBatch> = records.chunks(1024).map(RawBatch::from_records).collect();
    let native_raw = native_batches(&records, 1024);
    let (sales, native_sales) = cleaned(engine, &raw, &native_raw);
    let watermarks: Vec<i64> = (sales.iter())
        .map(|b| b.times().max().unwrap() - LATENESS_MS)
        .collect();
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(10) {
        rounds += 1;
        match stage {
            "cleaner" => {
                let mut c = instance(engine, &plugin("sales-cleaner"));
                raw.iter()
                    .for_each(|b| drop(black_box(c.clean(b).unwrap())));
            }
            "native-cleaner" => {
                let mut c: sales_cleaner::SalesCleaner = sdk::rt::new_plugin(Vec::new()).unwrap();
                (native_raw.iter()).for_each(|b| drop(black_box(sdk::rt::clean(&mut c, b))));
            }
            "aggregator" => {
                let mut w = instance(engine, &plugin("revenue-aggregator"));
                for (b, &wm) in sales.iter().zip(&watermarks) {
                    w.process(b).unwrap();
                    black_box(w.on_watermark(wm).unwrap());
                }
            }
            "native-aggregator" => {
                let mut w: revenue_aggregator::RevenueAggregator =
                    sdk::rt::new_plugin(Vec::new()).unwrap();
                for (b, wm) in native_sales.clone().into_iter().zip(&watermarks) {
                    let wm = *wm;
                    black_box(sdk::rt::process(&mut w, b));
                    black_box(sdk::rt::on_watermark(&mut w, wm));
                }
            }
            "pipeline" => {
                let batches: Vec<Batch> = (records.chunks(1024))
                    .map(|c| Batch::Raw(c.to_vec()))
                    .collect();
                let (mut pipeline, _) = wasm_pipeline(engine);
                batches
                    .into_iter()
                    .for_each(|b| drop(black_box(pipeline.push(SALES, b))));
            }
            other => panic!("unknown stage {other:?}"),
        }
    }
    let per = started.elapsed() / (rounds * records.len() as u32);
    println!("{stage}: {rounds} rounds, {per:?} per transaction");
}
