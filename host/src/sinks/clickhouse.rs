//! The ClickHouse sink: plugin outputs and dead letters into the `retail` tables of `sql/schema.sql`.
//!
//! Rows are buffered per table as JSONEachRow and inserted when `batch_rows` rows are waiting or
//! `flush_interval` has passed, and on every `flush`. Inserts run in the background, several at
//! once (at most `MAX_IN_FLIGHT`); `flush` (the checkpoint) waits until every one is accepted. A
//! failed insert is retried with exponential backoff for as long as it takes: the in-flight
//! limit then holds the pipeline thread, sources block on the full channel, and nothing is
//! dropped (backpressure). Tables are ReplacingMergeTree keyed by each row's
//! deterministic identity, so rows written again after a crash collapse (see `sql/schema.sql`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clickhouse::Client;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{Producer, Sink, SinkError};
use crate::pipeline::DeadLetter;
use crate::plugin::bindings::{Event, MetricRow};

/// The schema, applied by `host migrate` and at start.
pub const SCHEMA: &str = include_str!("../../../sql/schema.sql");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP endpoint, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    /// Insert when this many rows are buffered.
    pub batch_rows: usize,
    /// ... or when the oldest buffered row is this old.
    pub flush_interval: String,
    /// Which table each metric family goes to.
    pub metric_tables: BTreeMap<String, String>,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "retail".into(),
            user: "default".into(),
            password: String::new(),
            batch_rows: 50_000,
            flush_interval: "1s".into(),
            metric_tables: BTreeMap::from([
                ("sales_1m".into(), "spark_sales_metrics".into()),
                ("inventory_1m".into(), "spark_inventory_metrics".into()),
                ("sales_1h".into(), "sales_rollups".into()),
                ("sales_1h_hopping".into(), "sales_rollups".into()),
                ("sales_1d".into(), "sales_rollups".into()),
                ("sales_daily_store".into(), "sales_rollups".into()),
                ("sales_daily_category".into(), "sales_rollups".into()),
                ("stock_plan".into(), "stock_plans".into()),
                ("slow_movers".into(), "slow_movers".into()),
                ("cross_sell".into(), "cross_sell".into()),
            ]),
        }
    }
}

impl ClickHouseConfig {
    pub fn client(&self) -> Client {
        Client::default()
            .with_url(&self.url)
            .with_user(&self.user)
            .with_password(&self.password)
            .with_validation(false)
            .with_compression(clickhouse::Compression::None)
            .with_setting("input_format_skip_unknown_fields", "1")
    }
}

/// Apply `sql/schema.sql` (idempotent) to `database` (the schema's `retail`, or another name,
/// e.g. one per test).
pub async fn migrate(client: &Client, database: &str) -> Result<usize, clickhouse::error::Error> {
    let mut applied = 0;
    for statement in statements(SCHEMA) {
        let statement = statement
            .replace("retail.", &format!("{database}."))
            .replace(
                "DATABASE IF NOT EXISTS retail",
                &format!("DATABASE IF NOT EXISTS {database}"),
            );
        client.query(&statement).execute().await?;
        applied += 1;
        // A table made by an older schema may lack columns added since: add them.
        if let Some((table, columns)) = table_columns(&statement) {
            let sql = format!(
                "SELECT name FROM system.columns WHERE database = '{database}' AND table = '{table}'"
            );
            let names = client
                .query(&sql)
                .fetch_bytes("TabSeparated")?
                .collect()
                .await?;
            let existing: Vec<&str> = std::str::from_utf8(&names).unwrap_or("").lines().collect();
            for (name, definition) in &columns {
                if !existing.contains(&name.as_str()) {
                    tracing::info!(table, column = %name, "adding a column the table lacks");
                    let alter = format!("ALTER TABLE {database}.{table} ADD COLUMN {definition}");
                    client.query(&alter).execute().await?;
                    applied += 1;
                }
            }
            // A sorting key cannot change in place: rebuild a table whose key lacks `_partition`.
            if sorting_key(&statement).contains("_partition") {
                let sql = format!(
                    "SELECT engine_full FROM system.tables WHERE database = '{database}' AND name = '{table}'"
                );
                let engine = client
                    .query(&sql)
                    .fetch_bytes("TabSeparated")?
                    .collect()
                    .await?;
                if !sorting_key(&String::from_utf8_lossy(&engine)).contains("_partition") {
                    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
                    rebuild(client, &statement, database, &table, &names).await?;
                    applied += 1;
                }
            }
        }
    }
    Ok(applied)
}

