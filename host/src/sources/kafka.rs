//! Kafka source (rdkafka). Reads the configured topics as a member of a consumer group and sends
//! one batch per topic-partition with the offset after it, so the pipeline can checkpoint exactly
//! what it has processed.
//!
//! Partitions are the pipeline's shards (see [`crate::checkpoint`]): the topics must have the same
//! number of partitions, and the range assignor gives a host partition `p` of every topic
//! together. Several hosts with one `group_id` share the partitions; the group moves them when a
//! host joins or leaves:
//!
//! - on revoke, the pipeline flushes every sink, saves the revoked shards' checkpoints (state and
//!   offsets together) and closes them; the offsets are committed to the group; records read but
//!   not yet processed are dropped (the next owner reads them from the checkpoint);
//! - on assign, the pipeline opens each shard from its checkpoint and the consumer starts at the
//!   checkpoint's offsets (no checkpoint: at the beginning).
//!
//! Delivery: at least once, with state and offsets that always match; the committed offsets are
//! for monitoring lag, the checkpoints are what a shard resumes from. Offsets that a broker
//! skips (a gap in a partition that is neither compacted nor transactional) are read again
//! before the source moves on (`GapGuard`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::Receiver;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaRespErr;
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
    /// Consumer group: hosts with the same group share the partitions (and the checkpoints,
    /// which live in the object store under `checkpoints/{group_id}/`).
    pub group_id: String,
    pub topics: Vec<String>,
    /// Stop once no message has arrived for this long (tests, demos); absent: run until stopped.
    pub stop_when_idle: Option<String>,
    /// How long the group waits for a silent host before moving its partitions to the others.
    pub session_timeout: String,
    /// More librdkafka consumer properties (security, fetch sizes, ...), applied after the
    /// host's own; the ones the delivery guarantee depends on cannot be changed.
    pub properties: std::collections::BTreeMap<String, String>,
}

/// Consumer properties the host sets for its offset handling and rebalancing.
const FIXED_PROPERTIES: [&str; 4] = [
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "partition.assignment.strategy",
];

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
            session_timeout: "10s".into(),
            properties: Default::default(),
        }
    }
}

/// A read-loop turn longer than this does not count as idle time (see the read loop).
const STALL: Duration = Duration::from_secs(2);

/// How long a partial batch waits for more records before it is sent.
const LINGER: Duration = Duration::from_millis(100);

/// The consumer's librdkafka settings: the host's, then the source's `properties` (which may
/// not touch the ones offset handling and rebalancing depend on).
fn consumer_config(c: &KafkaSourceConfig) -> anyhow::Result<ClientConfig> {
    let session_ms = crate::config::parse_duration(&c.session_timeout)
        .map_err(anyhow::Error::msg)?
        .as_millis()
        .max(1_000);
    if let Some(fixed) = (c.properties.keys()).find(|k| FIXED_PROPERTIES.contains(&k.as_str())) {
        anyhow::bail!(
            "source {}: property {fixed:?} is set by the host (offsets are committed after the sinks hold the data; the range assignor keeps topics co-partitioned)",
            c.name
        );
    }
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &c.brokers)
        .set("group.id", &c.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", session_ms.to_string())
        .set("heartbeat.interval.ms", (session_ms / 4).to_string());
    for (key, value) in &c.properties {
        client.set(key, value);
    }
    Ok(client)
}

/// `topic:partition`, the key of saved offsets.
pub fn partition_key(topic: &str, partition: i32) -> String {
    format!("{topic}:{partition}")
}

/// What the rebalance callback tells the read loop.
enum GroupEvent {
    /// Partitions now read, with the offset each starts at (`None`: the beginning).
    Assigned(Vec<(String, i32, Option<i64>)>),
    Revoked(BTreeSet<i32>),
}

#[derive(Default)]
struct GroupState {
    assigned: BTreeSet<i32>,
    events: Vec<GroupEvent>,
    failure: Option<String>,
}

