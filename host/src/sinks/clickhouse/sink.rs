//! The sink: rows are buffered per table as JSONEachRow and inserted when `batch_rows` rows are
//! waiting or `flush_interval` has passed, and on every `flush`. Inserts run in the background,
//! several at once (at most `MAX_IN_FLIGHT`); `flush` (the checkpoint) waits until every one is
//! accepted. A failed insert is retried with exponential backoff for as long as it takes: the
//! in-flight limit then holds the pipeline thread, sources block on the full channel, and
//! nothing is dropped (backpressure).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clickhouse::Client;
use serde_json::Value;

use super::rows::{dead_letter_row, event_row, Columns};
use super::ClickHouseConfig;
use crate::meter::SinkMeter;
use crate::pipeline::{DeadLetter, Provenance};
use crate::plugin::Event;
use crate::sinks::{Sink, SinkError};

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
    meter: Arc<SinkMeter>,
}

/// Inserts running at once; one more waits for the oldest (bounded memory; an outage holds the
/// pipeline).
const MAX_IN_FLIGHT: usize = 24;

impl ClickHouseSink {
    /// `runtime`: where the async client runs; the sink itself is called from the pipeline thread.
    pub fn new(config: ClickHouseConfig, runtime: tokio::runtime::Handle) -> Result<Self, String> {
        let flush_interval = crate::units::parse_duration(&config.flush_interval)?;
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
            meter: SinkMeter::new("clickhouse"),
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
            if self.pending.len() >= MAX_IN_FLIGHT {
                let waited = Instant::now();
                while self.pending.len() >= MAX_IN_FLIGHT {
                    let oldest = self.pending.pop_front().expect("not empty");
                    let _ = self.runtime.block_on(oldest);
                }
                self.meter.held(waited.elapsed());
            }
            let sql = format!(
                "INSERT INTO {}.{table} FORMAT JSONEachRow",
                self.config.database
            );
            let client = self.client.clone();
            let body = bytes::Bytes::from(body);
            let meter = self.meter.clone();
            self.pending
                .push_back((self.runtime).spawn(insert(client, sql, table, rows, body, meter)));
            self.rows_written += rows as u64;
        }
        self.buffered = 0;
        self.oldest = None;
    }
}

impl Sink for ClickHouseSink {
    fn write(
        &mut self,
        _stream: &str,
        provenance: &Provenance,
        events: &[Event],
    ) -> Result<(), SinkError> {
        let columns = Columns::new(provenance);
        let (tables, warned) = (&self.config.metric_tables, &mut self.warned_metrics);
        let mut metric_table = |metric: &str| {
            let table = tables.get(metric).cloned();
            if table.is_none() && warned.insert(metric.to_string()) {
                tracing::warn!(metric, "no ClickHouse table for this metric (clickhouse.metric_tables); rows stay in the file sink only");
            }
            table
        };
        let mut rows = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let origin = provenance.origins.get(i);
            rows.extend(event_row(event, origin, &columns, &mut metric_table));
        }
        self.meter.queued(rows.len());
        for (table, row) in rows {
            self.push_row(&table, &row);
        }
        self.maybe_flush()
    }

    fn dead_letters(&mut self, dead: &[DeadLetter]) -> Result<(), SinkError> {
        self.meter.queued(dead.len());
        for d in dead {
            self.push_row("dead_letters", &dead_letter_row(d));
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

    fn meters(&self) -> Vec<Arc<SinkMeter>> {
        vec![self.meter.clone()]
    }
}

/// Insert one table's rows, retrying with backoff until ClickHouse accepts them.
async fn insert(
    client: Client,
    sql: String,
    table: String,
    rows: usize,
    body: bytes::Bytes,
    meter: Arc<SinkMeter>,
) {
    let started = Instant::now();
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
                meter.written(rows, started.elapsed());
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
                meter.retry();
                tracing::warn!(table, rows, attempt, retry_in_ms = backoff.as_millis() as u64, %error,
                    "ClickHouse insert failed; retrying (the pipeline waits, nothing is dropped)");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}
