//! Lines exactly as [`super::encode_line`] writes them, read without a general JSON parser: a
//! replay decodes millions, and serde_json spent 0.8 us on each. Anything else is `None`, and
//! [`super::slow_line`] reads it (or says why it is not JSON).

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
        headers: Vec::new(),
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