/// Runs the group's rebalances through the pipeline (see the module docs).
struct GroupContext {
    source: String,
    tx: Sender<Command>,
    state: Mutex<GroupState>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let partitions: BTreeSet<i32> =
                    tpl.elements().iter().map(|e| e.partition()).collect();
                self.revoke(consumer, &partitions, false, consumer.assignment_lost());
                if let Err(error) = consumer.unassign() {
                    tracing::warn!(source = %self.source, %error, "unassigning revoked partitions failed");
                }
            }
            other => {
                tracing::error!(source = %self.source, error = ?other, "consumer group rebalance failed");
                let all = self.lock().assigned.clone();
                self.revoke(consumer, &all, false, consumer.assignment_lost());
                let _ = consumer.unassign();
            }
        }
    }
}

impl GroupContext {
    fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open the shards in the pipeline, then start each partition at its checkpoint's offset.
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let elements: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let partitions: BTreeSet<i32> = elements.iter().map(|(_, p)| *p).collect();
        let topics: BTreeSet<String> = elements.iter().map(|(t, _)| t.clone()).collect();
        let (reply, answer) = std::sync::mpsc::channel();
        let command = Command::Assign {
            source: self.source.clone(),
            partitions: partitions.iter().copied().collect(),
            topics: topics.into_iter().collect(),
            reply,
        };
        let offsets = match self
            .tx
            .blocking_send(command)
            .ok()
            .and_then(|_| answer.recv().ok())
        {
            Some(Ok(offsets)) => offsets,
            Some(Err(error)) => {
                self.lock().failure = Some(format!("opening assigned partitions: {error}"));
                return;
            }
            None => {
                self.lock().failure = Some("pipeline stopped".into());
                return;
            }
        };
        let mut started = Vec::new();
        for (topic, partition) in &elements {
            let next = offsets.get(&partition_key(topic, *partition)).copied();
            let offset = next.map_or(Offset::Beginning, Offset::Offset);
            if let Err(error) = tpl.set_partition_offset(topic, *partition, offset) {
                tracing::warn!(topic, partition, %error, "setting a partition's start offset failed");
            }
            started.push((topic.clone(), *partition, next));
        }
        if let Err(error) = consumer.assign(tpl) {
            self.lock().failure = Some(format!("assigning partitions: {error}"));
            return;
        }
        tracing::info!(source = %self.source, partitions = ?partitions, offsets = ?offsets, "partitions assigned");
        let mut state = self.lock();
        state.assigned.extend(partitions);
        state.events.push(GroupEvent::Assigned(started));
    }

    /// Checkpoint and close the shards of `partitions` this member holds, then commit their
    /// offsets. `end_of_input`: the source is done, so the pipeline may close their windows.
    /// `lost`: the group gave them to another member while this one was silent, so they close
    /// without a checkpoint or a commit (both would go behind the new owner's).
    fn revoke(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: &BTreeSet<i32>,
        end_of_input: bool,
        lost: bool,
    ) {
        let held: BTreeSet<i32> = self
            .lock()
            .assigned
            .intersection(partitions)
            .copied()
            .collect();
        if held.is_empty() {
            return;
        }
        let (reply, answer) = std::sync::mpsc::channel();
        let command = Command::Revoke {
            source: self.source.clone(),
            partitions: held.iter().copied().collect(),
            end_of_input,
            lost,
            reply,
        };
        match self
            .tx
            .blocking_send(command)
            .ok()
            .and_then(|_| answer.recv().ok())
        {
            Some(_) if lost => {
                tracing::warn!(source = %self.source, partitions = ?held, "partitions lost")
            }
            Some(offsets) => {
                if !offsets.is_empty() {
                    if let Err(error) = consumer.commit(&offset_list(&offsets), CommitMode::Sync) {
                        tracing::warn!(source = %self.source, %error,
                            "committing the offsets of revoked partitions failed (their checkpoints are saved)");
                    }
                }
                tracing::info!(source = %self.source, partitions = ?held, offsets = ?offsets, "partitions revoked");
            }
            None => tracing::warn!(source = %self.source, partitions = ?held,
                "the pipeline stopped before it checkpointed the revoked partitions; they resume from their last checkpoint"),
        }
        let mut state = self.lock();
        for p in &held {
            state.assigned.remove(p);
        }
        state.events.push(GroupEvent::Revoked(held));
    }
}

