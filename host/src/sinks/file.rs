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

use super::{Sink, SinkError};
use crate::meter::SinkMeter;
use crate::pipeline::Provenance;
use crate::pipeline::{event_json, DeadLetter};
use crate::plugin::Event;

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

impl Sink for FileSink {
    fn write(
        &mut self,
        stream: &str,
        provenance: &Provenance,
        events: &[Event],
    ) -> Result<(), SinkError> {
        for event in events {
            let mut value = event_json(event);
            if let serde_json::Value::Object(map) = &mut value {
                map.insert("_stage".into(), (&*provenance.stage).into());
                map.insert("_plugin".into(), (&*provenance.plugin).into());
                map.insert("_plugin_version".into(), (&*provenance.version).into());
                if let Some(p) = provenance.partition {
                    map.insert("_partition".into(), p.into());
                }
            }
            self.line(stream, &value)?;
        }
        Ok(())
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
