//! Loading plugins: one shared wasmtime `Engine`, components compiled once (cached in memory and
//! on disk by content hash), checked against the contract (`InstancePre`) before first use.
//!
//! This module never runs plugin code on the hot path: it compiles, links and probes. Running
//! belongs to [`super::instance`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, OptLevel};

use super::bindings::{PluginInfo, ShelfstreamPlugin, ShelfstreamPluginPre};
use super::instance::{Limits, PluginInstance, StoreData};
use super::ticker::Ticker;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plugin {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid WebAssembly component: {reason}")]
    Compile { path: PathBuf, reason: String },
    #[error("{path} does not fit the shelfstream contract (imports the host does not offer, or missing exports): {reason}")]
    Link { path: PathBuf, reason: String },
    #[error("{path} failed to start: {reason}")]
    Probe { path: PathBuf, reason: String },
}

/// A compiled, linked and probed plugin version. Cheap to share; instances are made from it.
pub struct LoadedPlugin {
    /// The file stem, which pipeline configs refer to.
    pub name: String,
    pub path: PathBuf,
    /// The first 12 hex digits of the SHA-256 of the component file: the plugin version.
    pub version: String,
    pub info: PluginInfo,
    pub(super) pre: ShelfstreamPluginPre<StoreData>,
    /// The engine's deadline clock, kept running while an instance runs plugin code.
    pub(super) ticker: Arc<Ticker>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("kind", &self.info.kind)
            .finish()
    }
}

impl LoadedPlugin {
    /// A fresh instance in its own store with the given limits.
    pub fn instantiate(
        &self,
        limits: &Limits,
    ) -> Result<PluginInstance, super::instance::PluginError> {
        PluginInstance::new(self, limits)
    }
}

pub struct PluginEngine {
    engine: Engine,
    linker: Linker<StoreData>,
    cache_dir: Option<PathBuf>,
    compiled: Mutex<HashMap<String, Component>>,
    ticker: Arc<Ticker>,
}

impl PluginEngine {
    /// `cache_dir`: where compiled components are kept between runs (none: memory only).
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .max_wasm_stack(1 << 20)
            // The contract is synchronous. With concurrency support on, every call sets up the
            // async task machinery (545-945 ns per call against 145-160 ns off, measured on
            // wasmtime 48: ../shared/notes/boundary.md). Off unless the async feature is built.
            .concurrency_support(cfg!(feature = "component-model-async"));
        // `SHELFSTREAM_WASM_PERFMAP=1` writes /tmp/perf-<pid>.map so `perf report` names the
        // plugins' compiled functions; `=jitdump` (with the `profiling` feature) writes a jitdump
        // with their code too, for `perf annotate`.
        match std::env::var("SHELFSTREAM_WASM_PERFMAP").as_deref() {
            Ok("0") | Err(_) => {}
            #[cfg(feature = "profiling")]
            Ok("jitdump") => {
                config.profiler(wasmtime::ProfilingStrategy::JitDump);
            }
            Ok(_) => {
                config.profiler(wasmtime::ProfilingStrategy::PerfMap);
            }
        }
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let mut linker = Linker::new(&engine);
        ShelfstreamPlugin::add_to_linker::<_, HasSelf<StoreData>>(&mut linker, |d| d)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;

        let ticker = Ticker::start(engine.clone())?;
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir)?;
        }
        tracing::debug!(
            concurrency_support = engine.get_concurrency_support(),
            "plugin engine ready"
        );
        Ok(PluginEngine {
            engine,
            linker,
            cache_dir,
            compiled: Mutex::new(HashMap::new()),
            ticker,
        })
    }

    /// Compile (or fetch from cache), link and probe the component at `path`.
    pub fn load(&self, path: &Path) -> Result<Arc<LoadedPlugin>, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.load_bytes(path, &bytes)
    }

    pub fn load_bytes(&self, path: &Path, bytes: &[u8]) -> Result<Arc<LoadedPlugin>, LoadError> {
        let hash = hex(&Sha256::digest(bytes));
        let component = self.component(path, &hash, bytes)?;
        let link_err = |e: wasmtime::Error| LoadError::Link {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        };
        let pre = self.linker.instantiate_pre(&component).map_err(link_err)?;
        let pre = ShelfstreamPluginPre::new(pre).map_err(link_err)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut plugin = LoadedPlugin {
            name,
            path: path.to_path_buf(),
            version: hash[..12].to_string(),
            info: PluginInfo {
                name: String::new(),
                kind: super::bindings::PluginKind::Aggregator,
                description: String::new(),
                state_version: 0,
            },
            pre,
            ticker: self.ticker.clone(),
        };
        // Probe: it must instantiate and describe itself.
        let probe_err = |e: super::instance::PluginError| LoadError::Probe {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut probe = plugin.instantiate(&Limits::default()).map_err(probe_err)?;
        plugin.info = probe.info().map_err(probe_err)?;
        Ok(Arc::new(plugin))
    }

    fn component(&self, path: &Path, hash: &str, bytes: &[u8]) -> Result<Component, LoadError> {
        if let Some(c) = self.compiled.lock().expect("cache lock").get(hash) {
            return Ok(c.clone());
        }
        let compile_err = |e: wasmtime::Error| LoadError::Compile {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        };
        let cached = self
            .cache_dir
            .as_ref()
            .map(|d| d.join(format!("{hash}.cwasm")));
        let from_disk = cached.as_ref().filter(|p| p.exists()).and_then(|p| {
            // SAFETY: the cache directory only holds artifacts this engine configuration
            // serialised itself; wasmtime checks the engine compatibility header on load.
            unsafe { Component::deserialize_file(&self.engine, p) }.ok()
        });
        let component = match from_disk {
            Some(c) => c,
            None => {
                let c = Component::new(&self.engine, bytes).map_err(compile_err)?;
                if let (Some(file), Ok(artifact)) = (&cached, c.serialize()) {
                    let tmp = file.with_extension("tmp");
                    if std::fs::write(&tmp, artifact)
                        .and_then(|_| std::fs::rename(&tmp, file))
                        .is_err()
                    {
                        tracing::warn!(path = %file.display(), "could not write the compiled-plugin cache");
                    }
                }
                c
            }
        };
        self.compiled
            .lock()
            .expect("cache lock")
            .insert(hash.to_string(), component.clone());
        Ok(component)
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
