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
use crate::sources::kafka::EndMark;
use crate::sources::simulator::SimulatorSource;
use crate::sources::{KafkaSourceConfig, Source, SourceConfig};

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    #[arg(long, default_value = "plugins")]
    pub plugins: PathBuf,
    /// Kafka bootstrap servers (tansu from tests/services/start.sh, or the compose file's Kafka).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
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
    // Each demo is a story of its own, in a consumer group of its own that starts at the topics'
    // end. A demo cannot continue an earlier one: it ends by closing every window (its saved
    // watermark is the end of time), so whatever came after would all be late.
    let group_id = format!(
        "shelfstream-demo-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let group_file = args.data_dir.join("state").join("demo-group");
    std::fs::create_dir_all(group_file.parent().expect("has parent"))
        .with_context(|| format!("creating {}", group_file.display()))?;
    std::fs::write(&group_file, &group_id)
        .with_context(|| format!("writing {}", group_file.display()))?;
    // The pipeline reads until it has everything the producer wrote: the producer sets the end
    // offsets when it is done. (An idle limit stopped a demo early while a slow broker was yet
    // to deliver the first messages.)
    let end = EndMark::default();
    config.sources = vec![SourceConfig::Kafka(KafkaSourceConfig {
        brokers: args.brokers.clone(),
        group_id: group_id.clone(),
        stop_at: end.clone(),
        ..KafkaSourceConfig::default()
    })];
    let clickhouse = ch::ClickHouseConfig::default();
    config.clickhouse = Some(clickhouse.clone());
    config.kafka_sink = Some(KafkaSinkConfig {
        brokers: args.brokers.clone(),
        ..KafkaSinkConfig::default()
    });
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
        create_topics(&args.brokers.as_str().into(), sim.partitions).await?;
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
    // The demo reads what it produces, not what earlier runs left in the topics: its group's
    // partitions start at the topics' current end.
    let topics: Vec<String> = crate::topics::RETAIL
        .iter()
        .map(|t| t.to_string())
        .collect();
    let before = end_offsets(&args.brokers.as_str().into(), &topics)?;
    {
        let store = ShardStore::new(
            config.raw_store.as_ref().expect("set above"),
            &args.data_dir,
            &group_id,
            runtime.handle().clone(),
        )?;
        start_at(&store, &before)?;
    }
    eprintln!(
        "topics and tables ready; producing for {} at {}/s while the pipeline runs",
        args.duration, args.rate
    );
    let producer = {
        let (duration, rate) = (args.duration.clone(), args.rate);
        let brokers = args.brokers.clone();
        std::thread::spawn(move || {
            let mut args = SimulateArgs::new(&brokers);
            args.overrides.rate = Some(rate);
            args.overrides.duration = Some(duration);
            args.quiet = true; // the pipeline prints its live summary
            let produced = simulate(&args);
            // Whatever happened, the pipeline must end: without the end offsets it stops at
            // once (an empty mark), and the error is reported below.
            let ends = end_offsets(&brokers.as_str().into(), &topics);
            end.set(ends.as_ref().cloned().unwrap_or_default());
            produced?;
            ends.context("reading the end offsets after producing")
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
    let after = producer
        .join()
        .map_err(|_| anyhow::anyhow!("the producer panicked"))??;
    let produced: i64 = (after.iter())
        .map(|(tp, end)| end - before.get(tp).copied().unwrap_or(0))
        .sum();

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
        "== {} records through the plugins, of {produced} the producer wrote; {} alerts on Kafka topic retail-restock-alerts; {} dead letters on retail-dead-letters and in {database}.dead_letters",
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
