//! The chaos soak: traffic from `host simulate` (malformed and duplicate messages on) flows the
//! whole time while the host is killed with SIGKILL, the broker restarts on its data, and
//! ClickHouse and the object store go away for a while (outages overlap the other faults), in a
//! random order from a printed seed. At the end every fact table holds each valid event once,
//! every window equals a clean run's, every consumed offset is in exactly one raw object and
//! every malformed message is in the dead letters once; one line of figures is printed.
//!
//! tests/run.sh runs a short version (a few faults of each kind, about 3 minutes); `tests/soak.sh`
//! the long one (20 kills, 5 broker restarts, 5 outages of 30 s of each store).
//! Settings (environment): SOAK_SEED, SOAK_KILLS, SOAK_BROKER_RESTARTS, SOAK_CLICKHOUSE_OUTAGES,
//! SOAK_S3_OUTAGES, SOAK_OUTAGE_SECS, SOAK_RATE (messages/s).

mod common;

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use common::delivery::*;
use common::services::*;
use common::*;

struct Plan {
    seed: u64,
    kills: usize,
    broker_restarts: usize,
    clickhouse_outages: usize,
    s3_outages: usize,
    outage: Duration,
    rate: u32,
}

impl Plan {
    fn from_env() -> Plan {
        let var = |name: &str, default: u64| -> u64 {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.parse()
                        .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
                })
                .unwrap_or(default)
        };
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Plan {
            seed: var("SOAK_SEED", clock % 1_000_000),
            kills: var("SOAK_KILLS", 3) as usize,
            broker_restarts: var("SOAK_BROKER_RESTARTS", 2) as usize,
            clickhouse_outages: var("SOAK_CLICKHOUSE_OUTAGES", 2) as usize,
            s3_outages: var("SOAK_S3_OUTAGES", 2) as usize,
            outage: Duration::from_secs(var("SOAK_OUTAGE_SECS", 5)),
            rate: var("SOAK_RATE", 1000) as u32,
        }
    }

    /// The faults in a random order.
    fn faults(&self, rng: &mut Rng) -> Vec<Fault> {
        let mut faults: Vec<Fault> = [
            (Fault::Kill, self.kills),
            (Fault::BrokerRestart, self.broker_restarts),
            (Fault::ClickHouseOutage, self.clickhouse_outages),
            (Fault::S3Outage, self.s3_outages),
        ]
        .into_iter()
        .flat_map(|(f, n)| std::iter::repeat_n(f, n))
        .collect();
        for i in (1..faults.len()).rev() {
            faults.swap(i, rng.below(i as u64 + 1) as usize);
        }
        faults
    }

    /// Seconds of traffic to cover the faults (a killed host's successor waits for its session
    /// to expire and loads the plugins; outages overlap the next faults).
    fn traffic_secs(&self) -> u64 {
        let outages = (self.clickhouse_outages + self.s3_outages) as u64;
        15 + 16 * self.kills as u64
            + 8 * self.broker_restarts as u64
            + outages * (self.outage.as_secs() / 2 + 4)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Kill,
    BrokerRestart,
    ClickHouseOutage,
    S3Outage,
}

/// xorshift64*: the schedule follows from the printed seed alone.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

