//! The embedded default sink: one NDJSON file per stream under `<data_dir>/out/`, plus
//! `dead_letters.ndjson`. Each line is the record's fields with `kind` and the provenance fields
//! `_stage`, `_plugin`, `_plugin_version`, and `_partition` (the shard's source partition; absent
//! for unpartitioned sources).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Instant;

use super::{OutputBatch, Sink, SinkError};
use crate::meter::SinkMeter;
use crate::pipeline::DeadLetter;
use crate::pipeline::Provenance;
use crate::plugin::columns::part_len;
use crate::plugin::{event_kind, Event};

pub const DEAD_LETTERS: &str = "dead_letters";

pub struct FileSink {
    dir: PathBuf,
    files: HashMap<String, BufWriter<File>>,
    /// Lines written since the last flush (durable at the flush).
    unsynced: usize,
    meter: Arc<SinkMeter>,
}

impl FileSink {
    pub fn new(dir: &Path) -> Result<Self, SinkError> {
        std::fs::create_dir_all(dir).map_err(|source| SinkError::Io {
            what: dir.display().to_string(),
            source,
        })?;
        Ok(FileSink {
            dir: dir.to_path_buf(),
            files: HashMap::new(),
            unsynced: 0,
            meter: SinkMeter::new("files"),
        })
    }

    fn file(&mut self, stream: &str) -> Result<&mut BufWriter<File>, SinkError> {
        if !self.files.contains_key(stream) {
            let path = self.dir.join(format!("{stream}.ndjson"));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|source| SinkError::Io {
                    what: path.display().to_string(),
                    source,
                })?;
            self.files
                .insert(stream.to_string(), BufWriter::with_capacity(1 << 16, file));
        }
        Ok(self.files.get_mut(stream).expect("inserted above"))
    }

    fn line(&mut self, stream: &str, value: &serde_json::Value) -> Result<(), SinkError> {
        self.unsynced += 1;
        self.meter.queued(1);
        let out = self.file(stream)?;
        serde_json::to_writer(&mut *out, value)
            .map_err(std::io::Error::from)
            .and_then(|_| out.write_all(b"\n"))
            .map_err(|source| SinkError::Io {
                what: format!("stream {stream}"),
                source,
            })
    }
}

impl FileSink {
    /// Write `events` lines to `stream`'s file: `fields` appends event `i`'s fields as a JSON
    /// object, then come its kind and the batch's provenance.
    fn lines(
        &mut self,
        stream: &str,
        provenance: &Provenance,
        events: usize,
        mut fields: impl FnMut(&mut Vec<u8>, usize) -> &'static str,
    ) -> Result<(), SinkError> {
        let tail = provenance_tail(provenance);
        let mut line = Vec::with_capacity(512);
        self.unsynced += events;
        self.meter.queued(events);
        let out = self.file(stream)?;
        for i in 0..events {
            line.clear();
            let kind = fields(&mut line, i);
            line.pop(); // the closing brace
            line.extend_from_slice(b",\"kind\":\"");
            line.extend_from_slice(kind.as_bytes());
            line.push(b'"');
            line.extend_from_slice(&tail);
            out.write_all(&line).map_err(|source| SinkError::Io {
                what: format!("stream {stream}"),
                source,
            })?;
        }
        Ok(())
    }
}

/// The provenance fields, the same for a whole batch (written once per batch), and the line's
/// end.
fn provenance_tail(provenance: &Provenance) -> Vec<u8> {
    let mut tail = Vec::with_capacity(128);
    let text = |out: &mut Vec<u8>, key: &str, value: &str| {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        serde_json::to_writer(&mut *out, value).expect("in-memory write");
    };
    if let Some(p) = provenance.partition {
        tail.extend_from_slice(format!(",\"_partition\":{p}").as_bytes());
    }
    text(&mut tail, "_plugin", &provenance.plugin);
    text(&mut tail, "_plugin_version", &provenance.version);
    text(&mut tail, "_stage", &provenance.stage);
    tail.extend_from_slice(b"}\n");
    tail
}

impl Sink for FileSink {
    fn write(
        &mut self,
        stream: &str,
        provenance: &Provenance,
        events: &[Event],
    ) -> Result<(), SinkError> {
        // The record's own fields (straight from its struct: no JSON tree per line).
        self.lines(stream, provenance, events.len(), |line, i| {
            event_fields(line, &events[i]);
            event_kind(&events[i])
        })
    }

