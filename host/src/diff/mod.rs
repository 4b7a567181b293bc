//! `host diff`: two output sets compared table by table, rows matched by their identity (the
//! key and window they carry: each ClickHouse table's sorting key). A side is an outputs folder
//! (`host run`'s `data/out`, a replay folder) or a ClickHouse database (`clickhouse:retail`, a
//! replay's `clickhouse:retail_replay_<id>`); both are read as the rows ClickHouse keeps
//! ([`load`]). The report counts rows only in the baseline, only in the candidate and changed
//! beyond a relative tolerance, lists the alerts added and removed per rule with their evidence,
//! the largest value changes, and the data quality of replay folders.

mod load;
mod report;
pub mod running;
mod truth;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::archive::Range;
use crate::replay::{Quality, ReplaySummary};
use crate::sinks::clickhouse::ClickHouseConfig;
pub use load::{Row, Rows};
pub use report::{markdown, text};
pub use truth::TruthScore;

/// One side of a diff.
#[derive(Debug, Clone, PartialEq)]
pub enum Side {
    Folder(PathBuf),
    ClickHouse(String),
}

impl std::str::FromStr for Side {
    type Err = std::convert::Infallible;

    /// `clickhouse:DATABASE`, else a folder (`dir:` prefix optional).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.strip_prefix("clickhouse:") {
            Some(db) => Side::ClickHouse(db.to_string()),
            None => Side::Folder(PathBuf::from(s.strip_prefix("dir:").unwrap_or(s))),
        })
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Side::Folder(p) => write!(f, "{}", p.display()),
            Side::ClickHouse(db) => write!(f, "clickhouse:{db}"),
        }
    }
}

