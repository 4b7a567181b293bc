//! Shadows in `host run`: each shadow's outputs go to `<data_dir>/shadow/<name>/` (NDJSON per
//! stream and its dead letters), never to the live sinks; its running comparison with the live
//! stage ([`crate::diff::running`]) is written there as `report.json` every few seconds and at
//! the end (what `host shadow-report` reads), and logged every 30 s. With a `[clickhouse]`
//! section its rows also go to a database of its own ([`clickhouse`]). A shadow's outputs
//! failing to write is logged and never stops the pipeline.

mod clickhouse;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::diff::running::{Running, ShadowReport};
use crate::pipeline::{Outputs, ShadowSpec};
use crate::sinks::clickhouse::ClickHouseConfig;
use crate::sinks::{FileSink, Sink};
pub use clickhouse::shadow_database;
use clickhouse::ShadowRows;

const WRITE_EVERY: Duration = Duration::from_secs(2);
const LOG_EVERY: Duration = Duration::from_secs(30);

pub struct ShadowWatch {
    dir: PathBuf,
    sinks: BTreeMap<String, FileSink>,
    /// The server of the shadows' databases, and their writer once a shadow has rows.
    clickhouse: Option<ClickHouseConfig>,
    rows: Option<ShadowRows>,
    running: Running,
    written: Instant,
    logged: Instant,
}

/// Where a data directory's shadows keep their outputs and reports.
pub fn shadow_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("shadow")
}

/// The reports the shadows of a data directory wrote last.
pub fn load_reports(data_dir: &Path) -> anyhow::Result<Vec<ShadowReport>> {
    use anyhow::Context;
    let dir = shadow_dir(data_dir);
    let mut reports = Vec::new();
    let entries = std::fs::read_dir(&dir).with_context(|| {
        format!(
            "no shadows have run with data directory {}",
            data_dir.display()
        )
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path().join("report.json")))
        .filter(|p| p.exists())
        .collect();
    paths.sort();
    for path in paths {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        reports.push(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?,
        );
    }
    Ok(reports)
}

impl ShadowWatch {
    pub fn new(
        data_dir: &Path,
        specs: &[ShadowSpec],
        clickhouse: Option<ClickHouseConfig>,
    ) -> Self {
        let metric_tables = clickhouse.clone().unwrap_or_default().metric_tables;
        let mut running = Running::new(metric_tables);
        running.set_shadows(specs);
        ShadowWatch {
            dir: shadow_dir(data_dir),
            sinks: BTreeMap::new(),
            clickhouse,
            rows: None,
            running,
            written: Instant::now(),
            logged: Instant::now(),
        }
    }

    /// The shadows configured now (after a config change).
    pub fn set_shadows(&mut self, specs: &[ShadowSpec]) {
        let _ = self.write_reports();
        self.running.set_shadows(specs);
    }

    /// A shadow's folder sink, opened on first use.
    fn sink(&mut self, shadow: &str) -> Option<&mut FileSink> {
        if !self.sinks.contains_key(shadow) {
            match FileSink::new(&self.dir.join(shadow)) {
                Ok(sink) => {
                    self.sinks.insert(shadow.to_string(), sink);
                }
                Err(error) => {
                    tracing::error!(%shadow, %error, "shadow outputs cannot be written");
                    return None;
                }
            }
        }
        self.sinks.get_mut(shadow)
    }

    /// The shadows' ClickHouse writer, started on first use (when there is a server).
    fn rows(&mut self) -> Option<&ShadowRows> {
        if self.rows.is_none() {
            let config = self.clickhouse.take()?;
            match ShadowRows::start(config) {
                Ok(rows) => self.rows = Some(rows),
                Err(error) => {
                    tracing::error!(%error, "shadow rows cannot be written to ClickHouse")
                }
            }
        }
        self.rows.as_ref()
    }

    /// What one push returned: shadow outputs to their folders (and ClickHouse databases),
    /// both sides to the comparison.
    pub fn observe(&mut self, outputs: &Outputs) {
        if self.running.is_empty() {
            return;
        }
        self.running.observe(outputs);
        for s in &outputs.shadows {
            let (stream, provenance) = (&s.output.stream, &s.output.provenance);
            let rows = s.output.events.rows();
            if let Some(sink) = self.sink(&s.shadow) {
                if let Err(error) = sink.write(stream, provenance, &rows) {
                    tracing::error!(shadow = %s.shadow, %error, "writing shadow outputs failed");
                }
            }
            if let Some(ch) = self.rows() {
                ch.rows(&s.shadow, stream, provenance, rows);
            }
        }
        for d in &outputs.shadow_dead_letters {
            if let Some(sink) = self.sink(&d.shadow) {
                if let Err(error) = sink.dead_letters(std::slice::from_ref(&d.dead_letter)) {
                    tracing::error!(shadow = %d.shadow, %error, "writing shadow dead letters failed");
                }
            }
            if let Some(ch) = self.rows() {
                ch.dead_letter(&d.shadow, &d.dead_letter);
            }
        }
    }

    /// Write the reports (and flush the outputs) every few seconds, returning them; log them
    /// every 30 s.
    pub fn tick(&mut self) -> Option<Vec<ShadowReport>> {
        if self.running.is_empty() || self.written.elapsed() < WRITE_EVERY {
            return None;
        }
        let reports = self.write_reports();
        if self.logged.elapsed() >= LOG_EVERY {
            self.logged = Instant::now();
            for r in &reports {
                tracing::info!(shadow = %r.shadow, stage = %r.stage, agreement = r.agreement, same = r.same,
                    changed = r.changed, only_live = r.only_live, only_shadow = r.only_shadow,
                    dead_letters = r.shadow_dead_letters, "shadow divergence");
            }
        }
        Some(reports)
    }

    /// Flush the shadows' outputs and write every report now; the reports.
    pub fn write_reports(&mut self) -> Vec<ShadowReport> {
        self.written = Instant::now();
        for (name, sink) in &mut self.sinks {
            if let Err(error) = sink.flush() {
                tracing::error!(shadow = %name, %error, "flushing shadow outputs failed");
            }
        }
        if let Some(rows) = &mut self.rows {
            rows.flush();
        }
        let reports = self.running.reports();
        for r in &reports {
            let dir = self.dir.join(&r.shadow);
            let path = dir.join("report.json");
            let tmp = dir.join("report.json.tmp");
            let written = std::fs::create_dir_all(&dir)
                .and_then(|_| std::fs::write(&tmp, serde_json::to_vec_pretty(&r).expect("json")))
                .and_then(|_| std::fs::rename(&tmp, &path));
            if let Err(error) = written {
                tracing::error!(shadow = %r.shadow, path = %path.display(), %error, "writing the shadow report failed");
            }
        }
        reports
    }
}

/// What the live page and `/metrics` show of a shadow's report.
pub fn live_view(reports: &[ShadowReport]) -> Vec<crate::observe::ShadowLive> {
    reports
        .iter()
        .map(|r| crate::observe::ShadowLive {
            shadow: r.shadow.clone(),
            stage: r.stage.clone(),
            plugin: r.plugin.clone(),
            same: r.same,
            changed: r.changed,
            only_live: r.only_live,
            only_shadow: r.only_shadow,
            agreement: r.agreement,
            alerts: (r.alerts.iter())
                .map(|(rule, a)| (rule.clone(), (a.added, a.removed, a.changed)))
                .collect(),
        })
        .collect()
}
