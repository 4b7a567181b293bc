//! `host run`: wire sources -> plugin chain -> sinks, watch the plugins folder, stop cleanly.
//!
//! [`run`] only wires: it loads the plugins ([`crate::plugin::registry`]), opens the sinks and
//! the sources, and starts the threads. Each source runs on its own thread, the pipelines on
//! one thread ([`pipeline_thread`]: plugin calls are synchronous CPU work), the plugin watcher on
//! the debouncer's thread (compiling off the hot path). There is one pipeline per shard (see
//! [`crate::pipeline::shards`]): the local one for unpartitioned sources, one per assigned Kafka
//! partition. On SIGINT/SIGTERM sources stop at a batch boundary, the pipelines drain what is
//! queued, flush the sinks and save every stage's state with every source's position (local
//! shard: `<data_dir>/state/pipeline.json`; Kafka partitions: shard checkpoints in the object
//! store); the next run resumes from there.

mod pipeline_thread;
mod report;
pub mod shadows;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};

pub use report::RunReport;

use crate::archive::RawStore;
use crate::checkpoint::{Checkpoints, SavedState, ShardStore};
use crate::config::PipelineConfig;
use crate::observe::{Collector, Telemetry};
use crate::pipeline::{ShardId, Shards, StageSpec};
use crate::plugin::registry::{load_plugins, PluginSet};
use crate::plugin::{LoadedPlugin, PluginEngine};
use crate::sinks::{clickhouse, Fanout, FileSink, Sink};
use crate::sources::{self, Dimensions, Source, StopFlag};
use pipeline_thread::{Inputs, PipelineThread};

pub struct RunOptions {
    pub plugins_dir: PathBuf,
    pub config: PipelineConfig,
    pub watch: bool,
    /// The config file, watched for parameter changes when `watch` is on.
    pub config_path: Option<PathBuf>,
    /// Print a live summary line every second.
    pub summary: bool,
}

/// Run the pipeline until every source ends or `shutdown` resolves.
pub async fn run(
    opts: RunOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<RunReport> {
    let config = &opts.config;
    let runtime = config.runtime.clone();
    let data_dir = runtime.data_dir.clone();
    let telemetry = Telemetry::new();
    let _http = crate::observe::http::serve(&config.http, telemetry.clone()).await?;
    let engine = Arc::new(PluginEngine::new(Some(data_dir.join("cache")))?);
    let specs = config.stage_specs()?;
    let shadow_specs = config.shadow_specs()?;
    let plugins = stage_plugins(&specs, load_plugins(&engine, &opts.plugins_dir)?, &opts)?;
    let running_versions = (plugins.iter())
        .map(|(name, p)| (name.clone(), p.version.clone()))
        .collect();
    let saved = SavedState::load(&data_dir)?;

    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    for source in &config.sources {
        let position = saved.sources.get(source.name()).copied().unwrap_or(0);
        if position > 0 {
            tracing::info!(source = %source.name(), position, "resuming source");
        }
        let mut source = source.clone();
        if let sources::SourceConfig::Simulator(sim) = &mut source {
            (sim.ground_truth).get_or_insert_with(|| data_dir.join("ground_truth.json"));
        }
        sources.push(source.open(runtime.batch_size.max(1), position)?);
    }
    let dimensions: Vec<Dimensions> = sources.iter().filter_map(|s| s.dimensions()).collect();
    let sinks = open_sinks(config, &dimensions).await?;

    let watch = shadows::ShadowWatch::new(&data_dir, &shadow_specs, config.clickhouse.clone());
    let mut shards = Shards::new(specs, plugins)
        .with_shadows(shadow_specs)
        .with_on_bad_state(runtime.on_bad_state);
    if config.sources.iter().any(|s| !s.is_partitioned()) {
        shards.open(ShardId::Local, saved.stages)?;
    }
    // Every raw batch is archived (object storage, by default `<data_dir>/raw`) before a
    // checkpoint covers it; a partitioned source's partitions are checkpointed there too.
    let group = sources.iter_mut().find_map(|s| s.group());
    let store_config = config.raw_store.clone().unwrap_or_default();
    let handle = tokio::runtime::Handle::current();
    let archive = RawStore::new(&store_config, &data_dir, handle.clone())?;
    let local_topics: Vec<String> = (config.sources.iter())
        .filter(|s| !s.is_partitioned())
        .flat_map(|s| s.topics())
        .collect();
    let deleted = archive
        .discard_beyond(&local_topics, &saved.archived)
        .await
        .context("removing raw batches stored after the last saved state")?;
    if deleted > 0 {
        tracing::info!(
            deleted,
            "removed raw batches stored after the last saved state"
        );
    }
    let shard_store = match config.sources.iter().find_map(|s| match s {
        sources::SourceConfig::Kafka(k) => Some(k),
        _ => None,
    }) {
        Some(k) => Some(Arc::new(ShardStore::new(
            &store_config,
            &data_dir,
            &k.group_id,
            handle,
        )?)),
        None => None,
    };
    let (group_events, commits, high_watermarks) = match group {
        Some(g) => (Some(g.events), Some(g.commits), Some(g.high_watermarks)),
        None => (None, None, None),
    };
    let mut meters = sinks.meters();
    meters.push(archive.meter());
    let collector = Collector::new(telemetry, &config.sources)
        .with_sinks(meters)
        .with_high_watermarks(high_watermarks);
    let checkpoints = Checkpoints::new(
        data_dir.clone(),
        (saved.sources, saved.archived),
        shard_store,
        Some(archive),
        commits,
    );

    let (source_tx, source_rx) = crossbeam_channel::bounded(8);
    let (change_tx, change_rx) = crossbeam_channel::bounded(8);
    let stop = StopFlag::default();
    let running = sources.len();
    let mut source_threads = Vec::new();
    for source in sources {
        source_threads.push(sources::spawn(source, source_tx.clone(), stop.clone())?);
    }
    drop(source_tx);
    let _watcher = match opts.watch {
        true => Some(crate::hotswap::watch(
            &opts.plugins_dir,
            engine.clone(),
            running_versions,
            change_tx.clone(),
        )?),
        false => None,
    };
    let _config_watcher = match (&opts.config_path, opts.watch) {
        (Some(path), true) => Some(crate::hotswap::watch_config(path, change_tx.clone())?),
        _ => None,
    };
    drop(change_tx);

    let inputs = Inputs {
        sources: source_rx,
        running,
        group: group_events,
        changes: change_rx,
    };
    let mut thread = PipelineThread::new(
        shards,
        sinks,
        checkpoints,
        collector,
        (opts.summary, runtime.close_windows_at_end),
        stop.clone(),
    )
    .with_shadows(watch);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let worker = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            let result = thread.run(inputs).map(|()| thread);
            let _ = done_tx.send(());
            result
        })?;

    tokio::select! {
        _ = shutdown => {
            tracing::info!("stopping: draining in-flight batches, then saving state");
            stop.stop();
        }
        _ = done_rx => {}
    }
    let mut thread = tokio::task::spawn_blocking(move || worker.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))??;
    for t in source_threads {
        let _ = t.join();
    }
    // Sinks may block on their own I/O (ClickHouse retries): not on a runtime thread.
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<RunReport> {
        thread.finish()?;
        Ok(thread.report)
    })
    .await??;
    tracing::info!(state = %SavedState::path(&data_dir).display(), "state saved");
    Ok(report)
}

