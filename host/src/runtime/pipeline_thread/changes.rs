//! Changes from the watchers, applied between two batches: hot swaps, new parameters and
//! shadows (promotions), unloaded plugins; each recorded once per stage in the history.

use super::PipelineThread;
use crate::hotswap::Change;
use crate::observe::HistoryEntry;

impl PipelineThread {
    pub(super) fn on_change(&mut self, change: Change) {
        // One history entry per stage (every shard runs the same change).
        let mut history: std::collections::BTreeMap<String, HistoryEntry> = Default::default();
        match change {
            Change::Swap(plugin) => {
                let before = self.versions_of(&plugin.name);
                for (shard, outcome) in self.shards.swap(&plugin) {
                    let entry = HistoryEntry {
                        stage: outcome.stage.clone(),
                        plugin: plugin.name.clone(),
                        version: plugin.version.clone(),
                        previous: before.get(&outcome.stage).cloned(),
                        ..Default::default()
                    };
                    match outcome.result {
                        Ok(pause) => {
                            tracing::info!(
                                %shard, stage = %outcome.stage, plugin = %plugin.name, version = %plugin.version,
                                pause_us = pause.as_micros() as u64, "hot-swapped plugin"
                            );
                            history
                                .entry(outcome.stage.clone())
                                .or_insert(HistoryEntry {
                                    kind: "hot_swap".into(),
                                    detail: format!("paused {} us", pause.as_micros()),
                                    ..entry
                                });
                        }
                        Err(error) => {
                            tracing::error!(
                                %shard, stage = %outcome.stage, plugin = %plugin.name, version = %plugin.version,
                                %error, "new plugin version rejected; the running version stays"
                            );
                            history.insert(
                                outcome.stage.clone(),
                                HistoryEntry {
                                    kind: "swap_rejected".into(),
                                    detail: error.to_string(),
                                    ..entry
                                },
                            );
                        }
                    }
                }
            }
            Change::Reconfigure(specs, shadows) => {
                let (outcomes, restart) = self.shards.reconfigure(&specs, &shadows);
                let versions = self.versions_of_stages();
                for (stage, shadow) in self.shards.take_promotions() {
                    let (plugin, version) = versions.get(&stage).cloned().unwrap_or_default();
                    history.insert(
                        stage.clone(),
                        HistoryEntry {
                            kind: "promoted".into(),
                            detail: format!("shadow {shadow} took over with its state"),
                            stage,
                            plugin,
                            version,
                            ..Default::default()
                        },
                    );
                }
                let now = self.shards.shadow_specs();
                self.shadows.iter_mut().for_each(|s| s.set_shadows(now));
                for (shard, outcome) in outcomes {
                    let (plugin, version) =
                        versions.get(&outcome.stage).cloned().unwrap_or_default();
                    let params = (specs.iter().find(|s| s.name == outcome.stage))
                        .map(|s| {
                            s.params
                                .iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default();
                    let entry = HistoryEntry {
                        stage: outcome.stage.clone(),
                        plugin,
                        version,
                        ..Default::default()
                    };
                    match outcome.result {
                        Ok(pause) => {
                            tracing::info!(%shard, stage = %outcome.stage,
                                pause_us = pause.as_micros() as u64, "new parameters applied with the stage's state");
                            history
                                .entry(outcome.stage.clone())
                                .or_insert(HistoryEntry {
                                    kind: "params".into(),
                                    detail: params,
                                    ..entry
                                });
                        }
                        Err(error) => {
                            tracing::error!(%shard, stage = %outcome.stage, %error,
                                "new parameters rejected; the stage keeps the old ones");
                            history.insert(
                                outcome.stage.clone(),
                                HistoryEntry {
                                    kind: "params_rejected".into(),
                                    detail: format!("{params}: {error}"),
                                    ..entry
                                },
                            );
                        }
                    }
                }
                for change in restart {
                    tracing::warn!(%change, "pipeline config change needs a restart to apply");
                }
            }
            Change::Unload(name) => {
                let versions = self.versions_of(&name);
                for stage in self.shards.unload(&name) {
                    tracing::warn!(%stage, plugin = %name, "plugin file removed: stage stopped (state kept); its input goes to the dead letters");
                    history.entry(stage.clone()).or_insert(HistoryEntry {
                        kind: "unloaded".into(),
                        plugin: name.clone(),
                        version: versions.get(&stage).cloned().unwrap_or_default(),
                        detail: "plugin file removed; input goes to the dead letters".into(),
                        stage,
                        ..Default::default()
                    });
                }
            }
        }
        for entry in history.into_values() {
            self.collector.history(entry);
        }
    }

    /// The running version of `plugin` per stage that runs it.
    fn versions_of(&self, plugin: &str) -> std::collections::BTreeMap<String, String> {
        (self.versions_of_stages().into_iter())
            .filter(|(_, (p, _))| p == plugin)
            .map(|(stage, (_, version))| (stage, version))
            .collect()
    }

    /// Every stage's plugin and running version.
    fn versions_of_stages(&self) -> std::collections::BTreeMap<String, (String, String)> {
        let mut out = std::collections::BTreeMap::new();
        for (_, pipeline) in self.shards.iter() {
            for stage in pipeline.stages() {
                let p = stage.plugin();
                out.entry(stage.spec().name.clone())
                    .or_insert_with(|| (p.name.clone(), p.version.clone()));
            }
        }
        out
    }
}
