//! Dead letters: everything the pipeline could not process, with the reason, the stage and
//! plugin version involved, and where the record came from. Nothing is dropped silently.

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
    /// The raw payload (as text) or the typed event (as JSON); absent for notes about a call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<serde_json::Value>,
}

impl DeadLetter {
    pub fn raw(
        stage: &str,
        plugin: &LoadedPlugin,
        kind: DeadLetterKind,
        reason: String,
        r: &RawRecord,
    ) -> Self {
        DeadLetter {
            kind,
            reason,
            stage: stage.to_string(),
            plugin: plugin.name.clone(),
            plugin_version: plugin.version.clone(),
            source: Some(SourceRef {
                topic: r.topic.as_str().into(),
                partition: r.partition,
                offset: r.offset,
            }),
            record: Some(serde_json::Value::String(
                String::from_utf8_lossy(&r.payload).into_owned(),
            )),
        }
    }

    pub fn event(
        stage: &str,
        plugin: &LoadedPlugin,
        kind: DeadLetterKind,
        reason: String,
        e: &Event,
    ) -> Self {
        DeadLetter {
            kind,
            reason,
            stage: stage.to_string(),
            plugin: plugin.name.clone(),
            plugin_version: plugin.version.clone(),
            source: None,
            record: Some(event_json(e)),
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
