//! Kafka for the tools: producing simulated records, creating the retail topics, and reading
//! where partitions end. The runtime's Kafka source and sink are in `sources` and `sinks`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use crate::plugin::RawRecord;
use crate::sources::{Offsets, TopicPartition};

/// Produce raw records (e.g. from the simulator) to their topics and partitions.
pub struct RecordProducer {
    producer: BaseProducer,
}

impl RecordProducer {
    pub fn new(brokers: &str) -> anyhow::Result<Self> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "1000000")
            // Retries after a lost acknowledgement (a broker restart) do not write twice.
            .set("enable.idempotence", "true")
            .create()
            .with_context(|| format!("creating a Kafka producer for {brokers}"))?;
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

    pub fn flush(&self) -> anyhow::Result<()> {
        self.producer
            .flush(Duration::from_secs(30))
            .context("flushing the Kafka producer")
    }
}

/// Create the retail topics (and the alerts and dead-letter topics) if they do not exist.
pub async fn create_topics(brokers: &str, partitions: i32) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
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
    for result in admin
        .create_topics(&topics, &options)
        .await
        .context("creating topics")?
    {
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
pub fn end_offsets(brokers: &str, topics: &[String]) -> anyhow::Result<Offsets> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
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