/// The topics' partition numbers, checking that the topics are co-partitioned.
fn partitions_of(
    consumer: &BaseConsumer<GroupContext>,
    c: &KafkaSourceConfig,
) -> anyhow::Result<Vec<i32>> {
    let mut counts = BTreeMap::new();
    for topic in &c.topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("reading metadata of topic {topic} from {}", c.brokers))?;
        let n = metadata
            .topics()
            .iter()
            .map(|t| t.partitions().len())
            .sum::<usize>();
        if n == 0 {
            anyhow::bail!("topic {topic} does not exist on {} (host simulate or host demo creates the retail topics)", c.brokers);
        }
        counts.insert(topic.clone(), n);
    }
    let distinct: BTreeSet<usize> = counts.values().copied().collect();
    if distinct.len() > 1 {
        anyhow::bail!(
            "the topics of source {} have different partition counts {counts:?}: partition p of every topic is one shard of the pipeline, so they must be co-partitioned (same count, same keys)",
            c.name
        );
    }
    let n = distinct.into_iter().next().unwrap_or(0) as i32;
    tracing::info!(source = %c.name, topics = ?c.topics, partitions = n, "topics are co-partitioned");
    Ok((0..n).collect())
}

pub fn run(
    c: &KafkaSourceConfig,
    batch_size: usize,
    tx: &Sender<Command>,
    stop: &StopFlag,
    commits: Receiver<BTreeMap<String, i64>>,
) -> anyhow::Result<()> {
    let context = GroupContext {
        source: c.name.clone(),
        tx: tx.clone(),
        state: Mutex::new(GroupState::default()),
    };
    let client = consumer_config(c)?;
    let consumer: BaseConsumer<GroupContext> = client
        .create_with_context(context)
        .with_context(|| format!("creating a Kafka consumer for {}", c.brokers))?;
    partitions_of(&consumer, c)?;
    let topics: Vec<&str> = c.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .with_context(|| format!("subscribing group {} to {topics:?}", c.group_id))?;
    tracing::info!(source = %c.name, group = %c.group_id, "Kafka source joined its consumer group");

    let idle_limit = c
        .stop_when_idle
        .as_deref()
        .map(crate::config::parse_duration)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let mut buffers: BTreeMap<(String, i32), Vec<RawRecord>> = BTreeMap::new();
    let mut oldest: Option<Instant> = None;
    let mut last_message = Instant::now();
    let mut gaps = GapGuard::new();
    let mut assigned: BTreeSet<i32> = BTreeSet::new();
    while !stop.is_stopped() {
        let turn_started = Instant::now();
        while let Ok(offsets) = commits.try_recv() {
            commit(&consumer, &offsets);
        }
        let polled = consumer.poll(Duration::from_millis(50));
        // Rebalances run inside poll: apply what they changed before taking the message.
        let events = {
            let mut state = consumer.context().lock();
            if let Some(failure) = state.failure.take() {
                anyhow::bail!(failure);
            }
            std::mem::take(&mut state.events)
        };
        for event in events {
            last_message = Instant::now();
            match event {
                GroupEvent::Assigned(started) => {
                    for (topic, partition, next) in started {
                        assigned.insert(partition);
                        gaps.start(&topic, partition, next);
                    }
                }
                GroupEvent::Revoked(partitions) => {
                    // Read but not processed: the partition's next owner reads them again.
                    buffers.retain(|(_, p), _| !partitions.contains(p));
                    if buffers.is_empty() {
                        oldest = None;
                    }
                    for p in &partitions {
                        assigned.remove(p);
                        gaps.forget(*p);
                    }
                }
            }
        }
        match polled {
            Some(Ok(m)) if assigned.contains(&m.partition()) => {
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
            Some(Ok(_)) => {} // a partition revoked in the meantime
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
        // A long turn of this loop (a rebalance, backpressure, or the process frozen: paused,
        // swapped out) is not idleness: after a freeze the group may have moved the partitions,
        // and the consumer has yet to hear of it.
        if turn_started.elapsed() >= STALL {
            tracing::debug!(source = %c.name, turn_ms = turn_started.elapsed().as_millis() as u64,
                "long read-loop turn; not counted as idle time");
            last_message = Instant::now();
        }
        // Idle only counts while partitions are assigned (not while the group rebalances).
        if buffers.is_empty()
            && !assigned.is_empty()
            && idle_limit.is_some_and(|limit| last_message.elapsed() >= limit)
        {
            break;
        }
    }
    for ((topic, partition), records) in buffers {
        send(c, tx, topic, partition, records)?;
    }
    while let Ok(offsets) = commits.try_recv() {
        commit(&consumer, &offsets);
    }
    // Hand every partition back with a final checkpoint; at the end of input (not on a stop
    // signal) the pipeline may close their windows first.
    let held = consumer.context().lock().assigned.clone();
    let lost = consumer.assignment_lost();
    consumer
        .context()
        .revoke(&consumer, &held, !stop.is_stopped(), lost);
    let _ = consumer.unassign();
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
    fn new() -> Self {
        GapGuard {
            expected: BTreeMap::new(),
            waiting: BTreeMap::new(),
            patience: PATIENCE,
        }
    }

    /// A partition starts at `next` (`None`: at the beginning, whatever offset comes first).
    fn start(&mut self, topic: &str, partition: i32, next: Option<i64>) {
        let key = (topic.to_string(), partition);
        self.waiting.remove(&key);
        match next {
            Some(next) => self.expected.insert(key, next),
            None => self.expected.remove(&key),
        };
    }

    /// The partition was revoked.
    fn forget(&mut self, partition: i32) {
        self.expected.retain(|(_, p), _| *p != partition);
        self.waiting.retain(|(_, p), _| *p != partition);
    }

    /// Whether to take the message at `offset`; `false` after seeking back to a missing one.
    fn accept(
        &mut self,
        consumer: &BaseConsumer<impl ConsumerContext>,
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

fn offset_list(offsets: &BTreeMap<String, i64>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (key, &offset) in offsets {
        if let Some((topic, Ok(partition))) =
            key.rsplit_once(':').map(|(t, p)| (t, p.parse::<i32>()))
        {
            let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(offset));
        }
    }
    tpl
}

/// Commit checkpointed offsets to the group (for lag monitoring; shards resume from their
/// checkpoints). Offsets of partitions this member no longer holds are skipped by the broker.
fn commit(consumer: &BaseConsumer<GroupContext>, offsets: &BTreeMap<String, i64>) {
    let held = consumer.context().lock().assigned.clone();
    let mine: BTreeMap<String, i64> = offsets
        .iter()
        .filter(|(key, _)| {
            key.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<i32>().ok())
                .is_some_and(|p| held.contains(&p))
        })
        .map(|(k, &v)| (k.clone(), v))
        .collect();
    if mine.is_empty() {
        return;
    }
    if let Err(error) = consumer.commit(&offset_list(&mine), CommitMode::Async) {
        tracing::debug!(%error, "committing offsets to the consumer group failed (shards resume from their checkpoints)");
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
    fn properties_add_to_the_consumer_settings_but_not_to_the_fixed_ones() {
        let mut c = KafkaSourceConfig::default();
        c.properties
            .insert("fetch.wait.max.ms".into(), "100".into());
        c.properties
            .insert("session.timeout.ms".into(), "30000".into());
        let client = consumer_config(&c).unwrap();
        assert_eq!(client.get("fetch.wait.max.ms"), Some("100"));
        assert_eq!(client.get("session.timeout.ms"), Some("30000"));
        assert_eq!(client.get("enable.auto.commit"), Some("false"));
        c.properties
            .insert("enable.auto.commit".into(), "true".into());
        let err = consumer_config(&c).unwrap_err().to_string();
        assert!(err.contains("enable.auto.commit"), "{err}");
        let toml = "properties = { \"security.protocol\" = \"ssl\" }";
        let parsed: KafkaSourceConfig = toml::from_str(toml).unwrap();
        assert_eq!(parsed.properties["security.protocol"], "ssl");
    }

    #[test]
    fn a_skipped_offset_is_read_again_and_nothing_is_taken_twice() {
        // No broker: seeks fail (and are logged); the bookkeeping is what is tested.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create()
            .unwrap();
        let mut guard = GapGuard::new();
        guard.start("t", 0, Some(5));
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
        // A revoked partition is forgotten; assigned again at an offset, it expects that one.
        guard.patience = PATIENCE;
        guard.forget(0);
        assert!(
            guard.accept(&consumer, "t", 0, 3),
            "after forget: any offset"
        );
        guard.start("t", 0, Some(10));
        assert!(
            !guard.accept(&consumer, "t", 0, 12),
            "10 and 11 are missing"
        );
        guard.start("t", 0, None);
        assert!(
            guard.accept(&consumer, "t", 0, 12),
            "from the beginning: any offset"
        );
    }
}
