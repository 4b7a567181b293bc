//! The raw object format: gzip-compressed NDJSON, one line per record.
//!
//! Besides the record, a line says which source batch it arrived in (`batch`, an id that grows
//! with arrival on a host) and its place in that batch (`i`), so a replay hands the pipeline
//! the batches it saw live, in the order it saw them (see [`crate::replay`]). Objects written
//! before the tags existed decode with none.
//!
//! The record's bytes are kept exactly: a key or payload that is not UTF-8 is written as base64
//! (`key_base64` / `payload_base64`), and the message's headers follow as dead letters keep
//! them, so a replay hands a cleaner the very bytes it saw live.

use std::borrow::Cow;
use std::io::{Read, Write};

use crate::pipeline::dead_letter::{bytes_text, text_bytes, Header};
use crate::plugin::RawRecord;

/// One line of a raw object: a record (partition, offset, key, timestamp, payload). The fields
/// written only for some records come last, so the common line stays on the fast path.
#[derive(serde::Serialize, serde::Deserialize)]
struct Line<'a> {
    partition: i32,
    offset: i64,
    #[serde(borrow)]
    key: Option<Cow<'a, str>>,
    timestamp: i64,
    #[serde(borrow)]
    payload: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    i: Option<u32>,
    #[serde(default, skip_serializing_if = "is_false")]
    key_base64: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    payload_base64: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<Header>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Bytes as a line keeps them: borrowed when they are UTF-8, base64 (then `true`) otherwise.
fn text(bytes: &[u8]) -> (Cow<'_, str>, bool) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Cow::Borrowed(text), false),
        Err(_) => (Cow::Owned(bytes_text(bytes).0), true),
    }
}

/// Where a record was in the live run: its source batch and its index in that batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BatchTag {
    pub batch: i64,
    pub index: u32,
}

pub(super) fn encode_line(out: &mut Vec<u8>, r: &RawRecord, tag: Option<BatchTag>) {
    if !write::line(out, r, tag) {
        serde_line(out, r, tag);
    }
}

/// [`encode_line`] through serde_json, for every record.
fn serde_line(out: &mut Vec<u8>, r: &RawRecord, tag: Option<BatchTag>) {
    let key = r.key.as_deref().map(text);
    let (payload, payload_base64) = text(&r.payload);
    let line = Line {
        partition: r.partition,
        offset: r.offset,
        key_base64: key.as_ref().is_some_and(|k| k.1),
        key: key.map(|k| k.0),
        timestamp: r.timestamp,
        payload,
        batch: tag.map(|t| t.batch),
        i: tag.map(|t| t.index),
        payload_base64,
        headers: (r.headers.iter()).map(|(n, v)| Header::of(n, v)).collect(),
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
pub fn decode_tagged(topic: &str, object: &[u8]) -> Result<Vec<Tagged>, DecodeError> {
    let mut records = Records::new(topic, object);
    let mut all = Vec::new();
    while let Some(chunk) = records.next_chunk()? {
        all.extend(chunk);
    }
    Ok(all)
}

/// A record and, when the object says, the batch it arrived in.
pub type Tagged = (RawRecord, Option<BatchTag>);

/// Inflated bytes decoded per [`Records::next_chunk`] (about a thousand sales).
const CHUNK: usize = 256 << 10;

/// The records of a raw object, inflated and decoded a chunk at a time: a replay's first batch
/// waits for a chunk, not for a whole object (up to 8 MB of lines) to inflate.
pub struct Records<R: std::io::Read> {
    topic: String,
    gz: flate2::read::GzDecoder<R>,
    /// Inflated bytes; `buf[..filled]` are valid, the start of an incomplete line first.
    buf: Vec<u8>,
    filled: usize,
    /// Lines decoded so far (for the line number of an error).
    lines: usize,
    eof: bool,
}

impl<R: std::io::Read> Records<R> {
    pub fn new(topic: &str, object: R) -> Self {
        Records {
            topic: topic.to_string(),
            gz: flate2::read::GzDecoder::new(object),
            buf: Vec::new(),
            filled: 0,
            lines: 0,
            eof: false,
        }
    }

    /// The records of the next lines (at least one, unless the object has no more), in order.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<Tagged>>, DecodeError> {
        let end = loop {
            if self.filled == self.buf.len() {
                // Full: a chunk to start with, then room for a line longer than the buffer.
                self.buf.resize((self.buf.len() * 2).max(CHUNK), 0);
            }
            while !self.eof && self.filled < self.buf.len() {
                match self.gz.read(&mut self.buf[self.filled..]) {
                    Ok(0) => self.eof = true,
                    Ok(n) => self.filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(DecodeError::Gzip(e)),
                }
            }
            let valid = &self.buf[..self.filled];
            match valid.iter().rposition(|&b| b == b'\n') {
                Some(i) => break i + 1,
                None if self.eof => break self.filled,
                None => {} // one line longer than the buffer: grow it
            }
        };
        if end == 0 {
            return Ok(None);
        }
        let mut records = Vec::with_capacity(end / 200);
        for l in self.buf[..end]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            self.lines += 1;
            let (line, tag) = match fast::line(l) {
                Some(line) => line,
                None => slow_line(l).map_err(|error| DecodeError::Line {
                    line: self.lines,
                    error,
                })?,
            };
            let record = RawRecord {
                topic: self.topic.clone(),
                partition: line.partition,
                offset: line.offset,
                key: line.key,
                payload: line.payload,
                timestamp: line.timestamp,
                headers: line.headers,
            };
            records.push((record, tag));
        }
        self.buf.copy_within(end..self.filled, 0);
        self.filled -= end;
        Ok(Some(records))
    }
}

