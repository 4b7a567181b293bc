//! The plugins folder: every `*.wasm` directly in it, compiled and validated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use super::{LoadedPlugin, PluginEngine};

/// The plugins found in a folder: the ones that loaded, and why the others did not.
#[derive(Default)]
pub struct PluginSet {
    pub loaded: BTreeMap<String, Arc<LoadedPlugin>>,
    pub failed: BTreeMap<String, String>,
}

/// Load every `*.wasm` directly in `dir`. A plugin that fails to load is reported and skipped;
/// only a stage that needs it makes the run fail.
pub fn load_plugins(engine: &PluginEngine, dir: &Path) -> anyhow::Result<PluginSet> {
    let mut loaded = BTreeMap::new();
    let mut failed = BTreeMap::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading the plugins folder {}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    paths.sort();
    for path in paths {
        match engine.load(&path) {
            Ok(p) => {
                tracing::info!(plugin = %p.name, version = %p.version, kind = ?p.info.kind, "plugin loaded");
                loaded.insert(p.name.clone(), p);
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "plugin rejected");
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                failed.insert(name, e.to_string());
            }
        }
    }
    Ok(PluginSet { loaded, failed })
}
