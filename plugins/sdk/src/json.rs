//! A reader for the plain JSON objects cleaners read, for their common case only: text without
//! escapes or non-ASCII bytes, at most 32 levels deep, at most 16 members to an object, no key
//! twice. It reads in one pass and hands out text as slices of the input, so a cleaner fills its
//! fields without serde's per-field machinery. Anything else gives `None`, and the cleaner falls
//! back to serde_json, which reads every valid input and words every error (a duplicate field
//! included): this reader never decides that an input is bad.
//!
//! ```
//! use shelfstream_sdk::json;
//! let (mut id, mut lines) = (None, None);
//! json::object(br#"{"id": "T1", "lines": [{"n": 2}], "note": [true]}"#, |key, r| {
//!     match key {
//!         "id" => id = r.text()?,
//!         "lines" => lines = r.list(|r| {
//!             let mut n = None;
//!             r.object(|key, r| {
//!                 if key == "n" {
//!                     n = r.number(|n| n.integer())?;
//!                 }
//!                 Some(())
//!             })?;
//!             Some(n)
//!         })?,
//!         _ => {} // skipped (and checked)
//!     }
//!     Some(())
//! })
//! .unwrap();
//! assert_eq!((id.as_deref(), lines), (Some("T1"), Some(vec![Some(2)])));
//! ```

use std::borrow::Cow;

const MAX_DEPTH: u32 = 32;

/// The object that is the whole of `json`, member by member (see [`Reader::object`]).
pub fn object<'a>(
    json: &'a [u8],
    member: impl FnMut(&'a str, &mut Reader<'a>) -> Option<()>,
) -> Option<()> {
    let mut r = Reader {
        b: json,
        i: 0,
        depth: 0,
    };
    r.object(member)?;
    r.ws();
    (r.i == json.len()).then_some(())
}

/// A number's text, checked against JSON's grammar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number<'a>(pub &'a str);

impl Number<'_> {
    /// A whole number within an `i64` (`None`: a fraction, an exponent, too large, `-0`).
    pub fn integer(&self) -> Option<i64> {
        let n = self.0;
        (!n.contains(['.', 'e', 'E']) && n != "-0")
            .then(|| n.parse().ok())
            .flatten()
    }

    /// A number that is not negative, as serde_json reads it into an `f64` (correctly rounded;
    /// `None` when out of range). Negative ones, and their zeros, are left to serde_json.
    pub fn float(&self) -> Option<f64> {
        let n = self.0;
        (!n.starts_with('-'))
            .then(|| n.parse().ok().filter(|f: &f64| f.is_finite()))
            .flatten()
    }
}

/// A position in the input, inside an object or a list.
pub struct Reader<'a> {
    b: &'a [u8],
    i: usize,
    depth: u32,
}

