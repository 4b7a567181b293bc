//! The counters behind the metrics (see [`crate::observe`]): a latency histogram (plain, for the pipeline thread's own
//! stages; atomic, for sinks whose inserts finish on other threads) and a sink's meter.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds (seconds) of the latency buckets: 100 us to 10 s; one more bucket is +Inf.
pub const LATENCY_BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
const BUCKETS: usize = LATENCY_BOUNDS.len() + 1;

fn bucket_of(secs: f64) -> usize {
    LATENCY_BOUNDS
        .iter()
        .position(|&b| secs <= b)
        .unwrap_or(LATENCY_BOUNDS.len())
}

/// A latency histogram: observations per bucket (not cumulative), their sum and count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub buckets: [u64; BUCKETS],
    pub sum_secs: f64,
    pub count: u64,
}

impl Latency {
    pub fn observe(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        self.buckets[bucket_of(secs)] += 1;
        self.sum_secs += secs;
        self.count += 1;
    }

    pub fn add(&mut self, other: &Latency) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum_secs += other.sum_secs;
        self.count += other.count;
    }

    /// What was observed after `earlier` (a snapshot of the same histogram).
    pub fn since(&self, earlier: &Latency) -> Latency {
        let mut d = self.clone();
        for (a, b) in d.buckets.iter_mut().zip(&earlier.buckets) {
            *a = a.saturating_sub(*b);
        }
        d.sum_secs = (self.sum_secs - earlier.sum_secs).max(0.0);
        d.count = self.count.saturating_sub(earlier.count);
        d
    }

    /// `(upper bound, observations)` per bucket, +Inf last, as the Prometheus encoder takes them.
    pub fn pairs(&self) -> Vec<(f64, u64)> {
        (LATENCY_BOUNDS.iter().copied().chain([f64::INFINITY]))
            .zip(self.buckets.iter().copied())
            .collect()
    }

    /// The mean in seconds (0 with no observation).
    pub fn mean_secs(&self) -> f64 {
        match self.count {
            0 => 0.0,
            n => self.sum_secs / n as f64,
        }
    }
}

/// A latency histogram updated from any thread.
#[derive(Debug, Default)]
pub struct AtomicLatency {
    buckets: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

impl AtomicLatency {
    pub fn observe(&self, took: Duration) {
        self.buckets[bucket_of(took.as_secs_f64())].fetch_add(1, Relaxed);
        (self.sum_nanos).fetch_add(took.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    pub fn read(&self) -> Latency {
        let mut l = Latency::default();
        for (to, from) in l.buckets.iter_mut().zip(&self.buckets) {
            *to = from.load(Relaxed);
        }
        l.count = l.buckets.iter().sum();
        l.sum_secs = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        l
    }
}

/// What one sink reports: rows it has made durable, how long each write took (an insert, an
/// upload, a delivery wait), what waits, retries, and how long the pipeline was held by it.
#[derive(Debug)]
pub struct SinkMeter {
    pub name: &'static str,
    rows: AtomicU64,
    retries: AtomicU64,
    queued: AtomicI64,
    backpressure_nanos: AtomicU64,
    failing: AtomicBool,
    latency: AtomicLatency,
}

/// A sink's figures at one moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SinkReading {
    pub name: String,
    pub rows: u64,
    pub retries: u64,
    /// Rows (or objects, for the object store) accepted from the pipeline and not yet durable.
    pub queued: i64,
    pub backpressure_secs: f64,
    /// The last attempt failed and is being retried.
    pub failing: bool,
    pub latency: Latency,
}

impl SinkMeter {
    pub fn new(name: &'static str) -> Arc<SinkMeter> {
        Arc::new(SinkMeter {
            name,
            rows: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            queued: AtomicI64::new(0),
            backpressure_nanos: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            latency: AtomicLatency::default(),
        })
    }

    /// `rows` were handed to the sink (queued until durable).
    pub fn queued(&self, rows: usize) {
        self.queued.fetch_add(rows as i64, Relaxed);
    }

    /// `rows` became durable; the write took `took` (retries included).
    pub fn written(&self, rows: usize, took: Duration) {
        self.rows.fetch_add(rows as u64, Relaxed);
        self.queued.fetch_sub(rows as i64, Relaxed);
        self.latency.observe(took);
        self.failing.store(false, Relaxed);
    }

    /// `rows` queued earlier will not be written here (their partition went to another host).
    pub fn forgotten(&self, rows: usize) {
        self.queued.fetch_sub(rows as i64, Relaxed);
    }

    /// A write failed and will be tried again.
    pub fn retry(&self) {
        self.retries.fetch_add(1, Relaxed);
        self.failing.store(true, Relaxed);
    }

    /// The pipeline waited `waited` for this sink (its in-flight limit was reached).
    pub fn held(&self, waited: Duration) {
        (self.backpressure_nanos)
            .fetch_add(waited.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    pub fn read(&self) -> SinkReading {
        SinkReading {
            name: self.name.to_string(),
            rows: self.rows.load(Relaxed),
            retries: self.retries.load(Relaxed),
            queued: self.queued.load(Relaxed),
            backpressure_secs: self.backpressure_nanos.load(Relaxed) as f64 / 1e9,
            failing: self.failing.load(Relaxed),
            latency: self.latency.read(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let mut l = Latency::default();
        l.observe(Duration::from_micros(50));
        l.observe(Duration::from_micros(100));
        l.observe(Duration::from_millis(3));
        l.observe(Duration::from_secs(60));
        assert_eq!(l.buckets[0], 2);
        assert_eq!(l.buckets[5], 1); // 2.5 ms < 3 ms <= 5 ms
        assert_eq!(l.buckets[BUCKETS - 1], 1);
        assert_eq!(l.count, 4);
        let earlier = l.clone();
        l.observe(Duration::from_millis(3));
        let d = l.since(&earlier);
        assert_eq!((d.count, d.buckets[5]), (1, 1));
        assert!((d.sum_secs - 0.003).abs() < 1e-9);
    }

    #[test]
    fn a_sink_meter_counts_what_became_durable() {
        let m = SinkMeter::new("test");
        m.queued(10);
        m.retry();
        assert!(m.read().failing);
        m.written(10, Duration::from_millis(20));
        let r = m.read();
        assert_eq!((r.rows, r.queued, r.retries, r.failing), (10, 0, 1, false));
        assert_eq!(r.latency.count, 1);
    }
}
