//! NDJSON from a file or stdin: each non-empty line is one raw record of the configured topic,
//! its offset the line number. Batches are cut when full, at end of input, or when no more input
//! is immediately available (so a slow stdin producer still sees its events processed).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use anyhow::Context;
use crossbeam_channel::Sender;
use serde::Deserialize;

use super::{Position, Source, SourceBatch, SourceEvent, StopFlag};
use crate::plugin::RawRecord;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NdjsonConfig {
    #[serde(default = "ndjson_name")]
    pub name: String,
    /// A file path, or `-` for stdin.
    pub path: PathBuf,
    /// The topic (stream) the lines belong to, e.g. `retail-sales-transactions`.
    pub topic: String,
}

fn ndjson_name() -> String {
    "ndjson".into()
}

pub struct NdjsonSource {
    config: NdjsonConfig,
    batch_size: usize,
    /// Lines already processed by an earlier run.
    resume: u64,
}

impl NdjsonSource {
    pub fn new(config: NdjsonConfig, batch_size: usize, resume: u64) -> Self {
        NdjsonSource {
            config,
            batch_size: batch_size.max(1),
            resume,
        }
    }
}

impl Source for NdjsonSource {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn run(self: Box<Self>, out: &Sender<SourceEvent>, stop: &StopFlag) -> anyhow::Result<()> {
        let c = &self.config;
        let input: Box<dyn Read> = if c.path.as_os_str() == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(File::open(&c.path).with_context(|| format!("opening {}", c.path.display()))?)
        };
        let mut reader = BufReader::with_capacity(1 << 16, input);
        let mut line = Vec::new();
        let mut line_no: u64 = 0;
        let mut records = Vec::new();
        while !stop.is_stopped() {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("reading {}", c.path.display()))?;
            let eof = n == 0;
            if !eof {
                line_no += 1;
                let payload = line.strip_suffix(b"\n").unwrap_or(&line);
                let payload = payload.strip_suffix(b"\r").unwrap_or(payload);
                if line_no > self.resume && !payload.iter().all(u8::is_ascii_whitespace) {
                    records.push(RawRecord {
                        topic: c.topic.clone(),
                        partition: 0,
                        offset: line_no as i64 - 1,
                        key: None,
                        payload: payload.to_vec(),
                        timestamp: crate::units::now_ms(),
                        headers: Vec::new(),
                    });
                }
            }
            let idle = reader.buffer().is_empty();
            if !records.is_empty() && (eof || idle || records.len() >= self.batch_size) {
                let batch = SourceBatch {
                    source: c.name.clone(),
                    topic: c.topic.clone(),
                    records: std::mem::take(&mut records),
                    position: Position::Count(line_no),
                };
                if out.send(SourceEvent::Batch(batch)).is_err() {
                    break;
                }
            }
            if eof {
                break;
            }
        }
        Ok(())
    }
}
