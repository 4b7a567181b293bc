//! The consumer group's rebalances: librdkafka calls back inside `poll`; the callback asks the
//! shards' owner to open or close the partitions' shards ([`GroupEvent`]) and waits for the
//! answer, then tells the read loop what changed ([`Applied`]).

use std::collections::BTreeSet;
use std::sync::Mutex;

use crossbeam_channel::Sender;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use super::offset_list;
use crate::sources::{Offsets, TopicPartition};

/// What the consumer group did, told to the owner of the shards (the runner), which replies
/// once it acted. Sent from inside librdkafka's rebalance callback: the consumer waits for the
/// reply, so no batch of these partitions is sent meanwhile.
#[derive(Debug)]
pub enum GroupEvent {
    /// The group gave this host `partitions` of `topics`: open their shards from their
    /// checkpoints and reply with the offset each topic-partition resumes at (absent: the
    /// beginning), or why they could not open.
    Assigned {
        source: String,
        partitions: Vec<i32>,
        topics: Vec<String>,
        reply: Sender<Result<Offsets, String>>,
    },
    /// The group takes `partitions` away: flush, checkpoint and close their shards and reply
    /// with their offsets (to commit). `end_of_input`: the source ended on its own, so windows
    /// may close first (`close_windows_at_end`).
    Revoked {
        source: String,
        partitions: Vec<i32>,
        end_of_input: bool,
        reply: Sender<Offsets>,
    },
    /// The group already gave `partitions` to another host (this one was silent longer than
    /// the session timeout): close them without a checkpoint, which would overwrite the new
    /// owner's, and reply once closed.
    Lost {
        source: String,
        partitions: Vec<i32>,
        reply: Sender<()>,
    },
}

/// What the rebalance callback tells the read loop.
pub(super) enum Applied {
    /// Partitions now read, with the offset each starts at (`None`: the beginning).
    Assigned(Vec<(String, i32, Option<i64>)>),
    Revoked(BTreeSet<i32>),
}

#[derive(Default)]
pub(super) struct GroupState {
    pub(super) assigned: BTreeSet<i32>,
    pub(super) applied: Vec<Applied>,
    pub(super) failure: Option<String>,
}

/// Runs the group's rebalances through the shards' owner (see the module docs).
pub(super) struct GroupContext {
    pub(super) source: String,
    pub(super) brokers: String,
    pub(super) events: Sender<GroupEvent>,
    pub(super) state: Mutex<GroupState>,
    pub(super) high_watermarks: crate::sources::HighWatermarks,
}

impl ClientContext for GroupContext {
    /// Rejected credentials or permissions stop the source (librdkafka would retry forever).
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if super::auth::is_fatal(&error) {
            let mut state = self.lock();
            if state.failure.is_none() {
                state.failure = Some(super::auth::describe(&self.brokers, reason));
            }
        }
        tracing::error!(source = %self.source, %error, reason, "librdkafka error");
    }

    /// librdkafka's statistics: keep the broker's high watermark of each partition fetched.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut marks = self.high_watermarks.lock();
        for (topic, t) in &statistics.topics {
            for (&partition, p) in &t.partitions {
                if partition >= 0 && p.hi_offset >= 0 {
                    marks.insert((topic.clone(), partition), p.hi_offset);
                }
            }
        }
    }
}

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
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Send the shards' owner an event and wait for its answer (`None`: it stopped).
    fn ask<T>(&self, event: impl FnOnce(Sender<T>) -> GroupEvent) -> Option<T> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.events.send(event(reply)).ok()?;
        answer.recv().ok()
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
        let answer = self.ask(|reply| GroupEvent::Assigned {
            source: self.source.clone(),
            partitions: partitions.iter().copied().collect(),
            topics: topics.into_iter().collect(),
            reply,
        });
        let offsets = match answer {
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
            let next = (offsets.get(&TopicPartition::new(topic.as_str(), *partition))).copied();
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
        state.applied.push(Applied::Assigned(started));
    }

    /// Checkpoint and close the shards of `partitions` this member holds, then commit their
    /// offsets. `end_of_input`: the source is done, so the pipeline may close their windows.
    /// `lost`: the group gave them to another member while this one was silent, so they close
    /// without a checkpoint or a commit (both would go behind the new owner's).
    pub(super) fn revoke(
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
        let source = self.source.clone();
        let partitions: Vec<i32> = held.iter().copied().collect();
        if lost {
            let closed = self.ask(|reply| GroupEvent::Lost {
                source,
                partitions,
                reply,
            });
            match closed {
                Some(()) => {
                    tracing::warn!(source = %self.source, partitions = ?held, "partitions lost")
                }
                None => tracing::warn!(source = %self.source, partitions = ?held,
                    "the pipeline stopped before it closed the lost partitions"),
            }
        } else {
            let offsets = self.ask(|reply| GroupEvent::Revoked {
                source,
                partitions,
                end_of_input,
                reply,
            });
            match offsets {
                Some(offsets) => {
                    if !offsets.is_empty() {
                        if let Err(error) =
                            consumer.commit(&offset_list(&offsets), CommitMode::Sync)
                        {
                            tracing::warn!(source = %self.source, %error,
                                "committing the offsets of revoked partitions failed (their checkpoints are saved)");
                        }
                    }
                    tracing::info!(source = %self.source, partitions = ?held, offsets = ?offsets, "partitions revoked");
                }
                None => tracing::warn!(source = %self.source, partitions = ?held,
                    "the pipeline stopped before it checkpointed the revoked partitions; they resume from their last checkpoint"),
            }
        }
        let mut state = self.lock();
        for p in &held {
            state.assigned.remove(p);
        }
        state.applied.push(Applied::Revoked(held));
    }
}