/// Every loaded plugin (shadows and config changes may name any); a stage whose plugin is
/// missing or failed to load fails the run.
fn stage_plugins(
    specs: &[StageSpec],
    set: PluginSet,
    opts: &RunOptions,
) -> anyhow::Result<BTreeMap<String, Arc<LoadedPlugin>>> {
    for spec in specs {
        if set.loaded.contains_key(&spec.plugin) {
            continue;
        }
        match set.failed.get(&spec.plugin) {
            Some(why) => bail!("stage {:?} needs plugin {:?}, which failed to load: {why}", spec.name, spec.plugin),
            None => bail!(
                "stage {:?} needs plugin {:?}: there is no {}/{}.wasm (build plugins with plugins/build.sh)",
                spec.name, spec.plugin, opts.plugins_dir.display(), spec.plugin
            ),
        }
    }
    Ok(set.loaded)
}

/// The configured sinks as one: NDJSON files, ClickHouse (schema applied, the sources'
/// dimension rows loaded), Kafka.
async fn open_sinks(
    config: &PipelineConfig,
    dimensions: &[Dimensions],
) -> anyhow::Result<Box<dyn Sink>> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if config.runtime.file_outputs {
        sinks.push(Box::new(FileSink::new(
            &config.runtime.data_dir.join("out"),
        )?));
    }
    if let Some(ch) = &config.clickhouse {
        let client = ch.client();
        let applied = clickhouse::migrate_when_reachable(&client, &ch.database, &ch.url)
            .await
            .with_context(|| format!("applying sql/schema.sql to ClickHouse at {}", ch.url))?;
        tracing::info!(url = %ch.url, statements = applied, "ClickHouse schema applied");
        for dims in dimensions {
            let (stores, products) = clickhouse::load_dimensions(&client, &ch.database, dims)
                .await
                .context("loading store and product dimensions into ClickHouse")?;
            tracing::info!(stores, products, "dimensions loaded into ClickHouse");
        }
        let sink = clickhouse::ClickHouseSink::new(ch.clone(), tokio::runtime::Handle::current())
            .map_err(anyhow::Error::msg)?;
        sinks.push(Box::new(sink));
    }
    if let Some(k) = &config.kafka_sink {
        sinks.push(Box::new(crate::sinks::kafka::KafkaSink::new(k.clone())?));
    }
    Ok(Box::new(Fanout(sinks)))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
