//! The raw object format: gzip-compressed NDJSON, one line per record.
//!
//! Besides the record, a line says which source batch it arrived in (`batch`, an id that grows
//! with arrival on a host) and its place in that batch (`i`), so a replay hands the pipeline
//! the batches it saw live, in the order it saw them (see [`crate::replay`]). Objects written
//! before the tags existed decode with none.

use std::io::{Read, Write};

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
                headers: Vec::new(),
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
}

/// Any line serde_json reads (older objects, other key orders, `\u` escapes, non-ASCII text).
fn slow_line(l: &[u8]) -> Result<Decoded, serde_json::Error> {
    let line: Line<'_> = serde_json::from_slice(l)?;
    let tag = line.batch.map(|batch| BatchTag {
        batch,
        index: line.i.unwrap_or(0),
    });
    let fields = Fields {
        partition: line.partition,
        offset: line.offset,
        key: line.key.map(|k| k.into_owned().into_bytes()),
        timestamp: line.timestamp,
        payload: line.payload.into_owned().into_bytes(),
    };
    Ok((fields, tag))
}

/// Lines exactly as [`encode_line`] writes them, read without a general JSON parser: a replay
/// decodes millions, and serde_json spent 0.8 us on each. Anything else is `None`, and
/// [`slow_line`] reads it (or says why it is not JSON).
mod fast {
    use super::{BatchTag, Decoded, Fields};

    pub(super) fn line(l: &[u8]) -> Option<Decoded> {
        // Printable ASCII only (one pass the compiler vectorises): no control character can hide
        // in a string, and no UTF-8 needs checking.
        if !l.iter().fold(true, |ok, &b| ok & (0x20..0x7f).contains(&b)) {
            return None;
        }
        let mut s = Scan { b: l, i: 0 };
        s.lit(b"{\"partition\":")?;
        let partition = i32::try_from(s.int()?).ok()?;
        s.lit(b",\"offset\":")?;
        let offset = s.int()?;
        s.lit(b",\"key\":")?;
        let key = if s.lit(b"null").is_some() {
            None
        } else {
            Some(s.string()?)
        };
        s.lit(b",\"timestamp\":")?;
        let timestamp = s.int()?;
        s.lit(b",\"payload\":")?;
        let payload = s.string()?;
        let tag = if s.lit(b",\"batch\":").is_some() {
            let batch = s.int()?;
            s.lit(b",\"i\":")?;
            let index = u32::try_from(s.int()?).ok()?;
            Some(BatchTag { batch, index })
        } else {
            None
        };
        s.lit(b"}")?;
        (s.i == l.len()).then_some(())?;
        let fields = Fields {
            partition,
            offset,
            key,
            timestamp,
            payload,
        };
        Some((fields, tag))
    }

    struct Scan<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl Scan<'_> {
        fn lit(&mut self, text: &[u8]) -> Option<()> {
            self.b[self.i..]
                .starts_with(text)
                .then(|| self.i += text.len())
        }

        /// A JSON integer that fits an i64 (no fraction, exponent or leading zero).
        fn int(&mut self) -> Option<i64> {
            let negative = self.lit(b"-").is_some();
            let digits = self.b[self.i..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let text = &self.b[self.i..self.i + digits];
            if digits == 0 || digits > 19 || (digits > 1 && text[0] == b'0') {
                return None;
            }
            self.i += digits;
            let n = text.iter().try_fold(0i64, |n, d| {
                n.checked_mul(10)?.checked_add(i64::from(d - b'0'))
            })?;
            Some(if negative { -n } else { n })
        }

        /// A string's bytes, unescaped (`\u` escapes are left to serde_json).
        fn string(&mut self) -> Option<Vec<u8>> {
            self.lit(b"\"")?;
            let mut out = Vec::with_capacity(self.b.len() - self.i);
            // Byte by byte: a payload of JSON has an escaped quote every few bytes, too often
            // for a search (memchr) to pay.
            loop {
                let c = *self.b.get(self.i)?;
                self.i += 1;
                match c {
                    b'"' => return Some(out),
                    b'\\' => {
                        out.push(match *self.b.get(self.i)? {
                            c @ (b'"' | b'\\' | b'/') => c,
                            b'b' => 0x08,
                            b'f' => 0x0c,
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            _ => return None,
                        });
                        self.i += 1;
                    }
                    c => out.push(c),
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(key: Option<Vec<u8>>, payload: Vec<u8>, offset: i64) -> RawRecord {
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
        (f.partition, f.offset, &f.key, f.timestamp, &f.payload, a.1)
            == (g.partition, g.offset, &g.key, g.timestamp, &g.payload, b.1)
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
            offset in any::<i64>(),
            tag in proptest::option::of((any::<i64>(), any::<u32>())),
        ) {
            let tag = tag.map(|(batch, index)| BatchTag { batch, index });
            for payload in [payload, ascii.into_bytes()] {
                let r = record(key.clone().map(String::into_bytes), payload, offset);
                let (fast, slow) = both(&r, tag);
                if let Some(fast) = fast {
                    prop_assert!(same(&fast, &slow));
                }
            }
        }
    }
}