#[test]
#[ignore = "needs tansu, s3s-fs and ClickHouse: run tests/run.sh (short) or tests/soak.sh (long)"]
fn chaos_soak() {
    let plan = Plan::from_env();
    let mut rng = Rng(plan.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let faults = plan.faults(&mut rng);
    let steps = plan.rate as u64 * plan.traffic_secs();
    eprintln!(
        "soak seed={} (replay with SOAK_SEED={}): {} faults {:?}, {} steps at {} messages/s",
        plan.seed,
        plan.seed,
        faults.len(),
        faults,
        steps,
        plan.rate
    );
    let started = Instant::now();

    let mut broker = broker_on_disk();
    let s3 = s3();
    let ch = private_clickhouse();
    let database = "shelfstream_soak";
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("pipeline.toml");
    // A host stops 20 s after the last message: longer than any broker restart, so only the
    // end of the traffic ends a run.
    write_config_for(&config, &broker.address, &s3, &ch.url, database, "20s");

    let reference = tempfile::tempdir().unwrap();
    let reference_run = run_to_end(
        &repo().join("plugins"),
        pipeline_config(reference.path(), plan.rate as f64, Some(steps), true),
        false,
    );

    let producer = produce_live(&broker.address, steps, plan.rate);
    let mut host = Host::start(&config, data.path());
    let mut injected: BTreeMap<Fault, usize> = BTreeMap::new();
    let mut outages = Outages {
        ch,
        s3,
        ch_back_at: None,
        s3_back_at: None,
    };
    for fault in faults {
        std::thread::sleep(rng.millis(1_000, 4_000));
        outages.end(false);
        match fault {
            Fault::Kill => {
                host.wait_for_partitions(&mut outages, &mut broker);
                std::thread::sleep(rng.millis(200, 3_000));
                host.kill();
                host = Host::start(&config, data.path());
            }
            Fault::BrokerRestart => {
                broker.stop();
                std::thread::sleep(rng.millis(500, 3_000));
                broker.back();
            }
            Fault::ClickHouseOutage => outages.clickhouse(plan.outage),
            Fault::S3Outage => outages.s3(plan.outage),
        }
        *injected.entry(fault).or_default() += 1;
        host.assert_running();
    }
    outages.end(true);
    let Outages { ch, s3, .. } = outages;
    let produced_by = started.elapsed();
    producer.join().unwrap();
    let traffic_ended = started.elapsed();
    host.wait_for_end();
    let wall = started.elapsed();

    // Every produced message was consumed, and is in exactly one raw object.
    let consumed = consumed_offsets(&s3);
    assert_eq!(
        consumed.len() as u64,
        reference_run.records_in,
        "every produced message consumed (seed {})",
        plan.seed
    );
    let names = |offsets: &[(String, i32, i64)]| -> Vec<String> {
        offsets
            .iter()
            .map(|(t, p, o)| format!("{t}:{p}@{o:09}"))
            .collect()
    };
    assert_same_rows(
        &names(&raw_offsets(&s3.dir.path().join("retail-data"))),
        &names(&consumed),
        &format!(
            "offsets in raw objects against consumed offsets (seed {})",
            plan.seed
        ),
    );

    let q = |sql: &str| clickhouse_query_at(&ch.url, database, sql);
    // Fact tables: each valid event once.
    let mut rows_in_clickhouse = 0;
    let mut merged_away = 0;
    let (mut duplicates, mut missing) = (0i64, 0i64);
    for (table, id, stream) in [
        ("fact_sales", "sale_id", "sales"),
        ("fact_inventory", "update_id", "inventory"),
    ] {
        let want = stream_rows(reference.path(), stream).len() as i64;
        let got: Vec<i64> = q(&format!(
            "SELECT count(), uniqExact({id}), (SELECT count() FROM {table}) FROM {table} FINAL"
        ))
        .split('\t')
        .map(|v| v.parse().unwrap())
        .collect();
        let (rows, unique, physical) = (got[0], got[1], got[2]);
        rows_in_clickhouse += rows;
        merged_away += physical - rows;
        duplicates += rows - unique;
        missing += want - unique;
        assert_eq!(
            (rows, unique),
            (want, want),
            "{table}: count() and uniqExact({id}) against the valid events (seed {})",
            plan.seed
        );
    }
    // Windows: each equals the clean run's.
    let windows = |stream: &str, key: &[&str], value: &str| -> BTreeMap<String, f64> {
        std::fs::read_to_string(
            reference
                .path()
                .join("out")
                .join(format!("{stream}.ndjson")),
        )
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let dims: BTreeMap<&str, &str> = v["dimensions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| (d[0].as_str().unwrap(), d[1].as_str().unwrap()))
                .collect();
            let mut k: Vec<String> = key.iter().map(|k| dims[k].to_string()).collect();
            k.push((v["window_start"].as_i64().unwrap() / 1000).to_string());
            let val = v["values"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x[0] == value)
                .unwrap()[1]
                .as_f64()
                .unwrap();
            (k.join("\t"), val)
        })
        .collect()
    };
    for (table, stream, key, value, column) in [
        (
            "spark_sales_metrics",
            "sales_1m",
            ["store_id", "product_id"],
            "total_revenue",
            "total_revenue",
        ),
        (
            "spark_inventory_metrics",
            "inventory_1m",
            ["store_id", "product_id"],
            "latest_stock",
            "latest_stock",
        ),
    ] {
        let want = windows(stream, &key, value);
        let got: BTreeMap<String, f64> = q(&format!(
            "SELECT {k}, toUnixTimestamp(window_start), {column} FROM {table} FINAL WHERE metric = '{stream}'",
            k = key.join(", ")
        ))
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once('\t').unwrap();
            (k.to_string(), v.parse::<f64>().unwrap())
        })
        .collect();
        let differing: Vec<_> = want
            .iter()
            // Equal up to float noise (a sum of cents that is 0 can come out as -0 after a
            // replay: a window read again in another order).
            .filter(|(k, v)| {
                got.get(*k)
                    .is_none_or(|g| (g - *v).abs() > 1e-9 * v.abs().max(1.0))
            })
            .take(3)
            .collect();
        assert!(
            got.len() == want.len() && differing.is_empty(),
            "{table}: {} windows, a clean run {}; first differing: {differing:?} (seed {})",
            got.len(),
            want.len(),
            plan.seed
        );
    }
    // Malformed messages: each in the dead letters once.
    let malformed = stream_rows(reference.path(), "dead_letters").len() as i64;
    let letters: Vec<i64> = q("SELECT count(), uniqExact(source_topic, source_partition, source_offset) FROM dead_letters FINAL")
        .split('\t')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(
        letters,
        vec![malformed, malformed],
        "dead letters: each malformed message once (seed {})",
        plan.seed
    );
    let alerts = consume_all(&broker.address, "retail-restock-alerts").len();
    eprintln!(
        "soak seed={} faults kill={} broker_restart={} clickhouse_outage={} s3_outage={} outage_s={} | events_produced={} valid_rows_expected={} rows_in_clickhouse={} duplicates={} missing={} redelivered_rows_merged={} dead_letters={} alerts_in_topic={} (clean run {}) | faults_done_s={} traffic_s={} wall_s={}",
        plan.seed,
        injected.get(&Fault::Kill).unwrap_or(&0),
        injected.get(&Fault::BrokerRestart).unwrap_or(&0),
        injected.get(&Fault::ClickHouseOutage).unwrap_or(&0),
        injected.get(&Fault::S3Outage).unwrap_or(&0),
        plan.outage.as_secs(),
        reference_run.records_in,
        rows_in_clickhouse - duplicates + missing,
        rows_in_clickhouse,
        duplicates,
        missing,
        merged_away,
        letters[0],
        alerts,
        stream_rows(reference.path(), "alerts").len(),
        produced_by.as_secs(),
        traffic_ended.as_secs(),
        wall.as_secs()
    );
}