pub struct DiffOptions {
    pub baseline: Side,
    pub candidate: Side,
    pub range: Range,
    /// Relative tolerance for numbers.
    pub tolerance: f64,
    /// The ClickHouse server of `clickhouse:` sides; its `metric_tables` map metric families
    /// of folders to tables.
    pub clickhouse: ClickHouseConfig,
    /// Examples kept per table and kind of difference.
    pub examples: usize,
    /// The simulator's ground truth, to score the alert rules of both sides against.
    pub ground_truth: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub baseline: String,
    pub candidate: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub tolerance: f64,
    /// The stages compared, when a side is a replay (of these stages).
    pub stages: Option<Vec<String>>,
    pub tables: Vec<TableDiff>,
    pub alerts: Vec<RuleDiff>,
    /// Rows only on one side or changed, over every table.
    pub divergent: u64,
    pub notes: Vec<String>,
    pub quality: BTreeMap<String, Quality>,
    /// Each alert rule's precision and recall on both sides (`--ground-truth`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ground_truth: Vec<TruthScore>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableDiff {
    pub table: String,
    pub baseline_rows: u64,
    pub candidate_rows: u64,
    pub same: u64,
    pub changed: u64,
    pub only_baseline: u64,
    pub only_candidate: u64,
    /// Agreeing rows over all rows of either side.
    pub agreement: f64,
    pub examples_only_baseline: Vec<Map<String, Value>>,
    pub examples_only_candidate: Vec<Map<String, Value>>,
    pub examples_changed: Vec<Change>,
    /// The largest relative changes of a number, largest first.
    pub largest_deltas: Vec<Delta>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Change {
    pub key: Map<String, Value>,
    /// Column -> [baseline, candidate].
    pub columns: BTreeMap<String, [Value; 2]>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Delta {
    pub key: Map<String, Value>,
    pub column: String,
    pub baseline: f64,
    pub candidate: f64,
    pub relative: f64,
}

/// Alerts of one rule: added (only in the candidate) and removed (only in the baseline).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuleDiff {
    pub rule: String,
    pub baseline: u64,
    pub candidate: u64,
    /// On both sides with other values (message, evidence, severity).
    pub changed: u64,
    pub added: Vec<Map<String, Value>>,
    pub removed: Vec<Map<String, Value>>,
}

/// Load both sides and compare them.
pub fn diff(opts: &DiffOptions) -> anyhow::Result<Report> {
    let rt = tokio::runtime::Runtime::new()?;
    let load = |side: &Side| -> anyhow::Result<BTreeMap<String, Rows>> {
        match side {
            Side::Folder(dir) => load::folder(dir, &opts.range, &opts.clickhouse.metric_tables),
            Side::ClickHouse(db) => {
                rt.block_on(load::clickhouse(&opts.clickhouse, db, &opts.range))
            }
        }
    };
    let (mut baseline, mut candidate) = (load(&opts.baseline)?, load(&opts.candidate)?);
    // A replay that ran some stages only is compared on what those stages make.
    let mut scope: Option<Vec<String>> = None;
    for side in [&opts.baseline, &opts.candidate] {
        if let Side::Folder(dir) = side {
            if let Ok(summary) = ReplaySummary::load(dir) {
                let stages: Vec<String> = (summary.written_by)
                    .unwrap_or_else(|| summary.plugins.keys().cloned().collect());
                scope = Some(match scope {
                    Some(s) => s.into_iter().filter(|x| stages.contains(x)).collect(),
                    None => stages,
                });
            }
        }
    }
    if let Some(stages) = &scope {
        for rows in [&mut baseline, &mut candidate] {
            for table in rows.values_mut() {
                table.retain(|_, row| stages.contains(&row.stage));
            }
            rows.retain(|_, table| !table.is_empty());
        }
    }
    // Streams no table keeps (prices, customer events) exist only in folders.
    let one_is_clickhouse = [&opts.baseline, &opts.candidate]
        .iter()
        .any(|s| matches!(s, Side::ClickHouse(_)));
    if one_is_clickhouse {
        for rows in [&mut baseline, &mut candidate] {
            rows.retain(|table, _| !table.starts_with("stream:"));
        }
    }
    let mut report = compare(&baseline, &candidate, opts.tolerance, opts.examples);
    if let Some(path) = &opts.ground_truth {
        let truth = truth::load(path, &opts.range)?;
        report.ground_truth = truth::scores(&truth, &baseline, &candidate);
    }
    if one_is_clickhouse {
        report.notes.push(
            "streams no ClickHouse table keeps (prices, customer events) are compared only between folders".into(),
        );
    }
    report.stages = scope;
    report.baseline = opts.baseline.to_string();
    report.candidate = opts.candidate.to_string();
    if opts.range.from_ms.is_some() || opts.range.to_ms.is_some() {
        report
            .notes
            .push("dead letters carry no event time: a diff of a range leaves them out".into());
    }
    report.from = opts.range.from_ms.map(crate::units::datetime);
    report.to = opts.range.to_ms.map(crate::units::datetime);
    for side in [&opts.baseline, &opts.candidate] {
        if let Side::Folder(dir) = side {
            if let Ok(summary) = ReplaySummary::load(dir) {
                report.quality.insert(side.to_string(), summary.quality);
            }
        }
    }
    Ok(report)
}

/// Compare two output sets (table -> rows by identity).
pub fn compare(
    baseline: &BTreeMap<String, Rows>,
    candidate: &BTreeMap<String, Rows>,
    tolerance: f64,
    examples: usize,
) -> Report {
    let empty = Rows::new();
    let mut tables: Vec<&String> = baseline.keys().chain(candidate.keys()).collect();
    tables.sort();
    tables.dedup();
    let mut report = Report {
        tolerance,
        ..Default::default()
    };
    for table in tables {
        let (b, c) = (
            baseline.get(table).unwrap_or(&empty),
            candidate.get(table).unwrap_or(&empty),
        );
        let mut t = TableDiff {
            table: table.clone(),
            baseline_rows: b.len() as u64,
            candidate_rows: c.len() as u64,
            ..Default::default()
        };
        let mut deltas: Vec<Delta> = Vec::new();
        for (key, row) in b {
            let Some(other) = c.get(key) else {
                t.only_baseline += 1;
                if t.examples_only_baseline.len() < examples {
                    t.examples_only_baseline.push(whole(row));
                }
                continue;
            };
            let columns = changed_columns(row, other, tolerance, &mut deltas);
            if columns.is_empty() {
                t.same += 1;
            } else {
                t.changed += 1;
                if t.examples_changed.len() < examples {
                    t.examples_changed.push(Change {
                        key: row.key.clone(),
                        columns,
                    });
                }
            }
        }
        for (key, row) in c {
            if !b.contains_key(key) {
                t.only_candidate += 1;
                if t.examples_only_candidate.len() < examples {
                    t.examples_only_candidate.push(whole(row));
                }
            }
        }
        deltas.sort_by(|x, y| y.relative.total_cmp(&x.relative));
        deltas.truncate(examples);
        t.largest_deltas = deltas;
        let all = t.same + t.changed + t.only_baseline + t.only_candidate;
        t.agreement = if all == 0 {
            1.0
        } else {
            t.same as f64 / all as f64
        };
        report.divergent += t.changed + t.only_baseline + t.only_candidate;
        if table == "streaming_alerts" {
            report.alerts = rules(b, c);
        }
        report.tables.push(t);
    }
    report
}

/// A row's identity and values as one object.
pub(crate) fn whole(row: &Row) -> Map<String, Value> {
    let mut all = row.key.clone();
    all.extend(row.values.clone());
    all
}

/// Alerts added and removed per rule.
fn rules(baseline: &Rows, candidate: &Rows) -> Vec<RuleDiff> {
    let mut by_rule: BTreeMap<String, RuleDiff> = BTreeMap::new();
    let rule_of = |row: &Row| -> String {
        row.key
            .get("rule")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    for (side, rows, other) in [(0, baseline, candidate), (1, candidate, baseline)] {
        for (key, row) in rows {
            let rule = rule_of(row);
            let entry = by_rule.entry(rule.clone()).or_insert_with(|| RuleDiff {
                rule,
                ..Default::default()
            });
            match side {
                0 => entry.baseline += 1,
                _ => entry.candidate += 1,
            }
            match (other.get(key), side) {
                (None, 0) => entry.removed.push(whole(row)),
                (None, _) => entry.added.push(whole(row)),
                (Some(o), 0) if o.values != row.values => entry.changed += 1,
                _ => {}
            }
        }
    }
    by_rule.into_values().collect()
}

/// The columns whose values differ beyond the tolerance (a column one side lacks counts as
/// its default: empty text, zero).
pub(crate) fn changed_columns(
    b: &Row,
    c: &Row,
    tolerance: f64,
    deltas: &mut Vec<Delta>,
) -> BTreeMap<String, [Value; 2]> {
    let mut changed = BTreeMap::new();
    let mut columns: Vec<&String> = b.values.keys().chain(c.values.keys()).collect();
    columns.sort();
    columns.dedup();
    for column in columns {
        let (x, y) = (b.values.get(column), c.values.get(column));
        match (number(x), number(y)) {
            (Some(p), Some(q)) => {
                let relative = relative_delta(p, q);
                if relative > 0.0 {
                    deltas.push(Delta {
                        key: b.key.clone(),
                        column: column.clone(),
                        baseline: p,
                        candidate: q,
                        relative,
                    });
                }
                if relative > tolerance {
                    changed.insert(column.clone(), [value(x), value(y)]);
                }
            }
            _ if as_text(x) != as_text(y) => {
                changed.insert(column.clone(), [value(x), value(y)]);
            }
            _ => {}
        }
    }
    changed
}

fn value(v: Option<&Value>) -> Value {
    v.cloned().unwrap_or(Value::Null)
}

/// A number, from a JSON number or a numeric text (64-bit integers may come quoted); a missing
/// column is 0 when the other side has a number.
fn number(v: Option<&Value>) -> Option<f64> {
    match v {
        None | Some(Value::Null) => Some(0.0),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    }
}

fn as_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// |a - b| relative to the larger magnitude (0 when equal).
pub fn relative_delta(a: f64, b: f64) -> f64 {
    if a == b {
        return 0.0;
    }
    (a - b).abs() / a.abs().max(b.abs()).max(f64::MIN_POSITIVE)
}
