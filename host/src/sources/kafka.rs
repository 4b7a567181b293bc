//! Kafka source (rdkafka). Reads the configured topics and sends one batch per topic-partition
//! with the offset after it, so the pipeline can checkpoint exactly what it has processed.
//!
//! Delivery: at least once. Partitions are assigned explicitly and each starts at the offset in
//! the host's saved state (the state and the offsets are saved together, after every sink has
//! flushed), or at the beginning. The offsets are also committed to the consumer group after each
//! checkpoint, for monitoring lag; they are not what the host resumes from. Offsets that a broker
//! skips (a gap in a partition that is neither compacted nor transactional) are read again
//! before the source moves on (`GapGuard`). Sharing partitions
//! between several hosts of one group (rebalancing) is not supported yet.

use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::Deserialize;
use tokio::sync::mpsc::Sender;

use super::{SourceBatch, StopFlag};
use crate::plugin::RawRecord;
use crate::run::Command;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSourceConfig {
    pub name: String,
    /// `host:port[,host:port]`.
    pub brokers: String,
    /// Consumer group the processed offsets are committed to.
    pub group_id: String,
    pub topics: Vec<String>,
    /// Stop once no message has arrived for this long (tests, demos); absent: run until stopped.
    pub stop_when_idle: Option<String>,
}

impl Default for KafkaSourceConfig {
    fn default() -> Self {
        KafkaSourceConfig {
            name: "kafka".into(),
            brokers: "127.0.0.1:9092".into(),
            group_id: "shelfstream".into(),
            topics: crate::config::TOPICS
                .iter()
                .map(|t| t.to_string())
                .collect(),
            stop_when_idle: None,
        }
    }
}

/// How long a partial batch waits for more records before it is sent.
const LINGER: Duration = Duration::from_millis(100);

/// `topic:partition`, the key of saved offsets.
pub fn partition_key(topic: &str, partition: i32) -> String {
    format!("{topic}:{partition}")
}

pub fn run(
    c: &KafkaSourceConfig,
    batch_size: usize,
    saved: &BTreeMap<String, i64>,
    tx: &Sender<Command>,
    stop: &StopFlag,
    commits: Receiver<BTreeMap<String, i64>>,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &c.brokers)
        .set("group.id", &c.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .with_context(|| format!("creating a Kafka consumer for {}", c.brokers))?;
    let mut assignment = TopicPartitionList::new();
    for topic in &c.topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("reading metadata of topic {topic} from {}", c.brokers))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        tracing::info!(source = %c.name, topic, partitions = ?partitions, "topic partitions");
        let lanes = Command::Lanes {
            topic: topic.clone(),
            partitions,
        };
        tx.blocking_send(lanes)
            .map_err(|_| anyhow::anyhow!("pipeline stopped"))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let offset = match saved.get(&partition_key(topic, p.id())) {
                    Some(&o) => Offset::Offset(o),
                    None => Offset::Beginning,
                };
                assignment.add_partition_offset(topic, p.id(), offset)?;
            }
        }
    }
    consumer
        .assign(&assignment)
        .context("assigning partitions")?;
    tracing::info!(source = %c.name, partitions = assignment.count(), "Kafka source assigned");

    let idle_limit = c
        .stop_when_idle
        .as_deref()
        .map(crate::config::parse_duration)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let mut buffers: BTreeMap<(String, i32), Vec<RawRecord>> = BTreeMap::new();
    let mut oldest: Option<Instant> = None;
    let mut last_message = Instant::now();
    let mut gaps = GapGuard::new(saved);
    while !stop.is_stopped() {
        while let Ok(offsets) = commits.try_recv() {
            commit(&consumer, &offsets);
        }
        let polled = consumer.poll(Duration::from_millis(50));
        match polled {
            Some(Ok(m)) => {
                last_message = Instant::now();
                if !gaps.accept(&consumer, m.topic(), m.partition(), m.offset()) {
                    continue; // re-reading from the missing offset
                }
                let record = RawRecord {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    timestamp: m.timestamp().to_millis().unwrap_or(0),
                };
                let key = (record.topic.clone(), record.partition);
                let buffer = buffers.entry(key.clone()).or_default();
                buffer.push(record);
                oldest.get_or_insert_with(Instant::now);
                if buffer.len() >= batch_size {
                    let records = buffers.remove(&key).unwrap_or_default();
                    send(c, tx, key.0, key.1, records)?;
                    // Time blocked on a busy pipeline (backpressure) is not idle time.
                    last_message = Instant::now();
                }
            }
            Some(Err(e)) => {
                tracing::warn!(source = %c.name, error = %e, "Kafka consumer error; retrying")
            }
            None => {}
        }
        // Linger: partial batches wait up to LINGER for more records (fewer, larger batches and
        // raw objects), then all go.
        if oldest.is_some_and(|t| t.elapsed() >= LINGER) {
            for ((topic, partition), records) in std::mem::take(&mut buffers) {
                send(c, tx, topic, partition, records)?;
            }
            oldest = None;
            last_message = Instant::now(); // time blocked on backpressure is not idle time
        }
        if buffers.is_empty() && idle_limit.is_some_and(|limit| last_message.elapsed() >= limit) {
            break;
        }
    }
    for ((topic, partition), records) in buffers {
        send(c, tx, topic, partition, records)?;
    }
    // Commits that arrive while the pipeline drains are applied by the next run's checkpoint.
    while let Ok(offsets) = commits.recv_timeout(Duration::from_millis(200)) {
        commit(&consumer, &offsets);
    }
    Ok(())
}

