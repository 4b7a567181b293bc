//! The raw object format: gzip-compressed NDJSON, one line per record.
//!
//! Besides the record, a line says which source batch it arrived in (`batch`, an id that grows
//! with arrival on a host) and its place in that batch (`i`), so a replay hands the pipeline
//! the batches it saw live, in the order it saw them (see [`crate::replay`]). Objects written
//! before the tags existed decode with none.

use std::io::Write;

use crate::plugin::RawRecord;

/// One line of a raw object: a record (partition, offset, key, timestamp, payload).
#[derive(serde::Serialize, serde::Deserialize)]
struct Line<'a> {
    partition: i32,
    offset: i64,
    #[serde(borrow)]
    key: Option<std::borrow::Cow<'a, str>>,
    timestamp: i64,
    #[serde(borrow)]
    payload: std::borrow::Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    i: Option<u32>,
}

/// Where a record was in the live run: its source batch and its index in that batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BatchTag {
    pub batch: i64,
    pub index: u32,
}

pub(super) fn encode_line(out: &mut Vec<u8>, r: &RawRecord, tag: Option<BatchTag>) {
    let line = Line {
        partition: r.partition,
        offset: r.offset,
        key: r.key.as_deref().map(String::from_utf8_lossy),
        timestamp: r.timestamp,
        payload: String::from_utf8_lossy(&r.payload),
        batch: tag.map(|t| t.batch),
        i: tag.map(|t| t.index),
    };
    serde_json::to_writer(&mut *out, &line).expect("in-memory write");
    out.push(b'\n');
}

/// Compress in one go: the compressor prepares its output buffer on every write, so many small
/// writes (one per JSON fragment) cost far more than the data.
pub(super) fn gzip(ndjson: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(ndjson.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    gz.write_all(ndjson).expect("in-memory write");
    gz.finish().expect("in-memory write")
}

/// Gzip NDJSON: one line per record (untagged).
pub fn encode(records: &[RawRecord]) -> Vec<u8> {
    let mut ndjson = Vec::with_capacity(records.iter().map(|r| r.payload.len() + 96).sum());
    for r in records {
        encode_line(&mut ndjson, r, None);
    }
    gzip(&ndjson)
}

/// The records of a raw object of `topic` (what [`encode`] wrote), in order.
pub fn decode(topic: &str, object: &[u8]) -> Result<Vec<RawRecord>, DecodeError> {
    Ok(decode_tagged(topic, object)?
        .into_iter()
        .map(|(r, _)| r)
        .collect())
}

/// The records of a raw object with the batch each arrived in (when the object says).
pub fn decode_tagged(
    topic: &str,
    object: &[u8],
) -> Result<Vec<(RawRecord, Option<BatchTag>)>, DecodeError> {
    use std::io::Read;
    let mut ndjson = Vec::new();
    flate2::read::GzDecoder::new(object)
        .read_to_end(&mut ndjson)
        .map_err(DecodeError::Gzip)?;
    ndjson
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| {
            let line: Line<'_> = serde_json::from_slice(l)
                .map_err(|error| DecodeError::Line { line: i + 1, error })?;
            let tag = line.batch.map(|batch| BatchTag {
                batch,
                index: line.i.unwrap_or(0),
            });
            let record = RawRecord {
                topic: topic.to_string(),
                partition: line.partition,
                offset: line.offset,
                key: line.key.map(|k| k.into_owned().into_bytes()),
                payload: line.payload.into_owned().into_bytes(),
                timestamp: line.timestamp,
                headers: Vec::new(),
            };
            Ok((record, tag))
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not gzip: {0}")]
    Gzip(std::io::Error),
    #[error("line {line}: {error}")]
    Line {
        line: usize,
        error: serde_json::Error,
    },
}
