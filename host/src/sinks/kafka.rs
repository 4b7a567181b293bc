//! Kafka sinks: alerts (from any stream) to `retail-restock-alerts` as JSON keyed by
//! `store:product`, and dead letters to a dead-letter topic as Kafka Connect writes them: the
//! original message with the error context in headers ([`dead_letter::kafka`]). `flush` waits until the broker acknowledged everything, so a checkpoint
//! (and the offset commit after it) never runs ahead of what the topics hold. Delivery is at
//! least once: after a crash, alerts since the last checkpoint can be produced again.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::ClientConfig;
use serde::Deserialize;

use super::{Sink, SinkError};
use crate::meter::SinkMeter;
use crate::pipeline::Provenance;
use crate::pipeline::{dead_letter, event_json, DeadLetter};
use crate::plugin::Event;
use crate::sources::kafka::auth::{self, AuthWatch};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSinkConfig {
    pub brokers: String,
    pub alerts_topic: String,
    pub dead_letter_topic: String,
    /// More librdkafka producer properties (security: `security.protocol`, `sasl.mechanism`,
    /// `sasl.username`, `sasl.password`, `ssl.*`), applied after the host's.
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaSinkConfig {
    fn default() -> Self {
        KafkaSinkConfig {
            brokers: "127.0.0.1:9092".into(),
            alerts_topic: crate::topics::ALERTS.into(),
            dead_letter_topic: crate::topics::DEAD_LETTERS.into(),
            properties: Default::default(),
        }
    }
}

pub struct KafkaSink {
    config: KafkaSinkConfig,
    /// Shared with the checkpoint's background wait for deliveries.
    producer: std::sync::Arc<BaseProducer<AuthWatch>>,
    /// Messages sent and not yet known to be acknowledged.
    unconfirmed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    meter: std::sync::Arc<SinkMeter>,
}

impl KafkaSink {
    pub fn new(config: KafkaSinkConfig) -> Result<Self, SinkError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("linger.ms", "5")
            .set("message.timeout.ms", "0") // never give up on a message: retry until delivered
            // Retries after a lost acknowledgement (a broker restart) do not write twice.
            .set("enable.idempotence", "true");
        for (key, value) in &config.properties {
            client.set(key, value);
        }
        let producer: BaseProducer<AuthWatch> = client
            .create_with_context(AuthWatch::default())
            .map_err(|e| kafka_error("creating the Kafka producer", e))?;
        // Connect now: refused credentials fail the start with the reason, instead of every
        // alert waiting for a login that cannot succeed.
        auth::connect(
            producer.client(),
            || {
                producer.poll(Duration::ZERO);
                producer.context().failure()
            },
            &config.brokers,
            Duration::from_secs(15),
        )
        .map_err(SinkError::Connect)?;
        Ok(KafkaSink {
            config,
            producer: std::sync::Arc::new(producer),
            unconfirmed: Default::default(),
            meter: SinkMeter::new("kafka"),
        })
    }

    fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> Result<(), SinkError> {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic);
        record.key = key;
        record.payload = payload;
        record.headers = headers;
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.meter.queued(1);
                    (self.unconfirmed).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(());
                }
                Err((e, back))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    record = back;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(kafka_error(&format!("producing to {topic}"), e)),
            }
        }
    }
}

fn kafka_error(what: &str, e: rdkafka::error::KafkaError) -> SinkError {
    SinkError::Io {
        what: what.to_string(),
        source: std::io::Error::other(e),
    }
}

impl Sink for KafkaSink {
    fn write(
        &mut self,
        _stream: &str,
        provenance: &Provenance,
        events: &[Event],
    ) -> Result<(), SinkError> {
        for event in events {
            if let Event::Alert(a) = event {
                let mut value = event_json(event);
                if let serde_json::Value::Object(map) = &mut value {
                    map.insert("_stage".into(), (&*provenance.stage).into());
                    map.insert("_plugin".into(), (&*provenance.plugin).into());
                    map.insert("_plugin_version".into(), (&*provenance.version).into());
                }
                let key = format!("{}:{}", a.store_id, a.product_id);
                let payload = value.to_string();
                let topic = &self.config.alerts_topic;
                self.send(topic, Some(key.as_bytes()), Some(payload.as_bytes()), None)?;
            }
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    fn dead_letters(&mut self, dead: &[DeadLetter]) -> Result<(), SinkError> {
        for d in dead {
            let m = dead_letter::kafka::encode(d);
            let headers = (m.headers.iter()).fold(OwnedHeaders::new(), |h, (key, value)| {
                h.insert(Header {
                    key,
                    value: Some(value),
                })
            });
            let topic = &self.config.dead_letter_topic;
            self.send(topic, m.key.as_deref(), m.payload.as_deref(), Some(headers))?;
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        wait_for_deliveries(&self.producer, &self.unconfirmed, &self.meter);
        Ok(())
    }

    fn start_flush(&mut self) -> Result<Vec<super::Pending>, SinkError> {
        let (producer, unconfirmed, meter) = (
            self.producer.clone(),
            self.unconfirmed.clone(),
            self.meter.clone(),
        );
        Ok(vec![Box::new(move || {
            wait_for_deliveries(&producer, &unconfirmed, &meter)
        })])
    }

    fn meters(&self) -> Vec<std::sync::Arc<SinkMeter>> {
        vec![self.meter.clone()]
    }
}

/// Wait for every delivery report; with message.timeout.ms = 0 librdkafka keeps retrying while
/// the broker is away, so this blocks (backpressure) rather than losing messages.
fn wait_for_deliveries(
    producer: &BaseProducer<AuthWatch>,
    unconfirmed: &std::sync::atomic::AtomicUsize,
    meter: &SinkMeter,
) {
    let started = std::time::Instant::now();
    loop {
        match producer.flush(Duration::from_secs(5)) {
            Ok(()) => {
                let sent = unconfirmed.swap(0, std::sync::atomic::Ordering::Relaxed);
                meter.written(sent, started.elapsed());
                return;
            }
            Err(e) => {
                meter.retry();
                let refused = producer.context().failure();
                tracing::warn!(error = %e, in_flight = producer.in_flight_count(), refused, "waiting for Kafka to acknowledge alerts and dead letters")
            }
        }
    }
}
