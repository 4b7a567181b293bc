//! Watching the plugins folder. A new or changed `*.wasm` is compiled and validated here, on the
//! watcher's thread (never on the pipeline's), then handed to the pipeline, which swaps it in at
//! the next batch boundary with its predecessor's state. A broken file is rejected with the
//! reason and the running version stays. A removed file unloads the plugin.
//!
//! The pipeline config file is watched too: changed plugin parameters are applied to the running
//! stages (a new instance with the new parameters takes over the state).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult};

use crate::pipeline::StageSpec;
use crate::plugin::{LoadedPlugin, PluginEngine};

/// What changed, for the pipeline to apply at its next batch boundary.
pub enum Change {
    /// A new, compiled and validated plugin version to swap in.
    Swap(Arc<LoadedPlugin>),
    /// A plugin file was removed.
    Unload(String),
    /// The pipeline config file changed: the stages and shadows it now describes.
    Reconfigure(Vec<StageSpec>, Vec<crate::pipeline::ShadowSpec>),
}

/// How long the folder must be quiet before changes are acted on.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

pub type Watcher = notify_debouncer_full::Debouncer<
    notify::RecommendedWatcher,
    notify_debouncer_full::RecommendedCache,
>;

/// Watch `dir` until the returned watcher is dropped.
pub fn watch(dir: &Path, engine: Arc<PluginEngine>, tx: Sender<Change>) -> anyhow::Result<Watcher> {
    let watched = dir.canonicalize()?;
    let in_dir = watched.clone();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        let events = match result {
            Ok(events) => events,
            Err(errors) => {
                for error in errors {
                    tracing::warn!(%error, "plugin folder watch error");
                }
                return;
            }
        };
        let paths: BTreeSet<PathBuf> = events
            .iter()
            .flat_map(|e| e.paths.iter().cloned())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "wasm") && p.parent() == Some(in_dir.as_path())
            })
            .collect();
        for path in paths {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let command = if path.exists() {
                match engine.load(&path) {
                    Ok(plugin) => {
                        tracing::info!(plugin = %plugin.name, version = %plugin.version, "new plugin version compiled and validated");
                        Change::Swap(plugin)
                    }
                    Err(error) => {
                        tracing::error!(plugin = %name, %error, "new plugin file rejected; the running version stays");
                        continue;
                    }
                }
            } else {
                Change::Unload(name)
            };
            if tx.send(command).is_err() {
                return;
            }
        }
    })?;
    debouncer.watch(&watched, RecursiveMode::NonRecursive)?;
    Ok(debouncer)
}

/// Watch the pipeline config file; on a change, parse and validate it here and hand the stage
/// specs to the pipeline. A config that does not parse is reported and ignored.
pub fn watch_config(path: &Path, tx: Sender<Change>) -> anyhow::Result<Watcher> {
    let file = path.canonicalize()?;
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let watched = file.clone();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        let Ok(events) = result else { return };
        if !events.iter().any(|e| e.paths.iter().any(|p| p == &watched)) || !watched.exists() {
            return;
        }
        let specs = crate::config::PipelineConfig::load(Some(&watched))
            .map_err(anyhow::Error::from)
            .and_then(|c| Ok((c.stage_specs()?, c.shadow_specs()?)));
        match specs {
            Ok((specs, shadows)) => {
                tracing::info!(config = %watched.display(), "pipeline config changed");
                let _ = tx.send(Change::Reconfigure(specs, shadows));
            }
            Err(error) => {
                tracing::error!(config = %watched.display(), %error, "changed pipeline config rejected; nothing applied")
            }
        }
    })?;
    debouncer.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(debouncer)
}
