//! The `host` command line: `run`, `test-plugin`.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use shelfstream::config::{NdjsonConfig, PipelineConfig, SourceConfig};
use shelfstream::harness::PluginHarness;
use shelfstream::pipeline::event_json;
use shelfstream::plugin::{Event, PluginKind};
use shelfstream::run::{self, RunOptions};

#[derive(Parser)]
#[command(
    name = "host",
    version,
    about = "shelfstream: retail stream processing with WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline: sources -> plugin stages -> sinks, hot-swapping plugins as they change.
    Run(RunArgs),
    /// Run one plugin on an NDJSON file and print what it emits.
    TestPlugin(TestPluginArgs),
    /// Produce simulated retail events to the Kafka topics (creating them if needed).
    Simulate(SimulateArgs),
    /// The whole stack once, on running services (tests/services/start.sh): topics and tables,
    /// simulator -> Kafka -> plugins -> ClickHouse, S3 and Kafka; then the seed's sample queries.
    Demo(DemoArgs),
    /// Apply sql/schema.sql to the ClickHouse of the config's [clickhouse] section (idempotent).
    Migrate {
        /// Pipeline config with a [clickhouse] section; default: http://127.0.0.1:8123, database retail.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Folder of plugin components (`*.wasm`), watched for changes.
    #[arg(long, default_value = "plugins")]
    plugins: PathBuf,
    /// Pipeline config (TOML); default: the embedded host/pipeline.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Overrides runtime.data_dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Simulator: events per second (0 = as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Simulator: number of stores.
    #[arg(long)]
    stores: Option<u32>,
    /// Simulator: number of products.
    #[arg(long)]
    products: Option<u32>,
    /// Simulator: stop after this long, e.g. 30s, 5m.
    #[arg(long)]
    duration: Option<String>,
    /// Simulator: stop after this many events.
    #[arg(long)]
    max_events: Option<u64>,
    /// Simulator: random seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Read NDJSON payloads from this file ("-" for stdin) instead of the configured sources.
    #[arg(long)]
    input: Option<PathBuf>,
    /// The topic of --input lines.
    #[arg(long, default_value = "retail-sales-transactions")]
    topic: String,
    /// Close all open windows when the input ends.
    #[arg(long)]
    close_windows_at_end: bool,
    /// Do not watch the plugins folder.
    #[arg(long)]
    no_watch: bool,
    /// No live summary.
    #[arg(long)]
    quiet: bool,
}

/// The simulator's settings come from the `[[source]] kind = "simulator"` of the pipeline config
/// (the embedded host/pipeline.toml unless --config), so what `host simulate` produces is what
/// `host run` would simulate; the flags override single settings.
#[derive(clap::Args)]
struct SimulateArgs {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Pipeline config whose simulator source to use.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Messages per second (0 = as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long)]
    stores: Option<u32>,
    #[arg(long)]
    products: Option<u32>,
    /// Stop after this long, e.g. 60s.
    #[arg(long)]
    duration: Option<String>,
    /// Stop after this many simulation steps.
    #[arg(long)]
    max_events: Option<u64>,
    #[arg(long)]
    seed: Option<u64>,
    /// Event time of the first event (RFC 3339); default: now.
    #[arg(long)]
    start: Option<String>,
    /// Share of deliberately malformed sales messages.
    #[arg(long)]
    malformed_rate: Option<f64>,
    /// Share of messages sent twice.
    #[arg(long)]
    duplicate_rate: Option<f64>,
    /// No injected signals (sales bursts, price errors, theft, promotions, stopped shelves,
    /// affinities), whatever the config says.
    #[arg(long)]
    no_anomalies: bool,
    /// Partitions per topic (topics are created with this many).
    #[arg(long)]
    partitions: Option<i32>,
    /// Continue an earlier run: regenerate and skip its first N steps.
    #[arg(long, default_value_t = 0)]
    skip_steps: u64,
    /// Write what was injected (sources::simulator::GroundTruth) to this JSON file at the end.
    #[arg(long)]
    ground_truth: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

