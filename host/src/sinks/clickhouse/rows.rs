//! One ClickHouse row (JSONEachRow) per event or dead letter, with the provenance columns:
//! which stage and plugin version made it, and the source offsets it came from.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::pipeline::{DeadLetter, Provenance};
use crate::plugin::{Event, MetricRow};
use crate::units::{date, datetime};

/// The provenance columns of every row of one output batch (computed once per batch).
pub(super) struct Columns {
    stage: Value,
    plugin: Value,
    version: Value,
    /// For derived rows: the highest offset read per partition when they were emitted.
    positions: Value,
    partition: Value,
}

impl Columns {
    pub(super) fn new(p: &Provenance) -> Self {
        Columns {
            stage: (&*p.stage).into(),
            plugin: (&*p.plugin).into(),
            version: (&*p.version).into(),
            positions: p.positions_json().into(),
            partition: p.partition.unwrap_or(-1).into(),
        }
    }

    fn add_to(&self, row: &mut Map<String, Value>) {
        row.insert("_stage".into(), self.stage.clone());
        row.insert("_plugin".into(), self.plugin.clone());
        row.insert("_plugin_version".into(), self.version.clone());
        row.insert("_source_offsets".into(), self.positions.clone());
        row.insert("_partition".into(), self.partition.clone());
    }
}

/// The table and row of one event (`None`: not stored in ClickHouse). `origin`: a fact's
/// source record; `metric_table`: the table of a metric family, if it has one.
pub(super) fn event_row(
    event: &Event,
    origin: Option<&crate::pipeline::SourceRef>,
    columns: &Columns,
    metric_table: &mut dyn FnMut(&str) -> Option<String>,
) -> Option<(String, Value)> {
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
            columns.add_to(row.as_object_mut().expect("object"));
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
            columns.add_to(row.as_object_mut().expect("object"));
            source(row.as_object_mut().expect("object"), origin);
            ("fact_inventory".to_string(), row)
        }
        Event::Metric(m) => return metric_row(m, columns, metric_table),
        Event::Alert(a) => {
            let evidence: Map<String, Value> = a
                .evidence
                .iter()
                .map(|(k, v)| (k.clone(), number(*v)))
                .collect();
            let mut row = json!({
                "alert_time": datetime(a.timestamp),
                "rule": a.rule,
                "severity": severity(a.severity),
                "store_id": a.store_id,
                "product_id": a.product_id,
                "message": a.message,
                "evidence": Value::Object(evidence).to_string(),
                "window_start": datetime(a.window_start),
                "window_end": datetime(a.window_end),
            });
            columns.add_to(row.as_object_mut().expect("object"));
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
            columns.add_to(row.as_object_mut().expect("object"));
            ("demand_forecasts".to_string(), row)
        }
        Event::Price(_) | Event::Customer(_) => return None,
    };
    Some((table, row))
}

fn metric_row(
    m: &MetricRow,
    columns: &Columns,
    metric_table: &mut dyn FnMut(&str) -> Option<String>,
) -> Option<(String, Value)> {
    let table = metric_table(&m.metric)?;
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
    columns.add_to(&mut row);
    Some((table, Value::Object(row)))
}

/// The table and row an event of a batch with this provenance gets (`None`: no table keeps it);
/// `metric_tables` as in the `[clickhouse]` config. What the sink inserts, for tools that compare
/// outputs as rows.
pub fn table_row(
    event: &Event,
    provenance: &Provenance,
    metric_tables: &std::collections::BTreeMap<String, String>,
) -> Option<(String, Value)> {
    event_row(
        event,
        provenance.origins.first(),
        &Columns::new(provenance),
        &mut |metric| metric_tables.get(metric).cloned(),
    )
}

/// The `dead_letters` row of a dead letter; its id hashes what identifies it, so one written
/// again after a crash collapses.
pub fn dead_letter_row(d: &DeadLetter) -> Value {
    let record = match &d.record {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    let source = d.source.as_ref();
    let now = crate::units::now_ms();
    let identity =
        serde_json::to_vec(&(&d.stage, &d.kind, &d.reason, &d.source, &record)).expect("serialise");
    json!({
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
        "payload_base64": u8::from(d.payload_base64),
        "record_key": d.key.clone().unwrap_or_default(),
        "key_base64": u8::from(d.key_base64),
        "headers": serde_json::to_string(&d.headers).expect("headers serialise"),
        "recorded_at": datetime(now),
        "recorded_date": date(now),
    })
}

/// `INFO`, `WARNING`, `CRITICAL` (the bindings' `Debug` writes `Severity::Warning`).
fn severity(s: crate::plugin::Severity) -> &'static str {
    use crate::plugin::Severity;
    match s {
        Severity::Info => "INFO",
        Severity::Warning => "WARNING",
        Severity::Critical => "CRITICAL",
    }
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
        assert_eq!(severity(crate::plugin::Severity::Critical), "CRITICAL");
    }
}