/// A decoded line: the record's fields and, when it has one, its batch tag.
type Decoded = (Fields, Option<BatchTag>);

struct Fields {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    timestamp: i64,
    payload: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

/// Any line serde_json reads (older objects, other key orders, `\u` escapes, non-ASCII text).
fn slow_line(l: &[u8]) -> Result<Decoded, serde_json::Error> {
    use serde::de::Error;
    let line: Line<'_> = serde_json::from_slice(l)?;
    let tag = line.batch.map(|batch| BatchTag {
        batch,
        index: line.i.unwrap_or(0),
    });
    let bytes = |text: &str, base64: bool, field: &str| {
        text_bytes(text, base64)
            .map_err(|e| serde_json::Error::custom(format_args!("{field}: not base64: {e}")))
    };
    let key = match &line.key {
        Some(k) => Some(bytes(k, line.key_base64, "key")?),
        None => None,
    };
    let headers = (line.headers.iter())
        .map(|h| Ok((h.name.clone(), bytes(&h.value, h.base64, "header")?)))
        .collect::<Result<_, serde_json::Error>>()?;
    let fields = Fields {
        partition: line.partition,
        offset: line.offset,
        key,
        timestamp: line.timestamp,
        payload: bytes(&line.payload, line.payload_base64, "payload")?,
        headers,
    };
    Ok((fields, tag))
}

/// Lines as [`encode_line`] writes them, read without a general JSON parser.
mod fast;
mod write;

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A record of topic `t`, partition 3, time -17, without headers (also for `write`'s tests).
    pub(in crate::archive) fn record(
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
        offset: i64,
    ) -> RawRecord {
        RawRecord {
            topic: "t".into(),
            partition: 3,
            offset,
            key,
            payload,
            timestamp: -17,
            headers: Vec::new(),
        }
    }

    fn both(r: &RawRecord, tag: Option<BatchTag>) -> (Option<Decoded>, Decoded) {
        let mut l = Vec::new();
        encode_line(&mut l, r, tag);
        l.pop();
        (fast::line(&l), slow_line(&l).unwrap())
    }

    fn same(a: &Decoded, b: &Decoded) -> bool {
        let (f, g) = (&a.0, &b.0);
        (
            f.partition,
            f.offset,
            &f.key,
            f.timestamp,
            &f.payload,
            &f.headers,
            a.1,
        ) == (
            g.partition,
            g.offset,
            &g.key,
            g.timestamp,
            &g.payload,
            &g.headers,
            b.1,
        )
    }

    #[test]
    fn bytes_that_are_not_utf8_and_headers_come_back_exactly() {
        let mut r = record(
            Some(vec![0xff, b'k', 0xc3]),
            vec![b'{', 0x80, 0xfe, b'}'],
            7,
        );
        r.headers = vec![
            ("trace".into(), b"abc".to_vec()),
            ("bin".into(), vec![0, 0xff, 0x10]),
            ("empty".into(), Vec::new()),
        ];
        let tag = Some(BatchTag { batch: 3, index: 1 });
        let (fast, slow) = both(&r, tag);
        assert!(fast.is_none(), "base64 and headers take the slow path");
        let mut l = Vec::new();
        encode_line(&mut l, &r, tag);
        let text = String::from_utf8(l.clone()).unwrap();
        assert!(text.contains("\"key_base64\":true") && text.contains("\"payload_base64\":true"));
        assert_eq!(slow.0.key, r.key);
        assert_eq!(slow.0.payload, r.payload);
        assert_eq!(slow.0.headers, r.headers);
        assert_eq!(slow.1, tag);
        assert_eq!(
            decode("t", &encode(std::slice::from_ref(&r))).unwrap(),
            vec![r]
        );
        // A UTF-8 key beside a binary payload stays text, and bad base64 is a line error.
        let r = record(Some(b"key".to_vec()), vec![0xff], 1);
        assert_eq!(
            decode("t", &encode(std::slice::from_ref(&r))).unwrap(),
            vec![r]
        );
        let bad = br#"{"partition":0,"offset":1,"key":null,"timestamp":1,"payload":"%%","payload_base64":true}"#;
        let err = slow_line(bad).err().expect("not base64").to_string();
        assert!(err.contains("payload: not base64"), "{err}");
    }

    #[test]
    fn the_fast_path_reads_what_encode_line_writes() {
        let payload = br#"{"a":"q\"uote","b":"back\\slash","c":"x/y"}"#.to_vec();
        let tag = Some(BatchTag { batch: 9, index: 4 });
        for (key, tag) in [
            (None, None),
            (Some(b"k\"1".to_vec()), tag),
            (Some(vec![]), tag),
        ] {
            let (fast, slow) = both(&record(key, payload.clone(), i64::MAX), tag);
            assert!(same(
                &fast.expect("our own lines take the fast path"),
                &slow
            ));
        }
        // Non-ASCII text and control characters are left to serde_json.
        let (fast, slow) = both(&record(None, b"tab\there\nline".to_vec(), 0), None);
        assert!(same(&fast.expect("short escapes are read"), &slow));
        for payload in ["caf\u{e9}", "bell\u{7}"] {
            let (fast, slow) = both(&record(None, payload.as_bytes().to_vec(), 0), None);
            assert!(fast.is_none(), "{payload:?} goes the slow way");
            assert_eq!(slow.0.payload, payload.as_bytes());
        }
        // Other spellings (older objects, another key order) also go the slow way.
        for l in [
            &br#"{"offset":1,"partition":0,"key":null,"timestamp":1,"payload":"p"}"#[..],
            br#"{"partition":0,"offset":01,"key":null,"timestamp":1,"payload":"p"}"#,
            br#"{"partition":0,"offset":1,"key":null,"timestamp":1,"payload":"p"} "#,
            br#"{"partition":0,"offset":99999999999999999999,"key":null,"timestamp":1,"payload":"p"}"#,
        ] {
            assert!(fast::line(l).is_none(), "{}", String::from_utf8_lossy(l));
        }
    }

    #[test]
    fn an_object_decodes_the_same_a_chunk_at_a_time() {
        // Lines of every size around the chunk's: small ones that straddle chunk boundaries, and
        // one longer than a chunk (the buffer grows for it).
        let sizes = [10, 300, CHUNK - 5, 2 * CHUNK + 7, 40, 0, 1];
        let records: Vec<RawRecord> = (0..3000)
            .map(|i| {
                let n = sizes[i % sizes.len()] + i % 13;
                record(
                    Some(vec![b'k'; i % 3]),
                    vec![b'a' + (i % 26) as u8; n],
                    i as i64,
                )
            })
            .collect();
        let object = encode(&records);
        let mut chunks = Records::new("t", &object[..]);
        let mut decoded = Vec::new();
        let mut calls = 0;
        while let Some(chunk) = chunks.next_chunk().unwrap() {
            assert!(!chunk.is_empty());
            decoded.extend(chunk.into_iter().map(|(r, _)| r));
            calls += 1;
        }
        assert_eq!(decoded, records);
        assert!(calls > 10, "{calls} chunks");
        assert_eq!(decode("t", &object).unwrap(), records);
        // An error names its line, counted across chunks.
        let mut ndjson = Vec::new();
        for r in &records[..1500] {
            encode_line(&mut ndjson, r, None);
        }
        ndjson.extend_from_slice(b"{\"partition\":oops}\n");
        let err = decode("t", &gzip(&ndjson)).unwrap_err();
        assert!(matches!(err, DecodeError::Line { line: 1501, .. }), "{err}");
        // A truncated object is a gzip error, not a short read.
        let cut = &object[..object.len() / 2];
        assert!(matches!(decode("t", cut), Err(DecodeError::Gzip(_))));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn the_fast_path_agrees_with_serde_json(
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            ascii in "[ -~]{0,64}",
            key in proptest::option::of("[ -~]{0,8}"),
            bytes_key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            headers in proptest::collection::vec(
                ("[a-z]{1,6}", proptest::collection::vec(any::<u8>(), 0..8)), 0..3),
            offset in any::<i64>(),
            tag in proptest::option::of((any::<i64>(), any::<u32>())),
        ) {
            let tag = tag.map(|(batch, index)| BatchTag { batch, index });
            for payload in [payload, ascii.into_bytes()] {
                let r = record(key.clone().map(String::into_bytes), payload.clone(), offset);
                let (fast, slow) = both(&r, tag);
                if let Some(fast) = fast {
                    prop_assert!(same(&fast, &slow));
                }
                // Any bytes and headers come back exactly (the slow path reads them).
                let mut r = record(bytes_key.clone(), payload, offset);
                r.headers = headers.clone();
                let (_, slow) = both(&r, tag);
                prop_assert_eq!((&slow.0.key, &slow.0.payload, &slow.0.headers), (&r.key, &r.payload, &r.headers));
            }
        }
    }
}