impl SimulateArgs {
    /// The config's simulator settings with the flags applied.
    fn simulator_config(&self) -> Result<shelfstream::config::SimulatorConfig> {
        let pipeline = PipelineConfig::load(self.config.as_deref())?;
        let mut c = pipeline
            .sources
            .iter()
            .find_map(|s| match s {
                SourceConfig::Simulator(c) => Some(c.clone()),
                _ => None,
            })
            .unwrap_or_default();
        macro_rules! apply {
            ($($field:ident),*) => { $(if let Some(v) = &self.$field { c.$field = v.clone(); })* };
        }
        apply!(
            rate,
            stores,
            products,
            seed,
            malformed_rate,
            duplicate_rate,
            partitions
        );
        if self.no_anomalies {
            c.sales_anomalies_per_day = 0.0;
            c.price_errors_per_day = 0.0;
            c.thefts_per_day = 0.0;
            c.promotions_per_day = 0.0;
            c.stop_selling_share = 0.0;
            c.affinity_pairs = 0;
        }
        c.duration = self.duration.clone().or(c.duration);
        c.max_events = self.max_events.or(c.max_events);
        c.start = self.start.clone().or(c.start);
        Ok(c)
    }
}

#[derive(clap::Args)]
struct DemoArgs {
    #[arg(long, default_value = "plugins")]
    plugins: PathBuf,
    /// How long the simulator produces.
    #[arg(long, default_value = "20s")]
    duration: String,
    /// Messages per second.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    #[arg(long, default_value = "data/demo")]
    data_dir: PathBuf,
    /// S3 endpoint for raw batches (s3s-fs from tests/services/start.sh, or MinIO).
    #[arg(long, default_value = "http://127.0.0.1:9010")]
    s3_endpoint: String,
}

#[derive(clap::Args)]
struct TestPluginArgs {
    /// The plugin component.
    plugin: PathBuf,
    /// NDJSON input: raw payloads for a cleaner, events (`{"kind":"sale",...}`) otherwise.
    #[arg(long)]
    input: PathBuf,
    /// Plugin parameter, repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Events per batch.
    #[arg(long, default_value_t = 1024)]
    batch_size: usize,
    /// Allowed lateness, e.g. 30s.
    #[arg(long, default_value = "0s")]
    lateness: String,
    /// Do not close open windows at the end of the input.
    #[arg(long)]
    no_flush: bool,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,cranelift=warn,wasmtime=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Run(args) => run_command(args),
        Command::TestPlugin(args) => test_plugin(args),
        Command::Migrate { config } => migrate(config),
        Command::Simulate(args) => simulate(args),
        Command::Demo(args) => demo(args),
    }
}

