//! Raw lines written without serde_json: the common record, byte for byte as serde_json writes
//! it.

use super::BatchTag;
use crate::plugin::RawRecord;

/// [`super::encode_line`] for the common record (UTF-8 key and payload, no headers), written
/// directly: the same bytes serde_json writes for [`super::Line`] (a test compares them), with
/// text escaped eight bytes at a time. serde_json's escaping was 4% of the e2e bench's CPU.
/// `false`: not such a record, nothing written.
pub(super) fn line(out: &mut Vec<u8>, r: &RawRecord, tag: Option<BatchTag>) -> bool {
    if !r.headers.is_empty() {
        return false;
    }
    let (Ok(payload), Ok(key)) = (
        std::str::from_utf8(&r.payload),
        r.key.as_deref().map(std::str::from_utf8).transpose(),
    ) else {
        return false;
    };
    let mut n = itoa::Buffer::new();
    out.reserve(payload.len() + payload.len() / 8 + 96);
    out.extend_from_slice(b"{\"partition\":");
    out.extend_from_slice(n.format(r.partition).as_bytes());
    out.extend_from_slice(b",\"offset\":");
    out.extend_from_slice(n.format(r.offset).as_bytes());
    out.extend_from_slice(b",\"key\":");
    match key {
        Some(key) => json_string(out, key),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"timestamp\":");
    out.extend_from_slice(n.format(r.timestamp).as_bytes());
    out.extend_from_slice(b",\"payload\":");
    json_string(out, payload);
    if let Some(t) = tag {
        out.extend_from_slice(b",\"batch\":");
        out.extend_from_slice(n.format(t.batch).as_bytes());
        out.extend_from_slice(b",\"i\":");
        out.extend_from_slice(n.format(t.index).as_bytes());
    }
    out.extend_from_slice(b"}\n");
    true
}

/// `text` as a JSON string, escaped as serde_json escapes it: `"` and `\\` with a backslash,
/// backspace, form feed, newline, return and tab by letter, other control bytes as `\u00XX`.
/// Plain runs are found eight bytes at a time and copied whole.
fn json_string(out: &mut Vec<u8>, text: &str) {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `w` that needs escaping; bits above the lowest may be false
    // (borrows carry upward), so only the lowest is used.
    let escapes = |w: u64| {
        let zero = |x: u64| x.wrapping_sub(LOW) & !x;
        (w.wrapping_sub(0x20 * LOW)
            | zero(w ^ (b'"' as u64 * LOW))
            | zero(w ^ (b'\\' as u64 * LOW)))
            & !w
            & HIGH
    };
    let bytes = text.as_bytes();
    out.push(b'"');
    let (mut start, mut i) = (0, 0);
    loop {
        let at = loop {
            match bytes.get(i..i + 8) {
                Some(chunk) => {
                    let m = escapes(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
                    if m != 0 {
                        break Some(i + m.trailing_zeros() as usize / 8);
                    }
                    i += 8;
                }
                None => break (i..bytes.len()).find(|&j| ESCAPE[bytes[j] as usize] != 0),
            }
        };
        let Some(at) = at else { break };
        out.extend_from_slice(&bytes[start..at]);
        let b = bytes[at];
        match ESCAPE[b as usize] {
            b'u' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let (hi, lo) = (HEX[(b >> 4) as usize], HEX[(b & 15) as usize]);
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hi, lo]);
            }
            letter => out.extend_from_slice(&[b'\\', letter]),
        }
        (start, i) = (at + 1, at + 1);
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// What follows the backslash for each byte serde_json escapes (`u`: `\u00XX`), 0 for the rest.
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    (
        t[0x08],
        t[0x0c],
        t[b'\n' as usize],
        t[b'\r' as usize],
        t[b'\t' as usize],
    ) = (b'b', b'f', b'n', b'r', b't');
    (t[b'"' as usize], t[b'\\' as usize]) = (b'"', b'\\');
    t
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::format::serde_line;
    use crate::archive::format::tests::record;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn lines_written_directly_are_the_bytes_serde_json_writes(
            payload in "(\\PC|[\\x00-\\x1f\"\\\\\\x7f])*",
            key in proptest::option::of("(\\PC|[\\x00-\\x1f\"\\\\])*"),
            (partition, offset, timestamp) in (any::<i32>(), any::<i64>(), any::<i64>()),
            tag in proptest::option::of((any::<i64>(), any::<u32>())),
        ) {
            let tag = tag.map(|(batch, index)| BatchTag { batch, index });
            let mut r = record(key.map(String::into_bytes), payload.into_bytes(), offset);
            (r.partition, r.timestamp) = (partition, timestamp);
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            prop_assert!(line(&mut fast, &r, tag));
            serde_line(&mut slow, &r, tag);
            prop_assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(slow).unwrap());
        }
    }

    #[test]
    fn every_byte_that_needs_escaping_is_escaped_at_every_place_in_a_word() {
        for b in 0u8..0x80 {
            for at in 0..20 {
                let mut text = "abcdefghijklmnopqrst".to_string().into_bytes();
                text[at] = b;
                let r = record(None, text, 1);
                let (mut fast, mut slow) = (Vec::new(), Vec::new());
                assert!(line(&mut fast, &r, None));
                serde_line(&mut slow, &r, None);
                assert_eq!(fast, slow, "byte {b:#x} at {at}");
            }
        }
        let binary = record(None, vec![0xff], 1);
        assert!(
            !line(&mut Vec::new(), &binary, None),
            "not UTF-8: serde path"
        );
    }
}
