//! A running comparison of a shadow's outputs with the live stage's, as they are emitted: rows
//! matched by identity as soon as both sides have emitted them; rows one side emitted and the
//! other has not (yet) are counted on that side. Bounded: at most [`PENDING`] unmatched rows per
//! side are kept; older ones stay counted as one-sided.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::load::{event_row, shapes, Row};
use super::{changed_columns, whole, Delta};
use crate::pipeline::{Outputs, ShadowSpec};
use crate::sinks::clickhouse::TableShape;

/// Unmatched rows kept per side of a shadow.
pub const PENDING: usize = 100_000;

/// How a shadow compares with its live stage so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShadowReport {
    pub shadow: String,
    pub stage: String,
    pub plugin: String,
    pub live_rows: u64,
    pub shadow_rows: u64,
    pub same: u64,
    pub changed: u64,
    /// Emitted by the live stage, not (yet) by the shadow.
    pub only_live: u64,
    /// Emitted by the shadow, not (yet) by the live stage.
    pub only_shadow: u64,
    /// Same rows over all rows of either side.
    pub agreement: f64,
    pub shadow_dead_letters: u64,
    /// The largest relative changes of a number, largest first.
    pub largest_deltas: Vec<Delta>,
    /// Per alert rule: alerts only in the shadow (added) and only live (removed).
    pub alerts: BTreeMap<String, AlertCounts>,
    /// A few rows of each kind of difference.
    pub examples_only_live: Vec<Map<String, Value>>,
    pub examples_only_shadow: Vec<Map<String, Value>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AlertCounts {
    pub live: u64,
    pub shadow: u64,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
}

#[derive(Default)]
struct Side {
    rows: HashMap<(String, String), Row>,
    order: VecDeque<(String, String)>,
    evicted: u64,
    evicted_alerts: BTreeMap<String, u64>,
}

impl Side {
    fn insert(&mut self, id: (String, String), row: Row) {
        self.order.push_back(id.clone());
        self.rows.insert(id, row);
        while self.rows.len() > PENDING {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(row) = self.rows.remove(&old) {
                self.evicted += 1;
                if old.0 == ALERTS {
                    *self.evicted_alerts.entry(rule(&row)).or_default() += 1;
                }
            }
        }
        if self.order.len() > 2 * PENDING.max(self.rows.len()) {
            let rows = &self.rows;
            self.order.retain(|k| rows.contains_key(k));
        }
    }
}

const ALERTS: &str = "streaming_alerts";