/// The retail topics are neither compacted nor transactional, so every offset of a partition
/// holds a message, and the next message after offset `o` is `o + 1`. A message with a higher
/// offset means the broker skipped one: a broker can make a later write visible before an
/// earlier one (tansu does under concurrent produce and fetch). The guard then seeks back to the
/// missing offset and reads again, for up to `PATIENCE`, before accepting the gap with a warning.
struct GapGuard {
    /// Next expected offset per (topic, partition); unknown when starting at the beginning.
    expected: BTreeMap<(String, i32), i64>,
    /// Since when each partition has been waiting for its missing offset, and how many times it
    /// read again.
    waiting: BTreeMap<(String, i32), (Instant, u32)>,
    patience: Duration,
}

/// How long to keep reading again before accepting that offsets are gone.
const PATIENCE: Duration = Duration::from_secs(10);

impl GapGuard {
    fn new(saved: &BTreeMap<String, i64>) -> Self {
        let expected = saved
            .iter()
            .filter_map(|(key, &next)| {
                let (topic, partition) = key.rsplit_once(':')?;
                Some(((topic.to_string(), partition.parse().ok()?), next))
            })
            .collect();
        GapGuard {
            expected,
            waiting: BTreeMap::new(),
            patience: PATIENCE,
        }
    }

    /// Whether to take the message at `offset`; `false` after seeking back to a missing one.
    fn accept(
        &mut self,
        consumer: &BaseConsumer,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> bool {
        let key = (topic.to_string(), partition);
        match self.expected.get(&key).copied() {
            Some(expected) if offset < expected => return false, // before a seek took effect
            Some(expected) if offset > expected => {
                let (since, tries) = self
                    .waiting
                    .entry(key.clone())
                    .or_insert_with(|| (Instant::now(), 0));
                *tries += 1;
                if since.elapsed() < self.patience {
                    // Read again from the missing offset, then from further back: a broker may
                    // skip the first offset of a fetch (those before it are dropped above).
                    let back = if *tries == 1 {
                        0
                    } else {
                        1i64 << (*tries - 2).min(10)
                    };
                    let from = (expected - back).max(0);
                    tracing::debug!(
                        topic,
                        partition,
                        expected,
                        got = offset,
                        from,
                        "offset gap; reading again"
                    );
                    if let Err(error) = consumer.seek(
                        topic,
                        partition,
                        Offset::Offset(from),
                        Duration::from_secs(5),
                    ) {
                        tracing::warn!(topic, partition, expected, %error, "seeking back to a missing offset failed");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    return false;
                }
                tracing::warn!(
                    topic,
                    partition,
                    missing_from = expected,
                    missing_to = offset - 1,
                    "the broker never delivered these offsets; continuing after them"
                );
            }
            _ => {}
        }
        if let Some((since, _)) = self.waiting.remove(&key) {
            tracing::info!(
                topic,
                partition,
                offset,
                waited_ms = since.elapsed().as_millis() as u64,
                "a skipped offset arrived on reading again"
            );
        }
        self.expected.insert(key, offset + 1);
        true
    }
}

fn send(
    c: &KafkaSourceConfig,
    tx: &Sender<Command>,
    topic: String,
    partition: i32,
    records: Vec<RawRecord>,
) -> anyhow::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let next = records.last().map_or(0, |r| r.offset + 1);
    let batch = SourceBatch {
        source: c.name.clone(),
        topic: topic.clone(),
        records,
        position: 0,
        offset: Some((partition_key(&topic, partition), next)),
    };
    tx.blocking_send(Command::Batch(batch))
        .map_err(|_| anyhow::anyhow!("pipeline stopped"))
}

fn commit(consumer: &BaseConsumer, offsets: &BTreeMap<String, i64>) {
    let mut tpl = TopicPartitionList::new();
    for (key, &offset) in offsets {
        if let Some((topic, Ok(partition))) =
            key.rsplit_once(':').map(|(t, p)| (t, p.parse::<i32>()))
        {
            let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(offset));
        }
    }
    if let Err(error) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::warn!(%error, "committing offsets to the consumer group failed (resume uses saved state)");
    }
}

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
    let names: Vec<&str> = crate::config::TOPICS
        .iter()
        .copied()
        .chain(["retail-restock-alerts", "retail-dead-letters"])
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

/// The current end offset of every partition of `topics` (`topic:partition` -> offset): where a
/// source starts to read only what is produced from now on.
pub fn end_offsets(brokers: &str, topics: &[String]) -> anyhow::Result<BTreeMap<String, i64>> {
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
                out.insert(partition_key(topic, p.id()), high);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_offset_is_read_again_and_nothing_is_taken_twice() {
        // No broker: seeks fail (and are logged); the bookkeeping is what is tested.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create()
            .unwrap();
        let saved = BTreeMap::from([("t:0".to_string(), 5)]);
        let mut guard = GapGuard::new(&saved);
        assert!(guard.accept(&consumer, "t", 0, 5));
        assert!(
            !guard.accept(&consumer, "t", 0, 7),
            "6 is missing: read again"
        );
        assert!(
            !guard.accept(&consumer, "t", 0, 4),
            "before the expected offset: taken already"
        );
        assert!(
            guard.accept(&consumer, "t", 0, 6),
            "the missing offset arrives"
        );
        assert!(guard.accept(&consumer, "t", 0, 7));
        // A partition read from the beginning takes its first offset as it comes.
        assert!(guard.accept(&consumer, "t", 1, 40));
        // A gap that never fills is accepted once patience runs out.
        guard.patience = Duration::ZERO;
        assert!(guard.accept(&consumer, "t", 1, 45));
        assert!(guard.accept(&consumer, "t", 1, 46));
    }
}