/// Re-create `table` with the sorting key of `statement` (its `CREATE TABLE`), copying every
/// row; the old table stays as `{table}_before_partition_key`.
async fn rebuild(
    client: &Client,
    statement: &str,
    database: &str,
    table: &str,
    columns: &[&str],
) -> Result<(), clickhouse::error::Error> {
    let (old, new, backup) = (
        format!("{database}.{table}"),
        format!("{database}.{table}_rebuilt"),
        format!("{database}.{table}_before_partition_key"),
    );
    tracing::warn!(table = %old, %backup, "rebuilding a table whose sorting key lacks _partition (rows are copied; the old table is kept)");
    client
        .query(&format!("DROP TABLE IF EXISTS {new}"))
        .execute()
        .await?;
    let create = statement.replacen(&format!("{old}\n"), &format!("{new}\n"), 1);
    if create == statement {
        return Err(clickhouse::error::Error::Custom(format!(
            "rebuilding {old}: unexpected CREATE statement"
        )));
    }
    client.query(&create).execute().await?;
    let list = columns.join(", ");
    client
        .query(&format!(
            "INSERT INTO {new} ({list}) SELECT {list} FROM {old}"
        ))
        .execute()
        .await?;
    client
        .query(&format!("RENAME TABLE {old} TO {backup}, {new} TO {old}"))
        .execute()
        .await?;
    Ok(())
}

/// The `ORDER BY (...)` part of a table definition (empty if none).
fn sorting_key(definition: &str) -> &str {
    definition
        .find("ORDER BY")
        .map(|i| {
            let rest = &definition[i..];
            &rest[..rest.find(')').map_or(rest.len(), |j| j + 1)]
        })
        .unwrap_or("")
}

/// The table name and the (name, definition) of each column of a `CREATE TABLE` statement.
fn table_columns(statement: &str) -> Option<(String, Vec<(String, String)>)> {
    let rest = statement.strip_prefix("CREATE TABLE IF NOT EXISTS ")?;
    let name = rest.split_whitespace().next()?;
    let table = name.rsplit('.').next()?.to_string();
    let body = &rest[rest.find('(')? + 1..rest.find("ENGINE")?];
    let body = body.trim().strip_suffix(')')?;
    let columns = body
        .split(",\n")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .filter_map(|c| Some((c.split_whitespace().next()?.to_string(), c.to_string())))
        .collect();
    Some((table, columns))
}

