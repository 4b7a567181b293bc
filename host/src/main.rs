//! The `host` command line: `run` and `test-plugin` (the runtime), `migrate`, and the tools
//! `simulate` and `demo` (in `shelfstream::tools`).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use shelfstream::checkpoint::SavedState;
use shelfstream::config::PipelineConfig;
use shelfstream::harness::PluginHarness;
use shelfstream::pipeline::event_json;
use shelfstream::plugin::{Event, PluginKind};
use shelfstream::runtime::{self, RunOptions};
use shelfstream::sources::{NdjsonConfig, SourceConfig};
use shelfstream::tools::demo::{demo, DemoArgs};
use shelfstream::tools::simulate::{simulate, SimOverrides, SimulateArgs};

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
    /// Run archived raw batches (a time range of topics) through the pipeline, or a candidate
    /// version of one stage, into a replay folder (and a ClickHouse database of its own).
    Replay(ReplayArgs),
    /// Compare two output sets (folders or ClickHouse databases) row by row: what a candidate
    /// adds, removes and changes; exits 1 when more rows diverge than --fail-over.
    Diff(DiffArgs),
    /// How each shadow stage compares with the live stage it runs beside (the reports a
    /// running or finished `host run` keeps in <data_dir>/shadow/).
    ShadowReport {
        /// The host's data directory.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Print the reports as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A running host's stages, partitions, sinks and recent alerts, redrawn every second.
    Top {
        /// The host's HTTP address ([http] listen).
        #[arg(long, default_value = "http://127.0.0.1:9464")]
        url: String,
        /// The host's [http] token, if it has one.
        #[arg(long, env = "SHELFSTREAM_HTTP_TOKEN")]
        token: Option<String>,
        /// Print the table once and exit.
        #[arg(long)]
        once: bool,
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
    #[command(flatten)]
    simulator: SimOverrides,
    /// Read NDJSON payloads from this file ("-" for stdin) instead of the configured sources.
    #[arg(long)]
    input: Option<PathBuf>,
    /// The topic of --input lines.
    #[arg(long, default_value = shelfstream::topics::SALES)]
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
    /// Serve metrics and the live page here (host:port, or "off"); overrides [http] listen.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// The live run's pipeline config (TOML); default: the embedded host/pipeline.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Folder of plugin components.
    #[arg(long, default_value = "plugins")]
    plugins: PathBuf,
    /// Overrides runtime.data_dir (where the local archive is, by default).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Start of the range (record time, inclusive): RFC 3339 in UTC or a date (2026-11-22).
    #[arg(long)]
    from: Option<String>,
    /// End of the range (exclusive).
    #[arg(long)]
    to: Option<String>,
    /// Topics to replay (comma-separated); default: the config's source topics.
    #[arg(long, value_delimiter = ',')]
    topics: Option<Vec<String>>,
    /// Partitions to replay (comma-separated); default: all.
    #[arg(long, value_delimiter = ',')]
    partitions: Option<Vec<i32>>,
    /// Run only these stages and the stages that feed them (comma-separated).
    #[arg(long, value_delimiter = ',')]
    stages: Option<Vec<String>>,
    /// Run a stage with another plugin file: STAGE=path/to/candidate.wasm (repeatable).
    #[arg(long = "plugin", value_name = "STAGE=PATH")]
    candidates: Vec<String>,
    /// Override a stage parameter: STAGE.KEY=VALUE (repeatable).
    #[arg(long = "params", value_name = "STAGE.KEY=VALUE")]
    params: Vec<String>,
    /// The replay's id (names its folder and ClickHouse database); default: replay-<time>.
    #[arg(long)]
    id: Option<String>,
    /// The replay folder; default: <data_dir>/replays/<id>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the outputs to ClickHouse (the config's server), database <database>_replay_<id>.
    #[arg(long)]
    clickhouse: bool,
    /// Write only these output streams (comma-separated; dead letters always), e.g. the
    /// alerts of the rule under test.
    #[arg(long, value_delimiter = ',')]
    streams: Option<Vec<String>>,
    /// Re-drive dead letters of raw records instead of the archive, from `kafka` (the dead-letter
    /// topic), `clickhouse` (the dead_letters table) or a dead_letters.ndjson file; --from/--to
    /// select them by the time they were recorded.
    #[arg(long, value_name = "SOURCE")]
    dead_letters: Option<shelfstream::replay::DeadLetterSource>,
    /// With --dead-letters: write what the fix recovers to the live ClickHouse tables (rows keep
    /// their identity, so re-driving twice writes each once).
    #[arg(long, requires = "dead_letters")]
    recover: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct DiffArgs {
    /// The baseline: an outputs folder (data/out, a replay folder) or clickhouse:DATABASE.
    baseline: shelfstream::diff::Side,
    /// The candidate, in the same forms.
    candidate: shelfstream::diff::Side,
    /// Only rows from here on (windows starting here or later): RFC 3339 in UTC or a date.
    #[arg(long)]
    from: Option<String>,
    /// Only rows before this (windows ending here or earlier).
    #[arg(long)]
    to: Option<String>,
    /// Numbers closer than this, relatively, are equal.
    #[arg(long, default_value_t = 1e-9)]
    tolerance: f64,
    /// Exit with status 1 when more rows than this diverge.
    #[arg(long)]
    fail_over: Option<u64>,
    /// Where report.json and report.md go.
    #[arg(long, default_value = "diff-report")]
    report: PathBuf,
    /// Examples kept per table and kind of difference.
    #[arg(long, default_value_t = 20)]
    examples: usize,
    /// Pipeline config whose [clickhouse] section names the server of clickhouse: sides.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The simulator's ground truth (a run's data/ground_truth.json): report each alert
    /// rule's precision and recall on both sides.
    #[arg(long)]
    ground_truth: Option<PathBuf>,
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
        Command::Simulate(args) => simulate(&args),
        Command::Demo(args) => demo(args),
        Command::Replay(args) => replay_command(args),
        Command::Diff(args) => diff_command(args),
        Command::ShadowReport { data_dir, json } => {
            let reports = shelfstream::runtime::shadows::load_reports(&data_dir)?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&reports)?),
                false => print!("{}", shelfstream::diff::running::text(&reports)),
            }
            Ok(())
        }
        Command::Top { url, token, once } => tokio::runtime::Runtime::new()
            .context("starting the tokio runtime")?
            .block_on(shelfstream::observe::top::run(&url, token.as_deref(), once))
            .map_err(anyhow::Error::from),
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
    if let Some(listen) = args.http {
        config.http.listen = listen;
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
            args.simulator.apply(sim);
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
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let report = rt.block_on(runtime::run(opts, runtime::shutdown_signal()))?;
    eprintln!(
        "done: {} records in {:.1}s, outputs {:?}, {} dead letters, {} plugin failures, {} hot swaps",
        report.records_in, report.elapsed_secs, report.outputs, report.dead_letters, report.failures, report.swaps
    );
    eprintln!(
        "outputs: {}/out/<stream>.ndjson   state: {}",
        data_dir.display(),
        SavedState::path(&data_dir).display()
    );
    for e in &report.source_errors {
        eprintln!("source error: {e}");
    }
    if !report.source_errors.is_empty() {
        bail!("{} source(s) failed", report.source_errors.len());
    }
    Ok(())
}

