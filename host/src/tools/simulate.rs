//! `host simulate`: the retail simulator's messages produced to the Kafka topics (created if
//! needed), paced to a rate, with the ground truth written at the end.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::kafka::{create_topics, Connection, RecordProducer};
use crate::config::PipelineConfig;
use crate::sim::{rfc3339, Simulator, SimulatorConfig};
use crate::sources::SourceConfig;

/// Simulator settings a command line can override (`host run` and `host simulate`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SimOverrides {
    /// Simulator: events per second (0 = as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Simulator: number of stores.
    #[arg(long)]
    pub stores: Option<u32>,
    /// Simulator: number of products.
    #[arg(long)]
    pub products: Option<u32>,
    /// Simulator: stop after this long, e.g. 30s, 5m.
    #[arg(long)]
    pub duration: Option<String>,
    /// Simulator: stop after this many simulation steps.
    #[arg(long)]
    pub max_events: Option<u64>,
    /// Simulator: random seed.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SimOverrides {
    pub fn apply(&self, c: &mut SimulatorConfig) {
        c.rate = self.rate.unwrap_or(c.rate);
        c.stores = self.stores.unwrap_or(c.stores);
        c.products = self.products.unwrap_or(c.products);
        c.seed = self.seed.unwrap_or(c.seed);
        c.duration = self.duration.clone().or(c.duration.take());
        c.max_events = self.max_events.or(c.max_events);
    }
}

/// The simulator's settings come from the `[[source]] kind = "simulator"` of the pipeline config
/// (the embedded host/pipeline.toml unless --config), so what `host simulate` produces is what
/// `host run` would simulate; the flags override single settings.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// A librdkafka property, KEY=VALUE (repeatable), e.g. -X security.protocol=sasl_plaintext
    /// -X sasl.mechanism=SCRAM-SHA-512 -X sasl.username=... -X sasl.password=...
    #[arg(short = 'X', long = "kafka-property", value_parser = super::kafka::parse_property)]
    pub kafka_properties: Vec<(String, String)>,
    /// Pipeline config whose simulator source to use.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: SimOverrides,
    /// Event time of the first event (RFC 3339); default: now.
    #[arg(long)]
    pub start: Option<String>,
    /// Share of deliberately malformed sales messages.
    #[arg(long)]
    pub malformed_rate: Option<f64>,
    /// Share of messages sent twice.
    #[arg(long)]
    pub duplicate_rate: Option<f64>,
    /// No injected signals (sales bursts, price errors, theft, promotions, stopped shelves,
    /// affinities), whatever the config says.
    #[arg(long)]
    pub no_anomalies: bool,
    /// Partitions per topic (topics are created with this many).
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Continue an earlier run: regenerate and skip its first N steps.
    #[arg(long, default_value_t = 0)]
    pub skip_steps: u64,
    /// Write what was injected (sim::GroundTruth) to this JSON file at the end.
    #[arg(long)]
    pub ground_truth: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl SimulateArgs {
    /// Produce to `brokers` with the config's settings and no overrides.
    pub fn new(brokers: &str) -> Self {
        SimulateArgs {
            brokers: brokers.into(),
            kafka_properties: Vec::new(),
            config: None,
            overrides: SimOverrides::default(),
            start: None,
            malformed_rate: None,
            duplicate_rate: None,
            no_anomalies: false,
            partitions: None,
            skip_steps: 0,
            ground_truth: None,
            quiet: false,
        }
    }

    /// The config's simulator settings with the flags applied.
    pub fn simulator_config(&self) -> Result<SimulatorConfig> {
        let pipeline = PipelineConfig::load(self.config.as_deref())?;
        let mut c = pipeline
            .sources
            .iter()
            .find_map(|s| match s {
                SourceConfig::Simulator(c) => Some(c.clone()),
                _ => None,
            })
            .unwrap_or_default();
        self.overrides.apply(&mut c);
        c.malformed_rate = self.malformed_rate.unwrap_or(c.malformed_rate);
        c.duplicate_rate = self.duplicate_rate.unwrap_or(c.duplicate_rate);
        c.partitions = self.partitions.unwrap_or(c.partitions);
        if self.no_anomalies {
            c.sales_anomalies_per_day = 0.0;
            c.price_errors_per_day = 0.0;
            c.thefts_per_day = 0.0;
            c.promotions_per_day = 0.0;
            c.stop_selling_share = 0.0;
            c.affinity_pairs = 0;
        }
        c.start = self.start.clone().or(c.start);
        Ok(c)
    }
}

pub fn simulate(args: &SimulateArgs) -> Result<()> {
    let config = args.simulator_config()?;
    let start_ms = config.start_ms(crate::units::now_ms(), 0)?;
    let duration = config
        .duration
        .as_deref()
        .map(crate::units::parse_duration)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let kafka = Connection {
        brokers: args.brokers.clone(),
        properties: args.kafka_properties.clone(),
    };
    // The producer connects first: refused credentials fail there with the reason.
    let producer = RecordProducer::new(&kafka)?;
    runtime.block_on(create_topics(&kafka, config.partitions))?;
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
    let started = Instant::now();
    let mut sent = 0u64;
    while sim.steps() < max_steps && duration.is_none_or(|d| started.elapsed() < d) {
        for record in sim.step().collect::<Vec<_>>() {
            producer.send(&record)?;
            sent += 1;
        }
        if config.rate > 0.0 {
            let due = Duration::from_secs_f64(sent as f64 / config.rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if sim.steps().is_multiple_of(256) {
            progress.set_position(sim.steps() - args.skip_steps);
            progress.set_message(format!(
                "{sent} messages, {:.0}/s, event time {}",
                sent as f64 / started.elapsed().as_secs_f64().max(1e-3),
                rfc3339(sim.clock_ms())
            ));
        }
    }
    producer.flush()?;
    progress.finish_and_clear();
    if let Some(path) = &args.ground_truth {
        let json = serde_json::to_vec_pretty(&sim.ground_truth()).context("ground truth")?;
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
