//! Dead letters: everything the pipeline could not process, with the reason, the stage and
//! plugin version involved, and where the record came from. Nothing is dropped silently.
//!
//! A dead letter of a raw record keeps the original message (key, payload, headers; bytes that
//! are not UTF-8 as base64), so a fixed cleaner can re-drive it (`host replay --dead-letters`).
//! [`kafka`] is its form on the dead-letter topic: the original message with the error context
//! in headers, as Kafka Connect's dead-letter queue does.

pub mod kafka;

use serde::{Deserialize, Serialize};

use crate::plugin::{event_kind, Event, LoadedPlugin, RawRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterKind {
    /// A cleaner rejected the record (malformed, invalid field).
    Rejected,
    /// The event arrived after the watermark had passed its time.
    Late,
    /// The plugin trapped, overran its deadline or memory, or overflowed its stack.
    PluginFailure,
    /// The stage's plugin is quarantined.
    Quarantined,
    /// The stage's plugin file was removed.
    Unloaded,
    /// The source could not read the record at all.
    Malformed,
}

impl DeadLetterKind {
    pub const ALL: [DeadLetterKind; 6] = [
        DeadLetterKind::Rejected,
        DeadLetterKind::Late,
        DeadLetterKind::PluginFailure,
        DeadLetterKind::Quarantined,
        DeadLetterKind::Unloaded,
        DeadLetterKind::Malformed,
    ];

    /// The kind as a metric label (as it is spelled in dead-letter JSON).
    pub fn label(self) -> &'static str {
        match self {
            DeadLetterKind::Rejected => "rejected",
            DeadLetterKind::Late => "late",
            DeadLetterKind::PluginFailure => "plugin_failure",
            DeadLetterKind::Quarantined => "quarantined",
            DeadLetterKind::Unloaded => "unloaded",
            DeadLetterKind::Malformed => "malformed",
        }
    }

    /// This kind's index in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Where a raw record came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRef {
    /// Shared by the events of a batch (one topic per batch, usually).
    pub topic: std::sync::Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub kind: DeadLetterKind,
    pub reason: String,
    pub stage: String,
    pub plugin: String,
    pub plugin_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
    /// The raw payload (as text, or base64 when `payload_base64`) or the typed event (as
    /// JSON); absent for notes about a call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<serde_json::Value>,
    /// `record` is the base64 of a payload that is not UTF-8.
    #[serde(default, skip_serializing_if = "is_false")]
    pub payload_base64: bool,
    /// The raw record's key (base64 when `key_base64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub key_base64: bool,
    /// The raw record's headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
}

/// A message header kept by a dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    /// The value as text, or base64 when `base64`.
    pub value: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub base64: bool,
}

impl Header {
    /// A header's name and value bytes (base64 when not UTF-8).
    pub fn of(name: &str, value: &[u8]) -> Self {
        let (value, base64) = bytes_text(value);
        Header {
            name: name.to_string(),
            value,
            base64,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Bytes as text: UTF-8 as it is, anything else as base64 (then `true`).
pub fn bytes_text(bytes: &[u8]) -> (String, bool) {
    use base64::Engine;
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), false),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(bytes),
            true,
        ),
    }
}

/// The bytes [`bytes_text`] made.
pub fn text_bytes(text: &str, base64: bool) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine;
    match base64 {
        false => Ok(text.as_bytes().to_vec()),
        true => base64::engine::general_purpose::STANDARD.decode(text),
    }
}

impl DeadLetter {
    pub fn raw(
        stage: &str,
        plugin: &LoadedPlugin,
        kind: DeadLetterKind,
        reason: String,
        r: &RawRecord,
    ) -> Self {
        Self::note(stage, plugin, kind, reason).with_raw(r)
    }

    /// This dead letter, keeping the raw record `r` (its source, payload, key and headers).
    pub fn with_raw(self, r: &RawRecord) -> Self {
        let (payload, payload_base64) = bytes_text(&r.payload);
        let (key, key_base64) = r.key.as_deref().map(bytes_text).unzip();
        DeadLetter {
            source: Some(SourceRef {
                topic: r.topic.as_str().into(),
                partition: r.partition,
                offset: r.offset,
            }),
            record: Some(serde_json::Value::String(payload)),
            payload_base64,
            key,
            key_base64: key_base64.unwrap_or(false),
            headers: (r.headers.iter())
                .map(|(name, value)| Header::of(name, value))
                .collect(),
            ..self
        }
    }