fn replay_command(args: ReplayArgs) -> Result<()> {
    use shelfstream::replay::{replay, ReplayOptions};
    let mut config = PipelineConfig::load(args.config.as_deref())?;
    if let Some(dir) = args.data_dir {
        config.runtime.data_dir = dir;
    }
    let time = |t: &Option<String>| -> Result<Option<i64>> {
        t.as_deref()
            .map(shelfstream::units::parse_time)
            .transpose()
            .map_err(anyhow::Error::msg)
    };
    let range = shelfstream::archive::Range {
        from_ms: time(&args.from)?,
        to_ms: time(&args.to)?,
    };
    let candidates = (args.candidates.iter())
        .map(|c| {
            let (stage, path) = c
                .split_once('=')
                .with_context(|| format!("--plugin {c:?} is not STAGE=PATH"))?;
            Ok((stage.trim().to_string(), PathBuf::from(path.trim())))
        })
        .collect::<Result<Vec<_>>>()?;
    let params = (args.params.iter())
        .map(|p| {
            let (key, value) = p
                .split_once('=')
                .with_context(|| format!("--params {p:?} is not STAGE.KEY=VALUE"))?;
            let (stage, key) = key
                .split_once('.')
                .with_context(|| format!("--params {p:?} is not STAGE.KEY=VALUE"))?;
            Ok((stage.trim().into(), key.trim().into(), value.trim().into()))
        })
        .collect::<Result<Vec<_>>>()?;
    let id = args.id.unwrap_or_else(|| {
        let now = shelfstream::units::datetime(shelfstream::units::now_ms());
        format!("replay-{}", now.replace([':', '-'], "").replace(' ', "T"))
    });
    let out_dir =
        (args.out.clone()).unwrap_or_else(|| config.runtime.data_dir.join("replays").join(&id));
    let summary = replay(ReplayOptions {
        config,
        plugins_dir: args.plugins,
        topics: args.topics,
        partitions: args.partitions,
        range,
        stages: args.stages,
        candidates,
        params,
        id,
        out_dir: out_dir.clone(),
        clickhouse: args.clickhouse,
        progress: !args.quiet,
        streams: args.streams,
        dead_letters: args.dead_letters,
        recover: args.recover,
    })?;
    print!("{}", shelfstream::replay::report(&summary));
    println!("outputs: {}", out_dir.display());
    Ok(())
}

fn diff_command(args: DiffArgs) -> Result<()> {
    use shelfstream::diff::{diff, markdown, text, DiffOptions};
    let clickhouse = match &args.config {
        Some(path) => PipelineConfig::load(Some(path))?
            .clickhouse
            .unwrap_or_default(),
        None => Default::default(),
    };
    let time = |t: &Option<String>| -> Result<Option<i64>> {
        t.as_deref()
            .map(shelfstream::units::parse_time)
            .transpose()
            .map_err(anyhow::Error::msg)
    };
    let report = diff(&DiffOptions {
        baseline: args.baseline,
        candidate: args.candidate,
        range: shelfstream::archive::Range {
            from_ms: time(&args.from)?,
            to_ms: time(&args.to)?,
        },
        tolerance: args.tolerance,
        clickhouse,
        examples: args.examples,
        ground_truth: args.ground_truth,
    })?;
    std::fs::create_dir_all(&args.report)
        .with_context(|| format!("creating {}", args.report.display()))?;
    let json = args.report.join("report.json");
    std::fs::write(&json, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let md = args.report.join("report.md");
    std::fs::write(&md, markdown(&report)).with_context(|| format!("writing {}", md.display()))?;
    print!("{}", text(&report));
    println!("report: {} and {}", md.display(), json.display());
    if let Some(limit) = args.fail_over {
        if report.divergent > limit {
            bail!(
                "{} rows diverge, more than --fail-over {limit}",
                report.divergent
            );
        }
    }
    Ok(())
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
        shelfstream::units::parse_duration(&args.lateness).map_err(anyhow::Error::msg)?;
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
