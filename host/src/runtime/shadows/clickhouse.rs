//! Shadow rows in ClickHouse: with a `[clickhouse]` section, each shadow's outputs and dead
//! letters also go to a database of its own, `<database>_shadow_<name>` (the live schema,
//! applied on first use), never to the live tables; `host diff clickhouse:retail
//! clickhouse:retail_shadow_<name>` compares them. A thread of their own writes them: the
//! pipeline hands rows over without waiting, and when the writer falls behind (ClickHouse slow
//! or down) the rows it cannot take are dropped, counted and logged, so a shadow never holds
//! the live pipeline. Its files (`<data_dir>/shadow/<name>/`) keep every row.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use crate::pipeline::{DeadLetter, Provenance};
use crate::plugin::Event;
use crate::sinks::clickhouse::{migrate_when_reachable, ClickHouseConfig, ClickHouseSink};
use crate::sinks::Sink;

/// Batches waiting for the writer before new ones are dropped.
const QUEUE: usize = 256;

enum Message {
    Rows {
        shadow: Arc<str>,
        stream: Arc<str>,
        provenance: Provenance,
        events: Vec<Event>,
    },
    DeadLetter(Arc<str>, DeadLetter),
    /// Insert what is buffered (without waiting for it).
    Flush,
}

/// The ClickHouse database of a shadow: `<live database>_shadow_<name>` (letters, digits, `_`).
pub fn shadow_database(live: &str, shadow: &str) -> String {
    let name: String = (shadow.chars())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{live}_shadow_{name}")
}

pub struct ShadowRows {
    tx: Option<Sender<Message>>,
    /// Says when the writer has written everything and stopped.
    done: crossbeam_channel::Receiver<()>,
    dropped: Arc<AtomicU64>,
    reported: u64,
}

/// How long stopping waits for the writer to insert what it was handed (ClickHouse may be down:
/// the shadow's rows are then in its files only).
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl ShadowRows {
    pub fn start(config: ClickHouseConfig) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded::<Message>(QUEUE);
        let (done_tx, done) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name("shadow-rows".into())
            .spawn(move || {
                write_rows(config, rx);
                let _ = done_tx.send(());
            })?;
        Ok(ShadowRows {
            tx: Some(tx),
            done,
            dropped: Arc::default(),
            reported: 0,
        })
    }

    fn send(&self, message: Message, rows: u64) {
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(message) {
            self.dropped.fetch_add(rows, Ordering::Relaxed);
        }
    }

    pub fn rows(
        &self,
        shadow: &Arc<str>,
        stream: &Arc<str>,
        provenance: &Provenance,
        events: Vec<Event>,
    ) {
        let n = events.len() as u64;
        let message = Message::Rows {
            shadow: shadow.clone(),
            stream: stream.clone(),
            provenance: provenance.clone(),
            events,
        };
        self.send(message, n);
    }

    pub fn dead_letter(&self, shadow: &Arc<str>, dead_letter: &DeadLetter) {
        self.send(Message::DeadLetter(shadow.clone(), dead_letter.clone()), 1);
    }

    /// Start inserting what is buffered; log rows dropped since the last call.
    pub fn flush(&mut self) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Message::Flush);
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > self.reported {
            tracing::warn!(dropped = dropped - self.reported, total = dropped,
                "shadow rows not written to ClickHouse: its writer fell behind (the shadow's files have them)");
            self.reported = dropped;
        }
    }
}

impl Drop for ShadowRows {
    /// Write everything handed over (waiting at most [`STOP_WAIT`]), then stop the writer.
    fn drop(&mut self) {
        drop(self.tx.take());
        if self.done.recv_timeout(STOP_WAIT).is_err() {
            tracing::warn!(
                waited_s = STOP_WAIT.as_secs(),
                "stopped without the last shadow rows in ClickHouse (the shadow's files have them)"
            );
        }
    }
}

/// The writer thread: a sink per shadow, opened (its database created) on its first rows.
fn write_rows(config: ClickHouseConfig, rx: crossbeam_channel::Receiver<Message>) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "shadow rows cannot be written to ClickHouse");
            return;
        }
    };
    let mut writer = Writer {
        config,
        runtime,
        sinks: BTreeMap::new(),
    };
    for message in rx {
        let written = match message {
            Message::Rows {
                shadow,
                stream,
                provenance,
                events,
            } => writer
                .sink(&shadow)
                .map(|s| s.write(&stream, &provenance, &events)),
            Message::DeadLetter(shadow, d) => writer
                .sink(&shadow)
                .map(|s| s.dead_letters(std::slice::from_ref(&d))),
            Message::Flush => {
                for s in writer.sinks.values_mut() {
                    let _ = s.start_flush();
                }
                None
            }
        };
        if let Some(Err(error)) = written {
            tracing::error!(%error, "writing shadow rows to ClickHouse failed");
        }
    }
    for (shadow, s) in &mut writer.sinks {
        if let Err(error) = s.flush() {
            tracing::error!(%shadow, %error, "flushing shadow rows to ClickHouse failed");
        }
    }
}

struct Writer {
    config: ClickHouseConfig,
    runtime: tokio::runtime::Runtime,
    sinks: BTreeMap<Arc<str>, ClickHouseSink>,
}

impl Writer {
    fn sink(&mut self, shadow: &Arc<str>) -> Option<&mut ClickHouseSink> {
        if !self.sinks.contains_key(shadow) {
            let mut c = self.config.clone();
            c.database = shadow_database(&self.config.database, shadow);
            let created =
                (self.runtime).block_on(migrate_when_reachable(&c.client(), &c.database, &c.url));
            if let Err(error) = created {
                tracing::error!(%shadow, database = %c.database, %error, "creating the shadow's ClickHouse database failed");
                return None;
            }
            tracing::info!(%shadow, database = %c.database, "shadow rows go to ClickHouse");
            match ClickHouseSink::new(c, self.runtime.handle().clone()) {
                Ok(s) => {
                    self.sinks.insert(shadow.clone(), s);
                }
                Err(error) => {
                    tracing::error!(%shadow, %error, "shadow rows cannot be written to ClickHouse");
                    return None;
                }
            }
        }
        self.sinks.get_mut(shadow)
    }
}