    /// A cleaner dropped the record as a repeat of one it had already taken (`duplicate: ...`).
    pub fn is_duplicate(&self) -> bool {
        matches!(
            self.kind,
            DeadLetterKind::Rejected | DeadLetterKind::Malformed
        ) && self
            .reason
            .split(':')
            .next()
            .is_some_and(|r| r.trim() == "duplicate")
    }

    /// The raw record a dead letter of one keeps (to re-drive it), or why there is none.
    pub fn raw_record(&self) -> Result<RawRecord, String> {
        let (Some(source), Some(serde_json::Value::String(payload))) = (&self.source, &self.record)
        else {
            return Err("not a raw record (a typed event or a note)".into());
        };
        let bad = |what: &str, e: base64::DecodeError| format!("{what} is not valid base64: {e}");
        Ok(RawRecord {
            topic: source.topic.to_string(),
            partition: source.partition,
            offset: source.offset,
            key: (self.key.as_deref())
                .map(|k| text_bytes(k, self.key_base64))
                .transpose()
                .map_err(|e| bad("the key", e))?,
            payload: text_bytes(payload, self.payload_base64).map_err(|e| bad("the payload", e))?,
            timestamp: 0,
            headers: (self.headers.iter())
                .map(|h| Ok((h.name.clone(), text_bytes(&h.value, h.base64)?)))
                .collect::<Result<_, base64::DecodeError>>()
                .map_err(|e| bad("a header", e))?,
        })
    }

    pub fn event(
        stage: &str,
        plugin: &LoadedPlugin,
        kind: DeadLetterKind,
        reason: String,
        e: &Event,
    ) -> Self {
        DeadLetter {
            record: Some(event_json(e)),
            ..Self::note(stage, plugin, kind, reason)
        }
    }

    pub fn note(stage: &str, plugin: &LoadedPlugin, kind: DeadLetterKind, reason: String) -> Self {
        DeadLetter {
            kind,
            reason,
            stage: stage.to_string(),
            plugin: plugin.name.clone(),
            plugin_version: plugin.version.clone(),
            source: None,
            record: None,
            ..Self::empty()
        }
    }

    /// No record, key or headers (the rest of a struct literal).
    pub(crate) fn empty() -> Self {
        DeadLetter {
            kind: DeadLetterKind::Malformed,
            reason: String::new(),
            stage: String::new(),
            plugin: String::new(),
            plugin_version: String::new(),
            source: None,
            record: None,
            payload_base64: false,
            key: None,
            key_base64: false,
            headers: Vec::new(),
        }
    }
}

/// An event as a flat JSON object: the record's fields plus `"kind"`.
pub fn event_json(event: &Event) -> serde_json::Value {
    let inner = match event {
        Event::Sale(e) => serde_json::to_value(e),
        Event::Inventory(e) => serde_json::to_value(e),
        Event::Price(e) => serde_json::to_value(e),
        Event::Customer(e) => serde_json::to_value(e),
        Event::Metric(e) => serde_json::to_value(e),
        Event::Alert(e) => serde_json::to_value(e),
        Event::Forecast(e) => serde_json::to_value(e),
    };
    let mut value = inner.expect("generated records serialise");
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("kind".into(), event_kind(event).into());
    }
    value
}

/// Parse the flat JSON form written by [`event_json`] (`{"kind": "sale", ...fields}`).
pub fn event_from_json(text: &str) -> anyhow::Result<Event> {
    use anyhow::Context;
    event_from_value(serde_json::from_str(text).context("invalid JSON")?)
}

/// [`event_from_json`] of parsed JSON.
pub fn event_from_value(mut value: serde_json::Value) -> anyhow::Result<Event> {
    use anyhow::Context;
    let kind = value
        .as_object_mut()
        .and_then(|m| m.remove("kind"))
        .and_then(|k| k.as_str().map(str::to_string))
        .context(
            "an event needs a \"kind\" (sale, inventory, price, customer, metric, alert, forecast)",
        )?;
    fn parse<T: serde::de::DeserializeOwned>(
        v: &serde_json::Value,
        kind: &str,
    ) -> anyhow::Result<T> {
        T::deserialize(v).with_context(|| format!("not a valid {kind} event: {v}"))
    }
    let v = &value;
    Ok(match kind.as_str() {
        "sale" => Event::Sale(parse(v, &kind)?),
        "inventory" => Event::Inventory(parse(v, &kind)?),
        "price" => Event::Price(parse(v, &kind)?),
        "customer" => Event::Customer(parse(v, &kind)?),
        "metric" => Event::Metric(parse(v, &kind)?),
        "alert" => Event::Alert(parse(v, &kind)?),
        "forecast" => Event::Forecast(parse(v, &kind)?),
        other => anyhow::bail!("unknown event kind {other:?}"),
    })
}