fn run_command(args: RunArgs) -> Result<()> {
    let mut config = PipelineConfig::load(args.config.as_deref())?;
    if let Some(dir) = args.data_dir {
        config.runtime.data_dir = dir;
    }
    if args.close_windows_at_end {
        config.runtime.close_windows_at_end = true;
    }
    if let Some(path) = args.input {
        config.sources = vec![SourceConfig::Ndjson(NdjsonConfig {
            name: "input".into(),
            path,
            topic: args.topic,
        })];
        for stage in config.prune_unfed_stages() {
            tracing::info!(%stage, "stage has no input in this run; not started");
        }
    }
    for source in &mut config.sources {
        if let SourceConfig::Simulator(sim) = source {
            sim.rate = args.rate.unwrap_or(sim.rate);
            sim.stores = args.stores.unwrap_or(sim.stores);
            sim.products = args.products.unwrap_or(sim.products);
            sim.seed = args.seed.unwrap_or(sim.seed);
            sim.duration = args.duration.clone().or(sim.duration.take());
            sim.max_events = args.max_events.or(sim.max_events);
        }
    }
    config.stage_specs()?; // re-validate after overrides
    let data_dir = config.runtime.data_dir.clone();
    let opts = RunOptions {
        plugins_dir: args.plugins,
        config,
        watch: !args.no_watch,
        config_path: args.config.clone(),
        summary: !args.quiet,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let report = runtime.block_on(run::run(opts, run::shutdown_signal()))?;
    eprintln!(
        "done: {} records in {:.1}s, outputs {:?}, {} dead letters, {} plugin failures, {} hot swaps",
        report.records_in, report.elapsed_secs, report.outputs, report.dead_letters, report.failures, report.swaps
    );
    eprintln!(
        "outputs: {}/out/<stream>.ndjson   state: {}",
        data_dir.display(),
        run::SavedState::path(&data_dir).display()
    );
    for e in &report.source_errors {
        eprintln!("source error: {e}");
    }
    if !report.source_errors.is_empty() {
        bail!("{} source(s) failed", report.source_errors.len());
    }
    Ok(())
}

fn simulate(args: SimulateArgs) -> Result<()> {
    use shelfstream::sources::{kafka, simulator::Simulator};
    let config = args.simulator_config()?;
    let start_ms = match &config.start {
        Some(s) => humantime::parse_rfc3339_weak(s)
            .with_context(|| format!("simulator start {s:?}"))?
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64,
    };
    let duration = config
        .duration
        .as_deref()
        .map(shelfstream::config::parse_duration)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(kafka::create_topics(&args.brokers, config.partitions))?;
    let producer = kafka::RecordProducer::new(&args.brokers)?;
    let mut sim = Simulator::new(&config, start_ms);
    sim.skip(args.skip_steps);
    let max_steps = config.max_events.unwrap_or(u64::MAX);
    let progress = match (args.quiet, config.max_events) {
        (true, _) => indicatif::ProgressBar::hidden(),
        (false, Some(n)) => indicatif::ProgressBar::new(n.saturating_sub(args.skip_steps)),
        (false, None) => indicatif::ProgressBar::new_spinner(),
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}",
        )
        .expect("valid template"),
    );
    let started = std::time::Instant::now();
    let mut sent = 0u64;
    while sim.steps() < max_steps && duration.is_none_or(|d| started.elapsed() < d) {
        for record in sim.step().collect::<Vec<_>>() {
            producer.send(&record)?;
            sent += 1;
        }
        if config.rate > 0.0 {
            let due = std::time::Duration::from_secs_f64(sent as f64 / config.rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if sim.steps().is_multiple_of(256) {
            progress.set_position(sim.steps() - args.skip_steps);
            progress.set_message(format!(
                "{sent} messages, {:.0}/s, event time {}",
                sent as f64 / started.elapsed().as_secs_f64().max(1e-3),
                shelfstream::sources::simulator::rfc3339(sim.clock_ms())
            ));
        }
    }
    producer.flush()?;
    progress.finish_and_clear();
    if let Some(path) = &args.ground_truth {
        let json = serde_json::to_vec_pretty(sim.ground_truth()).context("ground truth")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!(
        "produced {sent} messages ({} simulation steps) to {} in {:.1}s",
        sim.steps(),
        args.brokers,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn demo(args: DemoArgs) -> Result<()> {
    use shelfstream::sinks::{clickhouse as ch, kafka::KafkaSinkConfig, raw::RawStoreConfig};
    use shelfstream::sources::kafka::KafkaSourceConfig;
    let mut config = PipelineConfig::load(None)?;
    config.runtime.data_dir = args.data_dir.clone();
    config.runtime.close_windows_at_end = true;
    // One consumer group per demo data directory: its shard checkpoints (in the shared bucket)
    // belong to that directory's runs, so a fresh directory starts afresh and a second run in
    // the same one continues.
    let group_file = args.data_dir.join("state").join("demo-group");
    let group_id = match std::fs::read_to_string(&group_file) {
        Ok(id) => id.trim().to_string(),
        Err(_) => {
            let id = format!(
                "shelfstream-demo-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_millis()
            );
            std::fs::create_dir_all(group_file.parent().expect("has parent"))
                .with_context(|| format!("creating {}", group_file.display()))?;
            std::fs::write(&group_file, &id)
                .with_context(|| format!("writing {}", group_file.display()))?;
            id
        }
    };
    config.sources = vec![SourceConfig::Kafka(KafkaSourceConfig {
        group_id: group_id.clone(),
        stop_when_idle: Some("5s".into()),
        ..KafkaSourceConfig::default()
    })];
    let clickhouse = ch::ClickHouseConfig::default();
    config.clickhouse = Some(clickhouse.clone());
    config.kafka_sink = Some(KafkaSinkConfig::default());
    config.raw_store = Some(RawStoreConfig {
        kind: "s3".into(),
        endpoint: Some(args.s3_endpoint.clone()),
        access_key_id: Some("minioadmin".into()),
        secret_access_key: Some("minioadmin".into()),
        ..RawStoreConfig::default()
    });
    let sim = shelfstream::config::SimulatorConfig::default();

    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let client = clickhouse.client();
    runtime.block_on(async {
        shelfstream::sources::kafka::create_topics("127.0.0.1:9092", sim.partitions).await?;
        ch::migrate(&client, &clickhouse.database)
            .await
            .context("creating the ClickHouse tables")?;
        let dims = shelfstream::sources::simulator::Simulator::new(&sim, 0);
        ch::load_dimensions(&client, &clickhouse.database, &dims)
            .await
            .context("loading dimensions")?;
        anyhow::Ok(())
    })?;
    // A first demo reads what it produces, not what earlier runs left in the topics: partitions
    // without a checkpoint start at the topics' current end.
    {
        let topics: Vec<String> = shelfstream::config::TOPICS
            .iter()
            .map(|t| t.to_string())
            .collect();
        let ends = shelfstream::sources::kafka::end_offsets("127.0.0.1:9092", &topics)?;
        let store = shelfstream::checkpoint::ShardStore::new(
            config.raw_store.as_ref().expect("set above"),
            &args.data_dir,
            &group_id,
            runtime.handle().clone(),
        )?;
        shelfstream::checkpoint::start_at(&store, &ends)?;
    }
    eprintln!(
        "topics and tables ready; producing for {} at {}/s while the pipeline runs",
        args.duration, args.rate
    );
    let producer = {
        let (duration, rate) = (args.duration.clone(), args.rate);
        std::thread::spawn(move || {
            simulate(SimulateArgs {
                brokers: "127.0.0.1:9092".into(),
                config: None,
                rate: Some(rate),
                stores: None,
                products: None,
                duration: Some(duration),
                max_events: None,
                seed: None,
                start: None,
                malformed_rate: None,
                duplicate_rate: None,
                no_anomalies: false,
                partitions: None,
                skip_steps: 0,
                ground_truth: None,
                quiet: true, // the pipeline prints its live summary
            })
        })
    };
    let opts = RunOptions {
        plugins_dir: args.plugins,
        config,
        watch: true,
        config_path: None,
        summary: true,
    };
    let report = runtime.block_on(run::run(opts, run::shutdown_signal()))?;
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the producer panicked"))??;

    let database = clickhouse.database.clone();
    let db_client = client.with_database(&database);
    runtime.block_on(async {
        for table in [
            "fact_sales",
            "fact_inventory",
            "spark_sales_metrics",
            "spark_inventory_metrics",
            "streaming_alerts",
            "demand_forecasts",
            "dead_letters",
        ] {
            db_client
                .query(&format!("OPTIMIZE TABLE {table} FINAL"))
                .execute()
                .await?;
        }
        println!(
            "\n== The seed's sample queries (sql/queries/seed_samples.sql), on ClickHouse {}\n",
            fetch_text(&db_client, "SELECT version()", "TabSeparated")
                .await?
                .trim()
        );
        for (name, sql) in ch::named_queries(ch::SEED_SAMPLES) {
            println!("-- {name}\n{sql};");
            match fetch_text(&db_client, &sql, "PrettyCompactMonoBlock").await {
                Ok(text) => println!("{text}"),
                Err(e) => println!("(this server cannot run it: {e})\n"),
            }
        }
        println!("\n== The exercises (sql/queries/exercises.sql)\n");
        for (name, sql) in ch::named_queries(ch::EXERCISES) {
            println!("-- {name}\n{sql};");
            match fetch_text(
                &db_client,
                &format!("SELECT * FROM ({sql}) LIMIT 10"),
                "PrettyCompactMonoBlock",
            )
            .await
            {
                Ok(text) if text.trim().is_empty() => {
                    println!("(no rows yet: this needs more simulated days)\n")
                }
                Ok(text) => println!("{text}"),
                Err(e) => println!("(this server cannot run it: {e})\n"),
            }
        }
        anyhow::Ok(())
    })?;
    println!(
        "== {} records through the plugins; {} alerts on Kafka topic retail-restock-alerts; {} dead letters on retail-dead-letters and in {database}.dead_letters",
        report.records_in,
        report.alerts,
        report.dead_letters
    );
    println!("== raw batches: s3://retail-data/raw/<topic>/date=<day>/partition=<p>/<first>-<last>.ndjson.gz at {}", args.s3_endpoint);
    println!(
        "== outputs also in {}/out/, state in {}",
        args.data_dir.display(),
        run::SavedState::path(&args.data_dir).display()
    );
    Ok(())
}

async fn fetch_text(client: &clickhouse::Client, sql: &str, format: &str) -> Result<String> {
    let mut cursor = client.query(sql).fetch_bytes(format)?;
    Ok(String::from_utf8_lossy(&cursor.collect().await?).into_owned())
}

fn migrate(config: Option<PathBuf>) -> Result<()> {
    let ch = match config {
        Some(path) => PipelineConfig::load(Some(&path))?
            .clickhouse
            .unwrap_or_default(),
        None => Default::default(),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let applied = runtime
        .block_on(shelfstream::sinks::clickhouse::migrate(
            &ch.client(),
            &ch.database,
        ))
        .with_context(|| format!("applying sql/schema.sql to {}", ch.url))?;
    eprintln!(
        "applied {applied} statements of sql/schema.sql to {} (database {})",
        ch.url, ch.database
    );
    Ok(())
}

fn test_plugin(args: TestPluginArgs) -> Result<()> {
    let lateness =
        shelfstream::config::parse_duration(&args.lateness).map_err(anyhow::Error::msg)?;
    let mut builder =
        PluginHarness::builder(&args.plugin).allowed_lateness_ms(lateness.as_millis() as i64);
    for kv in &args.params {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--config {kv:?} is not KEY=VALUE"))?;
        builder = builder.param(k.trim(), v.trim());
    }
    let mut h = builder.start()?;
    let kind = h.stage().plugin().info.kind;
    let file = std::fs::File::open(&args.input)
        .with_context(|| format!("opening {}", args.input.display()))?;
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", args.input.display()))?;
    let lines: Vec<&String> = lines.iter().filter(|l| !l.trim().is_empty()).collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut emitted = 0usize;
    let mut print = |events: Vec<Event>, out: &mut dyn Write| -> Result<()> {
        emitted += events.len();
        for e in events {
            writeln!(out, "{}", event_json(&e))?;
        }
        Ok(())
    };
    for chunk in lines.chunks(args.batch_size.max(1)) {
        let events = if kind == PluginKind::Cleaner {
            h.clean_payloads("input", chunk)
        } else {
            let batch = chunk
                .iter()
                .map(|l| shelfstream::pipeline::dead_letter::event_from_json(l))
                .collect::<Result<Vec<_>, _>>()?;
            h.process(batch)
        };
        print(events, &mut out)?;
    }
    if !args.no_flush {
        let events = h.flush();
        print(events, &mut out)?;
    }
    let dead = h.take_dead_letters();
    for d in &dead {
        writeln!(out, "{}", serde_json::json!({ "dead_letter": d }))?;
    }
    let state = h.snapshot()?;
    let info = &h.stage().plugin().info;
    eprintln!(
        "{} {:?} v{}: {} input lines, {emitted} events emitted, {} dead letters, state {} bytes (version {})",
        info.name, info.kind, h.stage().plugin().version, lines.len(), dead.len(), state.state.len(), state.state_version
    );
    Ok(())
}
