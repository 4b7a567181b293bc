//! Output sets as table rows: an outputs folder (NDJSON per stream, as `host run` and
//! `host replay` write them) or a ClickHouse database, in the one shape both have: each event as
//! the row its ClickHouse table gets, keyed by the table's identity.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde_json::{Map, Value};

use crate::archive::Range;
use crate::pipeline::{event_from_value, DeadLetter, Provenance};
use crate::sinks::clickhouse::{dead_letter_row, table_row, ClickHouseConfig, TableShape};

/// One table's rows by identity: `key (as JSON) -> (key columns, other columns)`.
pub type Rows = BTreeMap<String, Row>;

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: Map<String, Value>,
    pub values: Map<String, Value>,
    /// The stage that made it (not compared; scopes a diff to the stages a replay ran).
    pub stage: String,
}

/// Whether a column says what a row says (not how it was made, where it came from, or when it
/// was written).
fn compared(shape: Option<&TableShape>, column: &str) -> bool {
    !column.starts_with('_')
        && column != "recorded_date"
        && column != "recorded_at"
        && shape.is_none_or(|s| s.columns.iter().any(|(c, _)| c == column))
}

/// The tables to compare: every table of the schema but the dimensions.
pub fn shapes() -> Vec<TableShape> {
    crate::sinks::clickhouse::table_shapes()
        .into_iter()
        .filter(|t| !t.name.starts_with("dim_"))
        .collect()
}

/// Whether a row lies in the range: a window inside it, or its first time column in it.
fn in_range(shape: Option<&TableShape>, row: &Map<String, Value>, range: &Range) -> bool {
    if range.from_ms.is_none() && range.to_ms.is_none() {
        return true;
    }
    let time = |c: &str| row.get(c).and_then(Value::as_str).and_then(parse_datetime);
    let Some(shape) = shape else {
        return ["timestamp", "window_start"]
            .iter()
            .find_map(|c| row.get(*c).and_then(Value::as_i64))
            .is_none_or(|t| range.contains(t));
    };
    let has = |c: &str| shape.columns.iter().any(|(n, _)| n == c);
    if has("window_start") && has("window_end") {
        let (Some(start), Some(end)) = (time("window_start"), time("window_end")) else {
            return false;
        };
        return range.from_ms.is_none_or(|f| start >= f) && range.to_ms.is_none_or(|t| end <= t);
    }
    match shape
        .columns
        .iter()
        .find(|(_, ty)| ty.starts_with("DateTime"))
    {
        Some((column, _)) => time(column).is_some_and(|t| range.contains(t)),
        // Dead letters carry no event time: a range leaves them out.
        None => false,
    }
}

fn parse_datetime(text: &str) -> Option<i64> {
    crate::units::parse_time(&text.replace(' ', "T")).ok()
}

/// Split a row into its identity and the compared columns.
fn keyed(shape: Option<&TableShape>, row: Map<String, Value>) -> (String, Row) {
    let stage = (row.get("_stage").or_else(|| row.get("stage")))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut key = Map::new();
    let mut values = Map::new();
    for (column, value) in row {
        let is_key = match shape {
            Some(s) => s.key.contains(&column),
            None => true, // a stream without a table: the whole row is its identity
        };
        if is_key {
            key.insert(column, value);
        } else if compared(shape, &column) {
            values.insert(column, value);
        }
    }
    if let Some(s) = shape {
        // The key in the table's order, as the identity's text; a key column a row does not
        // set has the column's default, as ClickHouse stores it.
        for (column, ty) in s.columns.iter().filter(|(c, _)| s.key.contains(c)) {
            key.entry(column.clone()).or_insert_with(|| default_of(ty));
        }
        let ordered: Vec<&Value> = s.key.iter().map(|k| &key[k]).collect();
        let id = serde_json::to_string(&ordered).expect("json");
        return (id, Row { key, values, stage });
    }
    let id = Value::Object(key.clone()).to_string();
    (id, Row { key, values, stage })
}

/// What ClickHouse stores in a column of type `ty` that an insert leaves out.
fn default_of(ty: &str) -> Value {
    match ty {
        t if t.starts_with("String") => Value::from(""),
        t if t.starts_with("DateTime") => Value::from("1970-01-01 00:00:00"),
        t if t.starts_with("Date") => Value::from("1970-01-01"),
        _ => Value::from(0),
    }
}