/// ClickHouse and the object store, each away until its `*_back_at` (outages overlap the other
/// faults; a new outage of a service that is away starts when the old one ends).
struct Outages {
    ch: PrivateClickHouse,
    s3: S3,
    ch_back_at: Option<Instant>,
    s3_back_at: Option<Instant>,
}

impl Outages {
    fn clickhouse(&mut self, length: Duration) {
        if self.ch_back_at.take().is_some() {
            self.ch.back();
        }
        self.ch.stop();
        self.ch_back_at = Some(Instant::now() + length);
    }

    fn s3(&mut self, length: Duration) {
        if self.s3_back_at.take().is_some() {
            self.s3.back();
        }
        self.s3.stop();
        self.s3_back_at = Some(Instant::now() + length);
    }

    /// Bring back the services whose outage is over (`all`: wait for every outage to end).
    fn end(&mut self, all: bool) {
        if let Some(at) = self.ch_back_at {
            if all || Instant::now() >= at {
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                self.ch.back();
                self.ch_back_at = None;
            }
        }
        if let Some(at) = self.s3_back_at {
            if all || Instant::now() >= at {
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                self.s3.back();
                self.s3_back_at = None;
            }
        }
    }
}

/// One `host run` process (windows closed when its input ends), its log in `data/host.log`.
struct Host {
    child: Child,
    data: std::path::PathBuf,
    /// "partitions assigned" lines in the log when it started.
    assigned_before: usize,
}

impl Host {
    fn start(config: &std::path::Path, data: &std::path::Path) -> Host {
        let assigned_before = assignments(data);
        let child = host_run(config, data, true).spawn().unwrap();
        Host {
            child,
            data: data.to_path_buf(),
            assigned_before,
        }
    }

    /// Wait until the group gave this run its partitions (after the previous run's session
    /// expired), so that the next kill interrupts work.
    fn wait_for_partitions(&mut self, outages: &mut Outages, broker: &mut Broker) {
        let got = wait_for(120, || {
            outages.end(false); // a run opening its partitions may wait for the object store
            self.assert_running();
            if let Some(status) = broker.exited() {
                let log = std::fs::read_to_string(tansu_log_path(&broker.address));
                panic!(
                    "tansu exited on its own ({status}):\n{}",
                    log.unwrap_or_default()
                );
            }
            assignments(&self.data) > self.assigned_before
        });
        assert!(got, "the host never got partitions:\n{}", self.tail());
    }

    fn kill(&mut self) {
        self.child.kill().unwrap(); // SIGKILL: no drain, no final checkpoint
        self.child.wait().unwrap();
    }

    /// The host must not exit before the traffic ends (not idle, not failed).
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("the host exited ({status}) mid-soak:\n{}", self.tail());
        }
    }

    fn wait_for_end(&mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the last run failed:\n{}", self.tail());
    }

    fn tail(&self) -> String {
        let log = log_of(&self.data);
        let lines: Vec<&str> = log.lines().collect();
        let kept = std::env::temp_dir().join("shelfstream-soak-host.log");
        let _ = std::fs::write(&kept, &log);
        format!(
            "{}\n(whole log: {})",
            lines[lines.len().saturating_sub(40)..].join("\n"),
            kept.display()
        )
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assignments(data: &std::path::Path) -> usize {
    log_of(data).matches("partitions assigned").count()
}