    /// Straight from the columns: the same lines as [`FileSink::write`] with the batch's rows,
    /// without making them (a `String` per text field).
    fn write_batch(
        &mut self,
        stream: &str,
        provenance: &Provenance,
        batch: &OutputBatch<'_>,
    ) -> Result<(), SinkError> {
        let events = batch.events;
        let mut at = (0, 0); // (part, index in it)
        self.lines(stream, provenance, events.len(), |line, _| {
            while at.1 == part_len(&events.parts[at.0]) {
                at = (at.0 + 1, 0);
            }
            let part = &events.parts[at.0];
            super::json::event(line, &events.dictionary, part, at.1);
            at.1 += 1;
            super::json::kind(part)
        })
    }

    fn dead_letters(&mut self, dead: &[DeadLetter]) -> Result<(), SinkError> {
        for d in dead {
            let value = serde_json::to_value(d).expect("dead letters serialise");
            self.line(DEAD_LETTERS, &value)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let started = Instant::now();
        for (stream, file) in &mut self.files {
            file.flush()
                .and_then(|_| file.get_ref().sync_data())
                .map_err(|source| SinkError::Io {
                    what: format!("stream {stream}"),
                    source,
                })?;
        }
        self.meter
            .written(std::mem::take(&mut self.unsynced), started.elapsed());
        Ok(())
    }

    fn meters(&self) -> Vec<Arc<SinkMeter>> {
        vec![self.meter.clone()]
    }
}

/// An event's fields as a JSON object (what [`crate::pipeline::event_json`] holds without its
/// `kind`).
pub(super) fn event_fields(out: &mut Vec<u8>, event: &Event) {
    let written = match event {
        Event::Sale(e) => serde_json::to_writer(&mut *out, e),
        Event::Inventory(e) => serde_json::to_writer(&mut *out, e),
        Event::Price(e) => serde_json::to_writer(&mut *out, e),
        Event::Customer(e) => serde_json::to_writer(&mut *out, e),
        Event::Metric(e) => serde_json::to_writer(&mut *out, e),
        Event::Alert(e) => serde_json::to_writer(&mut *out, e),
        Event::Forecast(e) => serde_json::to_writer(&mut *out, e),
    };
    written.expect("records serialise");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{MetricRow, Sale};

    #[test]
    fn a_line_is_the_event_json_with_its_provenance() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new(dir.path()).unwrap();
        let events = vec![
            Event::Sale(Sale {
                transaction_id: "T\"1".into(),
                line: 1,
                store_id: "S001".into(),
                product_id: "SKU-00001".into(),
                category: None,
                quantity: -2,
                unit_price: 10.5,
                total_amount: -21.0,
                customer_id: Some("C1".into()),
                payment_method: "card".into(),
                timestamp: 5,
            }),
            Event::Metric(MetricRow {
                metric: "m".into(),
                window_start: 0,
                window_end: 60_000,
                dimensions: vec![("store_id".into(), "S001".into())],
                values: vec![("units".into(), 2.0)],
            }),
        ];
        let provenance = Provenance {
            stage: "st\u{e9}ge".into(),
            plugin: "p".into(),
            version: "v".into(),
            origins: Vec::new(),
            positions: Default::default(),
            partition: Some(2),
        };
        sink.write("s", &provenance, &events).unwrap();
        // The same lines, byte for byte, straight from the batch's columns.
        let batch = crate::plugin::EventBatch::from_rows(&events);
        (sink.write_batch("c", &provenance, &OutputBatch::new(&batch))).unwrap();
        sink.flush().unwrap();
        let text = std::fs::read_to_string(dir.path().join("s.ndjson")).unwrap();
        let from_columns = std::fs::read_to_string(dir.path().join("c.ndjson")).unwrap();
        assert_eq!(text, from_columns);
        assert_eq!(text.lines().count(), 2);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for (line, event) in lines.iter().zip(&events) {
            let mut want = crate::pipeline::event_json(event);
            let m = want.as_object_mut().unwrap();
            m.insert("_stage".into(), "st\u{e9}ge".into());
            m.insert("_plugin".into(), "p".into());
            m.insert("_plugin_version".into(), "v".into());
            m.insert("_partition".into(), 2.into());
            assert_eq!(line, &want);
        }
    }
}
