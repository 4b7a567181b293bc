//! NDJSON from a file or stdin: each non-empty line is one raw record of the configured topic,
//! its offset the line number. Batches are cut when full, at end of input, or when no more input
//! is immediately available (so a slow stdin producer still sees its events processed).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};

use tokio::sync::mpsc::Sender;

use super::{SourceBatch, StopFlag};
use crate::config::NdjsonConfig;
use crate::plugin::RawRecord;
use crate::run::Command;

pub fn run(
    c: &NdjsonConfig,
    batch_size: usize,
    position: u64,
    tx: &Sender<Command>,
    stop: &StopFlag,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let input: Box<dyn Read> = if c.path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(&c.path).with_context(|| format!("opening {}", c.path.display()))?)
    };
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut line = Vec::new();
    let mut line_no: u64 = 0;
    let mut records = Vec::new();
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    };
    loop {
        if stop.is_stopped() {
            break;
        }
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading {}", c.path.display()))?;
        let eof = n == 0;
        if !eof {
            line_no += 1;
            let payload = line.strip_suffix(b"\n").unwrap_or(&line);
            let payload = payload.strip_suffix(b"\r").unwrap_or(payload);
            if line_no > position && !payload.iter().all(u8::is_ascii_whitespace) {
                records.push(RawRecord {
                    topic: c.topic.clone(),
                    partition: 0,
                    offset: line_no as i64 - 1,
                    key: None,
                    payload: payload.to_vec(),
                    timestamp: now_ms(),
                });
            }
        }
        let idle = reader.buffer().is_empty();
        if !records.is_empty() && (eof || idle || records.len() >= batch_size) {
            let batch = SourceBatch {
                source: c.name.clone(),
                topic: c.topic.clone(),
                records: std::mem::take(&mut records),
                position: line_no,
                offset: None,
            };
            if tx.blocking_send(Command::Batch(batch)).is_err() {
                break;
            }
        }
        if eof {
            break;
        }
    }
    Ok(())
}
