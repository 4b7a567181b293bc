//! A dead letter on the dead-letter topic, as Kafka Connect's dead-letter queue writes one: the
//! original message (key, payload bytes, headers) with the error context added as headers
//! (`__shelfstream.errors.reason`, `.stage`, `.plugin`, `.plugin.version`, `.topic`,
//! `.partition`, `.offset`, `.kind`, `.record`). A typed event's dead letter carries the event
//! as JSON; a note about a call has no payload. [`decode`] reads one back (`host replay
//! --dead-letters kafka`).

use serde_json::Value;

use super::{bytes_text, DeadLetter, DeadLetterKind, Header, SourceRef};

/// The prefix of the headers the host adds.
pub const PREFIX: &str = "__shelfstream.errors.";

/// A dead letter as a Kafka message.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaDeadLetter {
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a dead letter: no {PREFIX}{0} header")]
    Missing(&'static str),
    #[error("header {PREFIX}{name}: {value:?} is not valid")]
    Invalid { name: &'static str, value: String },
    #[error("the event of a typed dead letter is not JSON: {0}")]
    Event(serde_json::Error),
}

/// What a dead letter's payload holds.
const RAW: &str = "raw";
const EVENT: &str = "event";
const NONE: &str = "none";

/// The message for the dead-letter topic.
pub fn encode(d: &DeadLetter) -> KafkaDeadLetter {
    let raw = d.raw_record().ok();
    let (key, payload, mut headers, what) = match (&raw, &d.record) {
        (Some(r), _) => (
            r.key.clone(),
            Some(r.payload.clone()),
            r.headers.clone(),
            RAW,
        ),
        (None, Some(event)) => (
            Some(d.stage.clone().into_bytes()),
            Some(event.to_string().into_bytes()),
            Vec::new(),
            EVENT,
        ),
        (None, None) => (Some(d.stage.clone().into_bytes()), None, Vec::new(), NONE),
    };
    let mut add = |name: &str, value: String| {
        headers.push((format!("{PREFIX}{name}"), value.into_bytes()));
    };
    add("kind", d.kind.label().into());
    add("reason", d.reason.clone());
    add("stage", d.stage.clone());
    add("plugin", d.plugin.clone());
    add("plugin.version", d.plugin_version.clone());
    add("record", what.into());
    if let Some(s) = &d.source {
        add("topic", s.topic.to_string());
        add("partition", s.partition.to_string());
        add("offset", s.offset.to_string());
    }
    KafkaDeadLetter {
        key,
        payload,
        headers,
    }
}

/// A dead letter read from the dead-letter topic.
pub fn decode(
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: &[(String, Vec<u8>)],
) -> Result<DeadLetter, DecodeError> {
    let context = |name: &str| {
        (headers.iter())
            .rev()
            .find(|(n, _)| n.strip_prefix(PREFIX) == Some(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let required = |name: &'static str| context(name).ok_or(DecodeError::Missing(name));
    let number = |name: &'static str| -> Result<Option<i64>, DecodeError> {
        (context(name))
            .map(|v| {
                v.parse()
                    .map_err(|_| DecodeError::Invalid { name, value: v })
            })
            .transpose()
    };
    let kind_text = required("kind")?;
    let kind = (DeadLetterKind::ALL.into_iter())
        .find(|k| k.label() == kind_text)
        .ok_or(DecodeError::Invalid {
            name: "kind",
            value: kind_text,
        })?;
    let source = match (context("topic"), number("partition")?, number("offset")?) {
        (Some(topic), Some(partition), Some(offset)) => Some(SourceRef {
            topic: topic.into(),
            partition: partition as i32,
            offset,
        }),
        _ => None,
    };
    let mut d = DeadLetter {
        kind,
        reason: required("reason")?,
        stage: required("stage")?,
        plugin: required("plugin")?,
        plugin_version: required("plugin.version")?,
        source,
        ..DeadLetter::empty()
    };
    match required("record")?.as_str() {
        RAW => {
            let (payload, base64) = bytes_text(payload.unwrap_or_default());
            d.record = Some(Value::String(payload));
            d.payload_base64 = base64;
            (d.key, d.key_base64) = match key.map(bytes_text) {
                Some((k, b)) => (Some(k), b),
                None => (None, false),
            };
            d.headers = (headers.iter())
                .filter(|(n, _)| !n.starts_with(PREFIX))
                .map(|(name, value)| Header::of(name, value))
                .collect();
        }
        EVENT => {
            d.record = Some(
                serde_json::from_slice(payload.unwrap_or_default()).map_err(DecodeError::Event)?,
            );
        }
        NONE => {}
        other => {
            return Err(DecodeError::Invalid {
                name: "record",
                value: other.into(),
            })
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::RawRecord;

    fn letter(payload: &[u8], key: Option<&[u8]>) -> DeadLetter {
        let r = RawRecord {
            topic: "retail-sales-transactions".into(),
            partition: 2,
            offset: 41,
            key: key.map(<[u8]>::to_vec),
            payload: payload.to_vec(),
            timestamp: 7,
            headers: vec![
                ("trace".into(), b"abc".to_vec()),
                ("bin".into(), vec![0xff, 0x00]),
            ],
        };
        DeadLetter {
            kind: DeadLetterKind::Rejected,
            reason: "quantity: 0".into(),
            stage: "sales-cleaner".into(),
            plugin: "sales-cleaner".into(),
            plugin_version: "0.1.0+abc".into(),
            ..DeadLetter::empty()
        }
        .with_raw(&r)
    }

    #[test]
    fn a_raw_dead_letter_is_the_original_message_with_the_context_in_headers() {
        for (payload, key) in [
            (&b"{\"transaction_id\":\"T1\"}"[..], Some(&b"S001"[..])),
            (&[0xc3, 0x28, 0xff][..], Some(&[0x80][..])),
            (&b""[..], None),
        ] {
            let d = letter(payload, key);
            assert_eq!(d.payload_base64, std::str::from_utf8(payload).is_err());
            let m = encode(&d);
            assert_eq!(m.payload.as_deref(), Some(payload), "the original bytes");
            assert_eq!(m.key.as_deref(), key);
            let header = |n: &str| {
                let (_, v) = m.headers.iter().find(|(h, _)| h == n).unwrap();
                String::from_utf8(v.clone()).unwrap()
            };
            assert_eq!(header("__shelfstream.errors.reason"), "quantity: 0");
            assert_eq!(
                header("__shelfstream.errors.topic"),
                "retail-sales-transactions"
            );
            assert_eq!(header("__shelfstream.errors.partition"), "2");
            assert_eq!(header("__shelfstream.errors.offset"), "41");
            assert_eq!(header("__shelfstream.errors.plugin.version"), "0.1.0+abc");
            assert_eq!(header("trace"), "abc", "the original headers are kept");
            let back = decode(m.key.as_deref(), m.payload.as_deref(), &m.headers).unwrap();
            assert_eq!(back, d);
            let raw = back.raw_record().unwrap();
            assert_eq!((raw.payload.as_slice(), raw.key.as_deref()), (payload, key));
            assert_eq!(raw.headers[1], ("bin".to_string(), vec![0xff, 0x00]));
        }
    }

    #[test]
    fn typed_and_note_dead_letters_round_trip_and_others_are_refused() {
        let mut d = letter(b"{}", None);
        (d.source, d.headers, d.key) = (None, Vec::new(), None);
        d.record = Some(serde_json::json!({"kind": "sale", "quantity": 3}));
        let m = encode(&d);
        assert_eq!(
            decode(m.key.as_deref(), m.payload.as_deref(), &m.headers).unwrap(),
            d
        );
        assert!(d.raw_record().is_err(), "a typed event cannot be re-driven");
        d.record = None;
        let m = encode(&d);
        assert_eq!(m.payload, None);
        assert_eq!(decode(m.key.as_deref(), None, &m.headers).unwrap(), d);
        let err = decode(None, Some(b"{}"), &[]).unwrap_err();
        assert!(
            err.to_string().contains("__shelfstream.errors.kind"),
            "{err}"
        );
    }
}
