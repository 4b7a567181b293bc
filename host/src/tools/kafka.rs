//! Kafka for the tools: producing simulated records, creating the retail topics, and reading
//! where partitions end. The runtime's Kafka source and sink are in `sources` and `sinks`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use crate::plugin::RawRecord;
use crate::sources::kafka::auth::{self, AuthWatch};
use crate::sources::{Offsets, TopicPartition};

/// Where the tools connect: bootstrap servers and librdkafka properties (security settings).
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub brokers: String,
    pub properties: Vec<(String, String)>,
}

impl From<&str> for Connection {
    fn from(brokers: &str) -> Self {
        Connection {
            brokers: brokers.into(),
            properties: Vec::new(),
        }
    }
}

impl Connection {
    fn client(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.properties {
            client.set(key, value);
        }
        client
    }
}

/// `KEY=VALUE`, a librdkafka property from the command line (`-X`, as kcat has it).
pub fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "{text:?} is not KEY=VALUE (e.g. -X security.protocol=sasl_plaintext)"
        )),
    }
}

/// Produce raw records (e.g. from the simulator) to their topics and partitions.
pub struct RecordProducer {
    producer: BaseProducer<AuthWatch>,
}

/// How long [`RecordProducer::flush`] waits for a broker that acknowledges nothing.
const FLUSH_PATIENCE: Duration = Duration::from_secs(60);

impl RecordProducer {
    pub fn new(kafka: &Connection) -> anyhow::Result<Self> {
        let brokers = &kafka.brokers;
        let producer: BaseProducer<AuthWatch> = kafka
            .client()
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "1000000")
            // Retries after a lost acknowledgement (a broker restart) do not write twice.
            .set("enable.idempotence", "true")
            .create_with_context(AuthWatch::default())
            .with_context(|| format!("creating a Kafka producer for {brokers}"))?;
        auth::connect(
            producer.client(),
            || {
                producer.poll(Duration::ZERO);
                producer.context().failure()
            },
            brokers,
            Duration::from_secs(15),
        )
        .map_err(anyhow::Error::msg)?;
        Ok(RecordProducer { producer })
    }

    /// Queue one record; waits (polling) while the local queue is full.
    pub fn send(&self, r: &RawRecord) -> anyhow::Result<()> {
        loop {
            let mut record = BaseRecord::to(&r.topic)
                .payload(&r.payload)
                .partition(r.partition)
                .timestamp(r.timestamp);
            if let Some(key) = &r.key {
                record = record.key(key);
            }
            if !r.headers.is_empty() {
                use rdkafka::message::{Header, OwnedHeaders};
                let headers = (r.headers.iter()).fold(OwnedHeaders::new(), |h, (key, value)| {
                    h.insert(Header {
                        key,
                        value: Some(value),
                    })
                });
                record = record.headers(headers);
            }
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((e, _))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e).with_context(|| format!("producing to {}", r.topic)),
            }
        }
    }

    /// Wait until the broker has acknowledged everything sent. A slow broker is waited for as
    /// long as it acknowledges something every `FLUSH_PATIENCE`.
    pub fn flush(&self) -> anyhow::Result<()> {
        let mut in_flight = self.producer.in_flight_count();
        let mut progress_at = std::time::Instant::now();
        loop {
            let flushed = self.producer.flush(Duration::from_secs(5));
            if let Some(reason) = self.producer.context().failure() {
                anyhow::bail!(auth::describe("the brokers", &reason));
            }
            let now_in_flight = self.producer.in_flight_count();
            if flushed.is_ok() || now_in_flight == 0 {
                return Ok(());
            }
            if now_in_flight < in_flight {
                (in_flight, progress_at) = (now_in_flight, std::time::Instant::now());
            } else if progress_at.elapsed() >= FLUSH_PATIENCE {
                return flushed.with_context(|| {
                    format!("flushing the Kafka producer: {in_flight} messages unacknowledged for {FLUSH_PATIENCE:?}")
                });
            }
            tracing::warn!(
                in_flight = now_in_flight,
                "waiting for the broker to acknowledge"
            );
        }
    }
}

/// Create the retail topics (and the alerts and dead-letter topics) if they do not exist.
pub async fn create_topics(kafka: &Connection, partitions: i32) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let brokers = &kafka.brokers;
    let admin: AdminClient<AuthWatch> = kafka
        .client()
        .create_with_context(AuthWatch::default())
        .with_context(|| format!("creating a Kafka admin client for {brokers}"))?;
    let names: Vec<&str> = crate::topics::RETAIL
        .iter()
        .copied()
        .chain([crate::topics::ALERTS, crate::topics::DEAD_LETTERS])
        .collect();
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let created = admin.create_topics(&topics, &options).await;
    if let Some(reason) = admin.inner().context().failure() {
        anyhow::bail!(auth::describe(brokers, &reason));
    }
    for result in created.context("creating topics")? {
        match result {
            Ok(topic) => tracing::info!(%topic, partitions, "topic created"),
            Err((topic, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(%topic, "topic exists")
            }
            Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// The current end offset of every partition of `topics`: where a
/// source starts to read only what is produced from now on.
pub fn end_offsets(kafka: &Connection, topics: &[String]) -> anyhow::Result<Offsets> {
    let brokers = &kafka.brokers;
    let consumer: BaseConsumer = kafka
        .client()
        .set("group.id", "shelfstream-offsets")
        .create()
        .with_context(|| format!("creating a Kafka consumer for {brokers}"))?;
    let mut out = BTreeMap::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("reading metadata of topic {topic}"))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (_, high) = consumer
                    .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                    .with_context(|| format!("reading the end offset of {topic}:{}", p.id()))?;
                out.insert(TopicPartition::new(topic.as_str(), p.id()), high);
            }
        }
    }
    Ok(out)
}