/// [`migrate`], waiting for a server that cannot be reached (down, restarting) with backoff, as
/// the sink does for inserts; a server that answers with an error fails at once.
pub async fn migrate_when_reachable(
    client: &Client,
    database: &str,
    url: &str,
) -> Result<usize, clickhouse::error::Error> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match migrate(client, database).await {
            Err(
                error @ (clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut),
            ) => {
                tracing::warn!(url, error = ?error, retry_in_ms = backoff.as_millis() as u64,
                    "ClickHouse unreachable at start; waiting for it");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Load the simulator's stores and products into `dim_store` and `dim_product` (idempotent:
/// ReplacingMergeTree on the keys).
pub async fn load_dimensions(
    client: &Client,
    database: &str,
    sim: &crate::sources::simulator::Simulator,
) -> Result<(usize, usize), clickhouse::error::Error> {
    let mut stores = Vec::new();
    for (i, s) in sim.stores.iter().enumerate() {
        let row = json!({"store_key": i + 1, "store_id": s.id, "store_name": format!("{} {}", s.city, s.id), "city": s.city});
        serde_json::to_writer(&mut stores, &row).expect("serialise");
        stores.push(b'\n');
    }
    let mut products = Vec::new();
    for p in &sim.products {
        let row = json!({"product_key": product_key(&p.sku), "sku": p.sku, "product_name": p.name,
            "category": p.category, "base_price": p.base_price});
        serde_json::to_writer(&mut products, &row).expect("serialise");
        products.push(b'\n');
    }
    for (table, body) in [("dim_store", stores), ("dim_product", products)] {
        let mut insert = client
            .insert_formatted_with(format!("INSERT INTO {database}.{table} FORMAT JSONEachRow"));
        insert.send(bytes::Bytes::from(body)).await?;
        insert.end().await?;
    }
    Ok((sim.stores.len(), sim.products.len()))
}

/// The seed's sample queries (see `sql/queries/seed_samples.sql`).
pub const SEED_SAMPLES: &str = include_str!("../../../sql/queries/seed_samples.sql");

/// Answers to the seed's five learning exercises (see `sql/queries/exercises.sql`).
pub const EXERCISES: &str = include_str!("../../../sql/queries/exercises.sql");

/// The named queries of a file in `sql/queries/` (`-- name: x` before each), comments dropped.
pub fn named_queries(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("-- name:") {
            out.push((name.trim().to_string(), String::new()));
        } else if !line.trim_start().starts_with("--") {
            if let Some((_, sql)) = out.last_mut() {
                sql.push_str(line);
                sql.push('\n');
            }
        }
    }
    out.into_iter()
        .map(|(n, s)| (n, s.trim().trim_end_matches(';').to_string()))
        .collect()
}

/// The statements of a SQL file: `;`-terminated, `--` comments removed.
pub fn statements(sql: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

pub struct ClickHouseSink {
    config: ClickHouseConfig,
    client: Client,
    runtime: tokio::runtime::Handle,
    buffers: BTreeMap<String, (usize, Vec<u8>)>,
    buffered: usize,
    oldest: Option<Instant>,
    flush_interval: Duration,
    warned_metrics: std::collections::BTreeSet<String>,
    pub rows_written: u64,
    /// Inserts under way, oldest first (at most [`MAX_IN_FLIGHT`]).
    pending: std::collections::VecDeque<tokio::task::JoinHandle<()>>,
}

/// Inserts running at once; one more waits for the oldest (bounded memory; an outage holds the
/// pipeline).
const MAX_IN_FLIGHT: usize = 24;

impl ClickHouseSink {
    /// `runtime`: where the async client runs; the sink itself is called from the pipeline thread.
    pub fn new(config: ClickHouseConfig, runtime: tokio::runtime::Handle) -> Result<Self, String> {
        let flush_interval = crate::config::parse_duration(&config.flush_interval)?;
        Ok(ClickHouseSink {
            client: config.client(),
            config,
            runtime,
            buffers: BTreeMap::new(),
            buffered: 0,
            oldest: None,
            flush_interval,
            warned_metrics: Default::default(),
            rows_written: 0,
            pending: Default::default(),
        })
    }

    fn push_row(&mut self, table: &str, row: &Value) {
        let (count, buf) = self.buffers.entry(table.to_string()).or_default();
        serde_json::to_writer(&mut *buf, row).expect("rows serialise");
        buf.push(b'\n');
        *count += 1;
        self.buffered += 1;
        self.oldest.get_or_insert_with(Instant::now);
    }

    fn maybe_flush(&mut self) -> Result<(), SinkError> {
        let due = self
            .oldest
            .is_some_and(|t| t.elapsed() >= self.flush_interval);
        if self.buffered >= self.config.batch_rows || due {
            self.start_inserts();
        }
        Ok(())
    }

    /// Start inserting every buffered table's rows: the inserts run concurrently in the
    /// background, each retrying with backoff until ClickHouse accepts it.
    fn start_inserts(&mut self) {
        for (table, (rows, body)) in std::mem::take(&mut self.buffers) {
            while self.pending.len() >= MAX_IN_FLIGHT {
                let oldest = self.pending.pop_front().expect("not empty");
                let _ = self.runtime.block_on(oldest);
            }
            let sql = format!(
                "INSERT INTO {}.{table} FORMAT JSONEachRow",
                self.config.database
            );
            let client = self.client.clone();
            let body = bytes::Bytes::from(body);
            self.pending
                .push_back(self.runtime.spawn(insert(client, sql, table, rows, body)));
            self.rows_written += rows as u64;
        }
        self.buffered = 0;
        self.oldest = None;
    }

    fn metric_row(&mut self, m: &MetricRow, p: &Producer<'_>) -> Option<(String, Value)> {
        let Some(table) = self.config.metric_tables.get(&m.metric).cloned() else {
            if self.warned_metrics.insert(m.metric.clone()) {
                tracing::warn!(metric = %m.metric, "no ClickHouse table for this metric (clickhouse.metric_tables); rows stay in the file sink only");
            }
            return None;
        };
        let mut row = Map::new();
        row.insert("window_start".into(), datetime(m.window_start).into());
        row.insert("window_end".into(), datetime(m.window_end).into());
        row.insert("metric".into(), m.metric.clone().into());
        for (k, v) in &m.dimensions {
            row.insert(k.clone(), v.clone().into());
        }
        for (k, v) in &m.values {
            row.insert(k.clone(), number(*v));
        }
        provenance(&mut row, p);
        Some((table, Value::Object(row)))
    }
}

impl Sink for ClickHouseSink {
    fn write(
        &mut self,
        _stream: &str,
        producer: &Producer<'_>,
        events: &[Event],
    ) -> Result<(), SinkError> {
        for (i, event) in events.iter().enumerate() {
            let origin = producer.origins.get(i);
            let (table, row) = match event {
                Event::Sale(s) => {
                    let mut row = json!({
                        "sale_id": format!("{}-{}", s.transaction_id, s.line),
                        "transaction_id": s.transaction_id,
                        "line": s.line,
                        "store_id": s.store_id,
                        "product_id": s.product_id,
                        "product_key": product_key(&s.product_id),
                        "quantity": s.quantity,
                        "unit_price": s.unit_price,
                        "total_amount": s.total_amount,
                        "customer_id": s.customer_id.clone().unwrap_or_default(),
                        "payment_method": s.payment_method,
                        "transaction_time": datetime(s.timestamp),
                        "transaction_date": date(s.timestamp),
                    });
                    provenance(row.as_object_mut().expect("object"), producer);
                    source(row.as_object_mut().expect("object"), origin);
                    ("fact_sales".to_string(), row)
                }
                Event::Inventory(u) => {
                    let mut row = json!({
                        "update_id": u.update_id,
                        "store_id": u.store_id,
                        "product_id": u.product_id,
                        "product_key": product_key(&u.product_id),
                        "quantity_change": u.quantity_change,
                        "stock_level": u.stock_level,
                        "capacity": u.capacity,
                        "reason": u.reason,
                        "update_time": datetime(u.timestamp),
                        "update_date": date(u.timestamp),
                    });
                    provenance(row.as_object_mut().expect("object"), producer);
                    source(row.as_object_mut().expect("object"), origin);
                    ("fact_inventory".to_string(), row)
                }
                Event::Metric(m) => match self.metric_row(m, producer) {
                    Some(r) => r,
                    None => continue,
                },
                Event::Alert(a) => {
                    let evidence: Map<String, Value> = a
                        .evidence
                        .iter()
                        .map(|(k, v)| (k.clone(), number(*v)))
                        .collect();
                    let mut row = json!({
                        "alert_time": datetime(a.timestamp),
                        "rule": a.rule,
                        "severity": format!("{:?}", a.severity).to_uppercase(),
                        "store_id": a.store_id,
                        "product_id": a.product_id,
                        "message": a.message,
                        "evidence": Value::Object(evidence).to_string(),
                        "window_start": datetime(a.window_start),
                        "window_end": datetime(a.window_end),
                    });
                    provenance(row.as_object_mut().expect("object"), producer);
                    ("streaming_alerts".to_string(), row)
                }
                Event::Forecast(f) => {
                    let mut row = json!({
                        "forecast_time": datetime(f.timestamp),
                        "model": f.model,
                        "store_id": f.store_id,
                        "product_id": f.product_id,
                        "target_start": datetime(f.target_start),
                        "target_end": datetime(f.target_end),
                        "predicted": f.predicted,
                        "lower": f.lower,
                        "upper": f.upper,
                    });
                    provenance(row.as_object_mut().expect("object"), producer);
                    ("demand_forecasts".to_string(), row)
                }
                Event::Price(_) | Event::Customer(_) => continue,
            };
            self.push_row(&table, &row);
        }
        self.maybe_flush()
    }

    fn dead_letters(&mut self, dead: &[DeadLetter]) -> Result<(), SinkError> {
        for d in dead {
            let record = match &d.record {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            let source = d.source.as_ref();
            let identity = serde_json::to_vec(&(&d.stage, &d.kind, &d.reason, &d.source, &record))
                .expect("serialise");
            let row = json!({
                "dead_letter_id": hex(&Sha256::digest(identity)[..16]),
                "kind": serde_json::to_value(d.kind).expect("kind"),
                "reason": d.reason,
                "stage": d.stage,
                "plugin": d.plugin,
                "plugin_version": d.plugin_version,
                "source_topic": source.map(|s| s.topic.to_string()).unwrap_or_default(),
                "source_partition": source.map_or(-1, |s| s.partition),
                "source_offset": source.map_or(-1, |s| s.offset),
                "record": record,
                "recorded_date": date(now_ms()),
            });
            self.push_row("dead_letters", &row);
        }
        self.maybe_flush()
    }

    /// Insert everything buffered; the wait is for every insert started so far.
    fn start_flush(&mut self) -> Result<Vec<crate::sinks::Pending>, SinkError> {
        self.start_inserts();
        let inserts = std::mem::take(&mut self.pending);
        let runtime = self.runtime.clone();
        Ok(vec![Box::new(move || {
            for insert in inserts {
                let _ = runtime.block_on(insert);
            }
        })])
    }

    /// Insert everything buffered and wait until ClickHouse has accepted every insert.
    fn flush(&mut self) -> Result<(), SinkError> {
        self.start_inserts();
        while let Some(insert) = self.pending.pop_front() {
            let _ = self.runtime.block_on(insert);
        }
        Ok(())
    }
}

/// Insert one table's rows, retrying with backoff until ClickHouse accepts them.
async fn insert(client: Client, sql: String, table: String, rows: usize, body: bytes::Bytes) {
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 1u32;
    loop {
        let result = async {
            let mut insert = client.insert_formatted_with(sql.clone());
            insert.send(body.clone()).await?;
            insert.end().await
        }
        .await;
        match result {
            Ok(()) => {
                if attempt > 1 {
                    tracing::info!(
                        table,
                        rows,
                        attempt,
                        "ClickHouse insert succeeded after retries"
                    );
                }
                return;
            }
            Err(error) => {
                tracing::warn!(table, rows, attempt, retry_in_ms = backoff.as_millis() as u64, %error,
                    "ClickHouse insert failed; retrying (the pipeline waits, nothing is dropped)");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}

/// Which stage and plugin version made the row, and the source offsets it was computed from
/// (for derived rows: the highest offset read per partition when it was emitted).
fn provenance(row: &mut Map<String, Value>, p: &Producer<'_>) {
    row.insert("_stage".into(), p.stage.into());
    row.insert("_plugin".into(), p.plugin.into());
    row.insert("_plugin_version".into(), p.version.into());
    row.insert("_source_offsets".into(), p.positions.into());
    row.insert("_partition".into(), p.partition.unwrap_or(-1).into());
}

/// A fact's own source record.
fn source(row: &mut Map<String, Value>, origin: Option<&crate::pipeline::SourceRef>) {
    let (topic, partition, offset) =
        origin.map_or(("", -1, -1), |o| (&*o.topic, o.partition, o.offset));
    row.insert("_source_topic".into(), topic.into());
    row.insert("_source_partition".into(), partition.into());
    row.insert("_source_offset".into(), offset.into());
}

/// Whole numbers as JSON integers, so integer columns accept them.
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::from(v as i64)
    } else {
        Value::from(v)
    }
}

/// The numeric key of `SKU-00042` (42), the join key of `dim_product`.
pub fn product_key(sku: &str) -> u32 {
    sku.trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or(0)
}

/// `YYYY-MM-DD hh:mm:ss` in UTC, the DateTime text every ClickHouse version reads.
pub fn datetime(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.clamp(0, 4_102_444_800_000) as u64);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.trim_end_matches('Z').replace('T', " ")
}

pub fn date(ms: i64) -> String {
    datetime(ms)[..10].to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_keys() {
        assert_eq!(datetime(0), "1970-01-01 00:00:00");
        assert_eq!(datetime(1_795_338_000_500), "2026-11-22 09:00:00");
        assert_eq!(date(1_795_338_000_500), "2026-11-22");
        assert_eq!(product_key("SKU-00042"), 42);
        assert_eq!(number(3.0), json!(3));
        assert_eq!(number(2.5), json!(2.5));
    }

    #[test]
    fn create_statements_list_their_columns() {
        let sales = statements(SCHEMA)
            .into_iter()
            .find(|s| s.contains("retail.fact_sales"))
            .unwrap();
        let (table, columns) = table_columns(&sales).unwrap();
        assert_eq!(table, "fact_sales");
        assert_eq!(
            columns[0],
            ("sale_id".to_string(), "sale_id String".to_string())
        );
        assert!(columns.contains(&(
            "_source_offset".to_string(),
            "_source_offset Int64".to_string()
        )));
        assert!(columns
            .iter()
            .any(|(n, d)| n == "transaction_time" && d == "transaction_time DateTime('UTC')"));
        assert!(table_columns("CREATE DATABASE IF NOT EXISTS retail").is_none());
    }

    #[test]
    fn schema_splits_into_statements() {
        let s = statements(SCHEMA);
        assert!(s[0].starts_with("CREATE DATABASE IF NOT EXISTS retail"));
        assert!(s.iter().all(|x| x.starts_with("CREATE")));
        assert!(s.iter().any(|x| x.contains("retail.spark_sales_metrics")));
    }
}