impl<'a> Reader<'a> {
    /// An object: each member's key and this reader, positioned at its value, to `member`,
    /// which reads the value (or leaves it, and it is skipped) and may stop with `None`.
    pub fn object(
        &mut self,
        mut member: impl FnMut(&'a str, &mut Reader<'a>) -> Option<()>,
    ) -> Option<()> {
        self.ws();
        self.enter(b'{')?;
        self.ws();
        if self.eat(b'}').is_none() {
            // Keys seen, with a cheap print of each: texts are compared only when prints match.
            let (mut keys, mut prints, mut n) = ([""; 16], [0u32; 16], 0);
            loop {
                self.ws();
                let key = self.plain()?;
                let print = print(key);
                if n == keys.len() || (0..n).any(|j| prints[j] == print && keys[j] == key) {
                    return None;
                }
                (keys[n], prints[n], n) = (key, print, n + 1);
                self.ws();
                self.eat(b':')?;
                self.ws();
                let at = self.i;
                member(key, self)?;
                if self.i == at {
                    self.skip()?;
                }
                self.ws();
                if self.eat(b'}').is_some() {
                    break;
                }
                self.eat(b',')?;
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// A list, each element read by `read`, or null (`Some(None)`).
    pub fn list<T>(
        &mut self,
        mut read: impl FnMut(&mut Reader<'a>) -> Option<T>,
    ) -> Option<Option<Vec<T>>> {
        self.ws();
        if self.word(b"null") {
            return Some(None);
        }
        self.enter(b'[')?;
        self.ws();
        let mut out = Vec::new();
        if self.eat(b']').is_none() {
            loop {
                self.ws();
                out.push(read(self)?);
                self.ws();
                if self.eat(b']').is_some() {
                    break;
                }
                self.eat(b',')?;
            }
        }
        self.depth -= 1;
        Some(Some(out))
    }

    /// A plain text (`Some(Some)`) or null (`Some(None)`).
    pub fn text(&mut self) -> Option<Option<Cow<'a, str>>> {
        self.ws();
        if self.word(b"null") {
            return Some(None);
        }
        Some(Some(Cow::Borrowed(self.plain()?)))
    }

    /// A number read by `read`, or null (`Some(None)`).
    pub fn number<T>(&mut self, read: impl FnOnce(Number<'a>) -> Option<T>) -> Option<Option<T>> {
        self.ws();
        if self.word(b"null") {
            return Some(None);
        }
        read(Number(self.numeral()?)).map(Some)
    }

    /// Past any value, checking it.
    pub fn skip(&mut self) -> Option<()> {
        self.ws();
        match *self.b.get(self.i)? {
            b'"' => self.plain().map(drop),
            b'{' => self.object(|_, _| Some(())),
            b'[' => self.list(|r| r.skip()).map(drop),
            b'n' | b't' | b'f' => {
                (self.word(b"null") || self.word(b"true") || self.word(b"false")).then_some(())
            }
            _ => self.numeral().map(drop),
        }
    }

    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    fn enter(&mut self, c: u8) -> Option<()> {
        self.eat(c)?;
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    fn word(&mut self, word: &[u8]) -> bool {
        // The first byte alone rules out most values without a call to compare bytes.
        let found = self.b.get(self.i) == word.first() && self.b[self.i..].starts_with(word);
        if found {
            self.i += word.len();
        }
        found
    }

    /// A text of printable ASCII without escapes.
    fn plain(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        // Eight bytes at a time while eight are left, then byte by byte.
        while let Some(word) = self.b.get(self.i..self.i + 8) {
            let stop = special(u64::from_le_bytes(word.try_into().expect("eight bytes")));
            if stop != 0 {
                self.i += (stop.trailing_zeros() / 8) as usize;
                break;
            }
            self.i += 8;
        }
        loop {
            match *self.b.get(self.i)? {
                b'"' => break,
                b'\\' | 0..0x20 | 0x7f.. => return None,
                _ => self.i += 1,
            }
        }
        self.i += 1;
        Some(ascii(&self.b[start..self.i - 1]))
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn numeral(&mut self) -> Option<&'a str> {
        let start = self.i;
        self.eat(b'-');
        match self.b.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            self.digits1()?;
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.digits1()?;
        }
        Some(ascii(&self.b[start..self.i]))
    }

    fn digits(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
    }

    fn digits1(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }
}

/// A key's length and its first, middle and last bytes: keys that differ in these differ.
fn print(key: &str) -> u32 {
    match key.as_bytes() {
        [] => 0,
        b => b.len() as u32 | u32::from_le_bytes([0, b[0], b[b.len() / 2], b[b.len() - 1]]),
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` (little-endian) that ends a plain text: `"`, `\\`, a
/// control byte (below 0x20) or one that is not printable ASCII (0x7f and up). Exact for the
/// lowest such byte (a borrow can only mark bytes above it), which is all [`Reader::plain`] uses.
fn special(word: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let quote = zero(word ^ (ONES * u64::from(b'"')));
    let backslash = zero(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    // (b & 0x7f) + 1 never carries out of its byte; its high bit is set for 0x7f and 0xff.
    let high = (word | ((word & !HIGHS) + ONES)) & HIGHS;
    quote | backslash | control | high
}

/// Bytes already checked to be ASCII, as text.
fn ascii(bytes: &[u8]) -> &str {
    debug_assert!(bytes.is_ascii());
    // SAFETY: callers pass only bytes they checked one by one to be ASCII, which is UTF-8.
    // (`from_utf8` checked them again and cost 10% of a sale's reading.)
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every member as the text of its value (as [`Reader::skip`] passed it).
    fn members(json: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        object(json.as_bytes(), |k, r| {
            let start = r.i;
            r.skip()?;
            let value = String::from_utf8_lossy(&r.b[start..r.i]).trim().to_string();
            out.push((k.to_string(), value));
            Some(())
        })?;
        Some(out)
    }

    #[test]
    fn plain_objects_are_read_member_by_member() {
        let got = members(r#" {"a": "x", "b":-1.5e3, "c":null,"d":[1,{"e":[]}],"f":{"g":true}} "#)
            .unwrap();
        let want = [
            ("a", r#""x""#),
            ("b", "-1.5e3"),
            ("c", "null"),
            ("d", r#"[1,{"e":[]}]"#),
            ("f", r#"{"g":true}"#),
        ];
        assert_eq!(got.len(), want.len());
        for ((k, v), (wk, wv)) in got.iter().zip(want) {
            assert_eq!((k.as_str(), v.as_str()), (wk, wv));
        }
        assert_eq!(Number("1.5e3").float(), Some(1500.0));
        assert_eq!(
            Number("-1.5e3").float(),
            None,
            "negatives are left to serde_json"
        );
        assert_eq!(Number("1e400").float(), None, "out of range");
        assert_eq!(Number("-1.5e3").integer(), None);
        assert_eq!(Number("-42").integer(), Some(-42));
        assert_eq!(Number("-0").integer(), None);
        let mut read = (None, None, None);
        object(br#"{"t":"x","n":7,"l":[1, 2 ]}"#, |k, r| {
            match k {
                "t" => read.0 = r.text()?,
                "n" => read.1 = r.number(|n| n.integer())?,
                "l" => read.2 = r.list(|r| r.number(|n| n.integer()))?,
                _ => {}
            }
            Some(())
        })
        .unwrap();
        assert_eq!(
            read,
            (Some("x".into()), Some(7), Some(vec![Some(1), Some(2)]))
        );
        assert_eq!(members("{}").unwrap(), []);
        let same_print = members(r#"{"aXYb":1,"aZYb":2}"#).unwrap();
        assert_eq!(
            same_print.len(),
            2,
            "keys alike in length and ends are still two keys"
        );
    }

    #[test]
    fn the_word_scan_stops_where_the_byte_scan_does() {
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut word = *b"abcdefgh";
                word[at] = b;
                let stop = special(u64::from_le_bytes(word));
                let ends = matches!(b, b'"' | b'\\' | 0..0x20 | 0x7f..);
                match ends {
                    true => assert_eq!(stop.trailing_zeros() / 8, at as u32, "{b:#x} at {at}"),
                    false => assert_eq!(stop, 0, "{b:#x} at {at}"),
                }
            }
        }
        let long = format!(
            "{{\"k\":\"{}\",\"e\":\"{}\\\"\"}}",
            "x".repeat(37),
            "y".repeat(9)
        );
        assert_eq!(members(&long), None, "an escape after eight bytes");
        let fine = format!("{{\"k\":\"{}\"}}", "x".repeat(37));
        assert_eq!(members(&fine).unwrap()[0].1.len(), 39);
    }

    #[test]
    fn anything_else_is_left_to_serde_json() {
        for json in [
            r#"{"a":"esc\"aped"}"#,
            "{\"a\":\"caf\u{e9}\"}",
            "{\"a\":\"tab\tinside\"}",
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":1} x"#,
            r#"{"a":nul}"#,
            r#"["a"]"#,
            r#"{"a":[1 2]}"#,
            r#"{"a":1"#,
            r#"{"a":1,"b":2,"a":3}"#,
            r#"{"aXYb":1,"aZYb":2,"aXYb":3}"#,
            r#"{"a":1,"b":nulL}"#,
            "",
        ] {
            assert_eq!(members(json), None, "{json}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(40), "]".repeat(40));
        assert_eq!(members(&deep), None, "deeper than 32 levels");
        let fine = format!("{{\"a\":{}{}}}", "[".repeat(20), "]".repeat(20));
        assert!(members(&fine).is_some());
    }
}
