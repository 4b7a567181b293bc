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
//! before the source moves on ([`gaps`]).
//!
//! The group's assignments and revocations reach the shards' owner as [`GroupEvent`]s on the
//! source's own channel ([`Source::group`]); see [`group`].

pub mod auth;
mod end;
mod gaps;
mod group;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::Deserialize;

use super::{
    Group, Offsets, Position, Source, SourceBatch, SourceEvent, StopFlag, TopicPartition, LINGER,
};
use crate::plugin::RawRecord;
pub use end::EndMark;
use gaps::GapGuard;
pub use group::GroupEvent;
use group::{Applied, GroupContext, GroupState};

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
    /// Stop once every assigned partition is read up to the offsets this mark is set to while
    /// the source runs (`host demo` sets them when its producer is done); not from a file.
    #[serde(skip)]
    pub stop_at: EndMark,
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
            topics: crate::topics::RETAIL
                .iter()
                .map(|t| t.to_string())
                .collect(),
            stop_when_idle: None,
            stop_at: EndMark::default(),
            session_timeout: "10s".into(),
            properties: Default::default(),
        }
    }
}

/// A read-loop turn longer than this does not count as idle time (see the read loop).
const STALL: Duration = Duration::from_secs(2);

/// The consumer's librdkafka settings: the host's, then the source's `properties` (which may
/// not touch the ones offset handling and rebalancing depend on).
fn consumer_config(c: &KafkaSourceConfig) -> anyhow::Result<ClientConfig> {
    let session_ms = crate::units::parse_duration(&c.session_timeout)
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
        .set("heartbeat.interval.ms", (session_ms / 4).to_string())
        .set("statistics.interval.ms", "1000"); // high watermarks, for the lag metric
    for (key, value) in &c.properties {
        client.set(key, value);
    }
    Ok(client)
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

/// A member of the consumer group (see the module docs).
pub struct KafkaSource {
    config: KafkaSourceConfig,
    batch_size: usize,
    events: Sender<GroupEvent>,
    /// Handed out by [`Source::group`].
    group: Option<Group>,
    commits: Receiver<Offsets>,
    high_watermarks: super::HighWatermarks,
}

impl KafkaSource {
    pub fn new(config: KafkaSourceConfig, batch_size: usize) -> Self {
        let (events, events_rx) = crossbeam_channel::bounded(1);
        let (commits_tx, commits) = crossbeam_channel::unbounded();
        let high_watermarks = super::HighWatermarks::default();
        KafkaSource {
            config,
            batch_size: batch_size.max(1),
            events,
            group: Some(Group {
                events: events_rx,
                commits: commits_tx,
                high_watermarks: high_watermarks.clone(),
            }),
            commits,
            high_watermarks,
        }
    }
}

impl Source for KafkaSource {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn group(&mut self) -> Option<Group> {
        self.group.take()
    }

    fn run(self: Box<Self>, out: &Sender<SourceEvent>, stop: &StopFlag) -> anyhow::Result<()> {
        let KafkaSource {
            config,
            batch_size,
            events,
            group,
            commits,
            high_watermarks,
        } = *self;
        if group.is_some() {
            anyhow::bail!(
                "source {}: nobody owns the shards of its consumer group",
                config.name
            );
        }
        read(
            &config,
            batch_size,
            out,
            stop,
            (events, high_watermarks),
            &commits,
        )
    }
}

fn read(
    c: &KafkaSourceConfig,
    batch_size: usize,
    tx: &Sender<SourceEvent>,
    stop: &StopFlag,
    (events, high_watermarks): (Sender<GroupEvent>, super::HighWatermarks),
    commits: &Receiver<Offsets>,
) -> anyhow::Result<()> {
    let context = GroupContext {
        source: c.name.clone(),
        brokers: c.brokers.clone(),
        events,
        high_watermarks,
        state: Mutex::new(GroupState::default()),
    };
    let client = consumer_config(c)?;
    let consumer: BaseConsumer<GroupContext> = client
        .create_with_context(context)
        .with_context(|| format!("creating a Kafka consumer for {}", c.brokers))?;
    // Refused credentials fail here with the reason, instead of a consumer that waits forever.
    auth::connect(
        consumer.client(),
        || {
            // Nothing is assigned yet: a poll serves the error events only.
            let _ = consumer.poll(Duration::ZERO);
            consumer.context().lock().failure.clone()
        },
        &c.brokers,
        Duration::from_secs(15),
    )
    .map_err(anyhow::Error::msg)?;
    partitions_of(&consumer, c)?;
    let topics: Vec<&str> = c.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .with_context(|| format!("subscribing group {} to {topics:?}", c.group_id))?;
    tracing::info!(source = %c.name, group = %c.group_id, "Kafka source joined its consumer group");

    let idle_limit = c
        .stop_when_idle
        .as_deref()
        .map(crate::units::parse_duration)
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
        // One clock read per turn for the message path (each read is a vDSO call: five per
        // message were 3.5% of the e2e bench's CPU).
        let now = Instant::now();
        // Rebalances run inside poll: apply what they changed before taking the message.
        let events = {
            let mut state = consumer.context().lock();
            if let Some(failure) = state.failure.take() {
                anyhow::bail!(failure);
            }
            std::mem::take(&mut state.applied)
        };
        for event in events {
            last_message = now;
            match event {
                Applied::Assigned(started) => {
                    for (topic, partition, next) in started {
                        assigned.insert(partition);
                        gaps.start(&topic, partition, next);
                    }
                }
                Applied::Revoked(partitions) => {
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
                last_message = now;
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
                    headers: headers_of(&m),
                };
                let key = (record.topic.clone(), record.partition);
                let buffer = buffers.entry(key.clone()).or_default();
                buffer.push(record);
                oldest.get_or_insert(now);
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
        if oldest.is_some_and(|t| now.duration_since(t) >= LINGER) {
            for ((topic, partition), records) in std::mem::take(&mut buffers) {
                send(c, tx, topic, partition, records)?;
            }
            oldest = None;
            last_message = Instant::now(); // time blocked on backpressure is not idle time
        }
        // Idle only counts while partitions are assigned (not while the group rebalances) and
        // nothing is buffered (whatever empties the buffers resets `last_message`).
        if let Some(limit) = idle_limit.filter(|_| buffers.is_empty() && !assigned.is_empty()) {
            // A long turn of this loop (a rebalance, backpressure, or the process frozen:
            // paused, swapped out) is not idleness: after a freeze the group may have moved the
            // partitions, and the consumer has yet to hear of it.
            let end = Instant::now();
            let turn = end.duration_since(turn_started);
            if turn >= STALL {
                tracing::debug!(source = %c.name, turn_ms = turn.as_millis() as u64,
                    "long read-loop turn; not counted as idle time");
                last_message = end;
            }
            if end.duration_since(last_message) >= limit {
                break;
            }
        }
        if let Some(ends) = c.stop_at.get().filter(|_| buffers.is_empty()) {
            if end::reached(ends, &assigned, &c.topics, &gaps, &consumer) {
                tracing::info!(source = %c.name, "read every assigned partition to its end mark");
                break;
            }
            tracing::trace!(source = %c.name,
                behind = ?end::behind(ends, &assigned, &c.topics, &gaps).collect::<Vec<_>>(),
                "short of the end mark");
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

fn send(
    c: &KafkaSourceConfig,
    tx: &Sender<SourceEvent>,
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
        position: Position::Offset {
            partition: TopicPartition::new(topic, partition),
            next,
        },
    };
    tx.send(SourceEvent::Batch(batch))
        .map_err(|_| anyhow::anyhow!("pipeline stopped"))
}

fn offset_list(offsets: &Offsets) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (tp, &offset) in offsets {
        let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(offset));
    }
    tpl
}

/// Commit checkpointed offsets to the group (for lag monitoring; shards resume from their
/// checkpoints). Offsets of partitions this member no longer holds are skipped.
fn commit(consumer: &BaseConsumer<GroupContext>, offsets: &Offsets) {
    let held = consumer.context().lock().assigned.clone();
    let mine: Offsets = offsets
        .iter()
        .filter(|(tp, _)| held.contains(&tp.partition))
        .map(|(tp, &v)| (tp.clone(), v))
        .collect();
    if mine.is_empty() {
        return;
    }
    if let Err(error) = consumer.commit(&offset_list(&mine), CommitMode::Async) {
        tracing::debug!(%error, "committing offsets to the consumer group failed (shards resume from their checkpoints)");
    }
}

/// A message's headers as (name, value) pairs; a header without a value has an empty one.
pub fn headers_of<M: rdkafka::Message>(m: &M) -> Vec<(String, Vec<u8>)> {
    use rdkafka::message::Headers;
    m.headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
