//! Watching the plugins folder. A new or changed `*.wasm` is compiled and validated here, on the
//! watcher's thread (never on the pipeline's), then handed to the pipeline, which swaps it in at
//! the next batch boundary with its predecessor's state. A broken file is rejected with the
//! reason and the running version stays. A removed file unloads the plugin.
//!
//! Only events that can mean new contents count (a file created, written, renamed or removed),
//! never reads: the watcher reads each changed file, and if opening it counted as a change it
//! would load every plugin again and again (it did: 4,477 reloads in 30 s, 30% of the host's
//! CPU samples). A file whose contents are the version already running is not handed on.
//!
//! The pipeline config file is watched too, by the same rule (and a save that leaves its text as
//! it was applies nothing): changed plugin parameters are applied to the running stages (a new
//! instance with the new parameters takes over the state).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode};
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

/// Whether an event of this kind can mean new contents, or a file appearing or going. Opening,
/// reading and closing a file without writing it cannot.
pub fn may_change_contents(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Any | EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Other => true,
    }
}

/// Watch `dir` until the returned watcher is dropped. `running`: each loaded plugin's name and
/// version, so that a file rewritten with the same contents is not handed on as a new version.
pub fn watch(
    dir: &Path,
    engine: Arc<PluginEngine>,
    running: BTreeMap<String, String>,
    tx: Sender<Change>,
) -> anyhow::Result<Watcher> {
    let watched = dir.canonicalize()?;
    let in_dir = watched.clone();
    let mut known = running;
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
            .filter(|e| may_change_contents(&e.kind))
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
                    Ok(plugin) if known.get(&plugin.name) == Some(&plugin.version) => {
                        tracing::debug!(plugin = %plugin.name, version = %plugin.version, "plugin file touched; same version, nothing to swap");
                        continue;
                    }
                    Ok(plugin) => {
                        tracing::info!(plugin = %plugin.name, version = %plugin.version, "new plugin version compiled and validated");
                        known.insert(plugin.name.clone(), plugin.version.clone());
                        Change::Swap(plugin)
                    }
                    Err(error) => {
                        tracing::error!(plugin = %name, %error, "new plugin file rejected; the running version stays");
                        continue;
                    }
                }
            } else {
                known.remove(&name);
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
    // The text last seen: a save that changes nothing (or an editor's rewrite) applies nothing.
    let mut last = std::fs::read(&file).ok();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        let Ok(events) = result else { return };
        let changed = (events.iter())
            .any(|e| may_change_contents(&e.kind) && e.paths.iter().any(|p| p == &watched));
        if !changed || !watched.exists() {
            return;
        }
        let text = std::fs::read(&watched).ok();
        if text.is_none() || text == last {
            return;
        }
        last = text;
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

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode};

    #[test]
    fn reads_are_not_changes() {
        for kind in [
            AccessKind::Open(AccessMode::Read),
            AccessKind::Open(AccessMode::Any),
            AccessKind::Read,
            AccessKind::Close(AccessMode::Read),
            AccessKind::Close(AccessMode::Execute),
            AccessKind::Any,
        ] {
            assert!(!may_change_contents(&EventKind::Access(kind)), "{kind:?}");
        }
        for kind in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
        ] {
            assert!(may_change_contents(&kind), "{kind:?}");
        }
    }
}
