//! `host demo`: the whole stack once, on running services: topics and tables created,
//! simulator -> Kafka -> plugins -> ClickHouse, S3 and Kafka, then the seed's sample queries
//! and the exercises printed with their answers.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::kafka::{create_topics, end_offsets};
use super::queries::{named_queries, EXERCISES, SEED_SAMPLES};
use super::simulate::{simulate, SimulateArgs};
use crate::archive::RawStoreConfig;
use crate::checkpoint::{start_at, SavedState, ShardStore};
use crate::config::PipelineConfig;
use crate::runtime::{run, shutdown_signal, RunOptions};
use crate::sim::SimulatorConfig;
use crate::sinks::{clickhouse as ch, kafka::KafkaSinkConfig};
use crate::sources::simulator::SimulatorSource;
use crate::sources::{KafkaSourceConfig, Source, SourceConfig};

/// The broker the services scripts start.
const BROKERS: &str = "127.0.0.1:9092";

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    #[arg(long, default_value = "plugins")]
    pub plugins: PathBuf,
    /// How long the simulator produces.
    #[arg(long, default_value = "20s")]
    pub duration: String,
    /// Messages per second.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    #[arg(long, default_value = "data/demo")]
    pub data_dir: PathBuf,
    /// S3 endpoint for raw batches (s3s-fs from tests/services/start.sh, or MinIO).
    #[arg(long, default_value = "http://127.0.0.1:9010")]
    s3_endpoint: String,
}

pub fn demo(args: DemoArgs) -> Result<()> {
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
    let sim = SimulatorConfig::default();

    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let client = clickhouse.client();
    runtime.block_on(async {
        create_topics(&BROKERS.into(), sim.partitions).await?;
        ch::migrate(&client, &clickhouse.database)
            .await
            .context("creating the ClickHouse tables")?;
        let dims = SimulatorSource::new(sim.clone(), 1, 0)?
            .dimensions()
            .expect("the simulator knows its stores and products");
        ch::load_dimensions(&client, &clickhouse.database, &dims)
            .await
            .context("loading dimensions")?;
        anyhow::Ok(())
    })?;
    // A first demo reads what it produces, not what earlier runs left in the topics: partitions
    // without a checkpoint start at the topics' current end.
    {
        let topics: Vec<String> = crate::topics::RETAIL
            .iter()
            .map(|t| t.to_string())
            .collect();
        let ends = end_offsets(&BROKERS.into(), &topics)?;
        let store = ShardStore::new(
            config.raw_store.as_ref().expect("set above"),
            &args.data_dir,
            &group_id,
            runtime.handle().clone(),
        )?;
        start_at(&store, &ends)?;
    }
    eprintln!(
        "topics and tables ready; producing for {} at {}/s while the pipeline runs",
        args.duration, args.rate
    );
    let producer = {
        let (duration, rate) = (args.duration.clone(), args.rate);
        std::thread::spawn(move || {
            let mut args = SimulateArgs::new(BROKERS);
            args.overrides.rate = Some(rate);
            args.overrides.duration = Some(duration);
            args.quiet = true; // the pipeline prints its live summary
            simulate(&args)
        })
    };
    let opts = RunOptions {
        plugins_dir: args.plugins,
        config,
        watch: true,
        config_path: None,
        summary: true,
    };
    let report = runtime.block_on(run(opts, shutdown_signal()))?;
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
        for (name, sql) in named_queries(SEED_SAMPLES) {
            println!("-- {name}\n{sql};");
            match fetch_text(&db_client, &sql, "PrettyCompactMonoBlock").await {
                Ok(text) => println!("{text}"),
                Err(e) => println!("(this server cannot run it: {e})\n"),
            }
        }
        println!("\n== The exercises (sql/queries/exercises.sql)\n");
        for (name, sql) in named_queries(EXERCISES) {
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
        SavedState::path(&args.data_dir).display()
    );
    Ok(())
}

async fn fetch_text(client: &clickhouse::Client, sql: &str, format: &str) -> Result<String> {
    let mut cursor = client.query(sql).fetch_bytes(format)?;
    Ok(String::from_utf8_lossy(&cursor.collect().await?).into_owned())
}