/// The rows of an outputs folder: every `<stream>.ndjson` and `dead_letters.ndjson`.
pub fn folder(
    dir: &Path,
    range: &Range,
    metric_tables: &BTreeMap<String, String>,
) -> anyhow::Result<BTreeMap<String, Rows>> {
    let shapes: BTreeMap<String, TableShape> =
        shapes().into_iter().map(|s| (s.name.clone(), s)).collect();
    let mut out: BTreeMap<String, Rows> = BTreeMap::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the outputs folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
        .collect();
    files.sort();
    if files.is_empty() {
        anyhow::bail!("{} holds no outputs (<stream>.ndjson)", dir.display());
    }
    for path in files {
        let stream = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = || format!("{} line {}", path.display(), n + 1);
            let (table, row) = if stream == crate::sinks::file::DEAD_LETTERS {
                let dead: DeadLetter = serde_json::from_str(&line).with_context(bad)?;
                ("dead_letters".to_string(), dead_letter_row(&dead))
            } else {
                let value: Value = serde_json::from_str(&line).with_context(bad)?;
                stream_row(&stream, value, metric_tables).with_context(bad)?
            };
            let Value::Object(row) = row else { continue };
            let shape = shapes.get(&table);
            if in_range(shape, &row, range) {
                let (key, row) = keyed(shape, row);
                out.entry(table).or_default().insert(key, row);
            }
        }
    }
    Ok(out)
}

/// The table and row of one event (`stream:<name>`, the event's JSON with its stage, for events
/// no table keeps).
fn event_table_row(
    stream: &str,
    event: &crate::plugin::Event,
    provenance: &Provenance,
    metric_tables: &BTreeMap<String, String>,
) -> (String, Value) {
    table_row(event, provenance, metric_tables).unwrap_or_else(|| {
        let mut row = crate::pipeline::event_json(event);
        if let Value::Object(m) = &mut row {
            m.insert("_stage".into(), Value::from(&*provenance.stage));
        }
        (format!("stream:{stream}"), row)
    })
}

/// The table, identity and row of one event of an output batch: what a running comparison
/// matches.
pub fn event_row(
    stream: &str,
    event: &crate::plugin::Event,
    provenance: &Provenance,
    metric_tables: &BTreeMap<String, String>,
    shapes: &BTreeMap<String, TableShape>,
) -> (String, String, Row) {
    let (table, row) = event_table_row(stream, event, provenance, metric_tables);
    let Value::Object(row) = row else {
        unreachable!("rows are objects")
    };
    let (key, row) = keyed(shapes.get(&table), row);
    (table, key, row)
}

/// The table row of one NDJSON output line (its provenance fields read back).
fn stream_row(
    stream: &str,
    mut value: Value,
    metric_tables: &BTreeMap<String, String>,
) -> anyhow::Result<(String, Value)> {
    let map = value.as_object_mut().context("not a JSON object")?;
    let text = |m: &mut Map<String, Value>, k: &str| -> Arc<str> {
        m.remove(k)
            .and_then(|v| v.as_str().map(Arc::from))
            .unwrap_or_else(|| Arc::from(""))
    };
    let provenance = Provenance {
        stage: text(map, "_stage"),
        plugin: text(map, "_plugin"),
        version: text(map, "_plugin_version"),
        origins: Vec::new(),
        positions: Default::default(),
        partition: map
            .remove("_partition")
            .and_then(|p| p.as_i64())
            .map(|p| p as i32),
    };
    let event = event_from_value(value)?;
    Ok(event_table_row(stream, &event, &provenance, metric_tables))
}

/// The rows of a ClickHouse database (every table of the schema but the dimensions), merged by
/// identity (`FINAL`).
pub async fn clickhouse(
    config: &ClickHouseConfig,
    database: &str,
    range: &Range,
) -> anyhow::Result<BTreeMap<String, Rows>> {
    let client = config
        .client()
        .with_setting("output_format_json_quote_64bit_integers", "0");
    let mut out = BTreeMap::new();
    for shape in shapes() {
        let sql = format!("SELECT * FROM {database}.{} FINAL", shape.name);
        let bytes = client
            .query(&sql)
            .fetch_bytes("JSONEachRow")
            .with_context(|| format!("querying {database}.{} at {}", shape.name, config.url))?
            .collect()
            .await
            .with_context(|| format!("reading {database}.{} at {}", shape.name, config.url))?;
        let mut rows = Rows::new();
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let row: Map<String, Value> = serde_json::from_slice(line)
                .with_context(|| format!("a row of {database}.{}", shape.name))?;
            if in_range(Some(&shape), &row, range) {
                let (key, row) = keyed(Some(&shape), row);
                rows.insert(key, row);
            }
        }
        if !rows.is_empty() {
            out.insert(shape.name.clone(), rows);
        }
    }
    Ok(out)
}