fn rule(row: &Row) -> String {
    row.key
        .get("rule")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

struct Tracked {
    report: ShadowReport,
    live: Side,
    shadow: Side,
    deltas: Vec<Delta>,
}

/// Every shadow's running comparison.
pub struct Running {
    metric_tables: BTreeMap<String, String>,
    shapes: BTreeMap<String, TableShape>,
    shadows: BTreeMap<String, Tracked>,
}

impl Running {
    pub fn new(metric_tables: BTreeMap<String, String>) -> Self {
        Running {
            metric_tables,
            shapes: shapes().into_iter().map(|s| (s.name.clone(), s)).collect(),
            shadows: BTreeMap::new(),
        }
    }

    /// The shadows to follow now (new ones start at zero; removed ones are dropped).
    pub fn set_shadows(&mut self, specs: &[ShadowSpec]) {
        self.shadows
            .retain(|name, _| specs.iter().any(|s| &s.spec.name == name));
        for s in specs {
            self.shadows
                .entry(s.spec.name.clone())
                .or_insert_with(|| Tracked {
                    report: ShadowReport {
                        shadow: s.spec.name.clone(),
                        stage: s.of.clone(),
                        plugin: s.spec.plugin.clone(),
                        ..Default::default()
                    },
                    live: Side::default(),
                    shadow: Side::default(),
                    deltas: Vec::new(),
                });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.shadows.is_empty()
    }

    /// Compare what one push returned.
    pub fn observe(&mut self, outputs: &Outputs) {
        if self.shadows.is_empty() {
            return;
        }
        for o in &outputs.batches {
            let names: Vec<String> = (self.shadows.iter())
                .filter(|(_, t)| *t.report.stage == *o.provenance.stage)
                .map(|(n, _)| n.clone())
                .collect();
            if names.is_empty() {
                continue;
            }
            for event in o.events.rows() {
                let (table, key, row) = event_row(
                    &o.stream,
                    &event,
                    &o.provenance,
                    &self.metric_tables,
                    &self.shapes,
                );
                for name in &names {
                    let t = self.shadows.get_mut(name).expect("listed");
                    t.see(true, (table.clone(), key.clone()), row.clone());
                }
            }
        }
        for s in &outputs.shadows {
            let Some(t) = self.shadows.get_mut(&*s.shadow) else {
                continue;
            };
            for event in s.output.events.rows() {
                let (table, key, row) = event_row(
                    &s.output.stream,
                    &event,
                    &s.output.provenance,
                    &self.metric_tables,
                    &self.shapes,
                );
                t.see(false, (table, key), row);
            }
        }
        for d in &outputs.shadow_dead_letters {
            if let Some(t) = self.shadows.get_mut(&*d.shadow) {
                t.report.shadow_dead_letters += 1;
            }
        }
    }

    /// Every shadow's report as of now.
    pub fn reports(&self) -> Vec<ShadowReport> {
        self.shadows.values().map(Tracked::report).collect()
    }
}

impl Tracked {
    fn see(&mut self, live: bool, id: (String, String), row: Row) {
        let alert = (id.0 == ALERTS).then(|| rule(&row));
        let (mine, other) = match live {
            true => (&mut self.live, &mut self.shadow),
            false => (&mut self.shadow, &mut self.live),
        };
        if let Some(rule) = &alert {
            let counts = self.report.alerts.entry(rule.clone()).or_default();
            match live {
                true => counts.live += 1,
                false => counts.shadow += 1,
            }
        }
        match live {
            true => self.report.live_rows += 1,
            false => self.report.shadow_rows += 1,
        }
        let Some(theirs) = other.rows.remove(&id) else {
            mine.insert(id, row);
            return;
        };
        let (b, c) = match live {
            true => (&row, &theirs),
            false => (&theirs, &row),
        };
        let changed = changed_columns(b, c, 1e-9, &mut self.deltas);
        if self.deltas.len() > 64 {
            self.deltas
                .sort_by(|x, y| y.relative.total_cmp(&x.relative));
            self.deltas.truncate(10);
        }
        if changed.is_empty() {
            self.report.same += 1;
        } else {
            self.report.changed += 1;
            if let Some(rule) = alert {
                self.report.alerts.entry(rule).or_default().changed += 1;
            }
        }
    }

    fn report(&self) -> ShadowReport {
        let mut r = self.report.clone();
        r.only_live = self.live.rows.len() as u64 + self.live.evicted;
        r.only_shadow = self.shadow.rows.len() as u64 + self.shadow.evicted;
        let all = r.same + r.changed + r.only_live + r.only_shadow;
        r.agreement = if all == 0 {
            1.0
        } else {
            r.same as f64 / all as f64
        };
        let mut deltas = self.deltas.clone();
        deltas.sort_by(|x, y| y.relative.total_cmp(&x.relative));
        deltas.truncate(10);
        r.largest_deltas = deltas;
        for (side, added) in [(&self.shadow, true), (&self.live, false)] {
            let mut per_rule = side.evicted_alerts.clone();
            for ((table, _), row) in &side.rows {
                if table == ALERTS {
                    *per_rule.entry(rule(row)).or_default() += 1;
                }
            }
            for (rule, n) in per_rule {
                let counts = r.alerts.entry(rule).or_default();
                match added {
                    true => counts.added = n,
                    false => counts.removed = n,
                }
            }
        }
        let example = |side: &Side| -> Vec<Map<String, Value>> {
            side.rows.values().take(5).map(whole).collect()
        };
        r.examples_only_live = example(&self.live);
        r.examples_only_shadow = example(&self.shadow);
        r
    }
}

/// Shadow reports as a text table (`host shadow-report`).
pub fn text(reports: &[ShadowReport]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32} {:<22} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>6}",
        "shadow", "stage", "live", "shadow", "same", "changed", "only live", "only shad", "dead"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<32} {:<22} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>6}   agreement {:.2}%",
            r.shadow,
            r.stage,
            r.live_rows,
            r.shadow_rows,
            r.same,
            r.changed,
            r.only_live,
            r.only_shadow,
            r.shadow_dead_letters,
            100.0 * r.agreement
        );
        for (rule, a) in &r.alerts {
            let _ = writeln!(
                out,
                "    alerts {rule}: live {} shadow {} added {} removed {} changed {}",
                a.live, a.shadow, a.added, a.removed, a.changed
            );
        }
        for d in r.largest_deltas.iter().take(3) {
            let _ = writeln!(
                out,
                "    largest change {} {}: {} -> {} ({:.2e})",
                Value::Object(d.key.clone()),
                d.column,
                d.baseline,
                d.candidate,
                d.relative
            );
        }
    }
    out
}
