//! Against a real Kafka-protocol broker (tansu, started here per test on a free port with
//! in-memory storage), a real S3 server (s3s-fs) and ClickHouse: `host simulate` produces the
//! retail topics, `host run` consumes them through the plugins, and the outputs equal those of
//! the same simulated input read directly; a restart resumes from the saved offsets; kill -9,
//! an object-store outage and a ClickHouse outage lose and double nothing. Consumer groups of
//! several hosts: `tests/group.rs`.

mod common;

use common::delivery::*;
use common::services::*;
use common::*;
use shelfstream::sources::{KafkaSourceConfig, SourceConfig};

fn kafka_config(
    data: &std::path::Path,
    brokers: &str,
    close: bool,
    s3: &S3,
) -> shelfstream::config::PipelineConfig {
    let mut c = pipeline_config(data, 0.0, None, close);
    c.sources = vec![SourceConfig::Kafka(KafkaSourceConfig {
        brokers: brokers.into(),
        stop_when_idle: Some("2s".into()),
        ..KafkaSourceConfig::default()
    })];
    c.kafka_sink = Some(shelfstream::sinks::kafka::KafkaSinkConfig {
        brokers: brokers.into(),
        ..Default::default()
    });
    c.raw_store = Some(shelfstream::archive::RawStoreConfig {
        kind: "s3".into(),
        endpoint: Some(s3.endpoint.clone()),
        access_key_id: Some("minioadmin".into()),
        secret_access_key: Some("minioadmin".into()),
        ..Default::default()
    });
    c
}

#[test]
#[ignore = "needs tansu, s3s-fs and ClickHouse: run tests/run.sh"]
fn kafka_in_equals_the_same_events_read_directly_and_restarts_resume() {
    let broker = broker();
    let s3 = s3();
    let reference = tempfile::tempdir().unwrap();
    run_to_end(
        &repo().join("plugins"),
        pipeline_config(reference.path(), 0.0, Some(4_000), true),
        false,
    );

    // First half produced and consumed; the host stops (idle) and saves state and offsets.
    let data = tempfile::tempdir().unwrap();
    simulate(&broker.address, 2_000, 0);
    let first = run_to_end(
        &repo().join("plugins"),
        kafka_config(data.path(), &broker.address, false, &s3),
        false,
    );
    let offsets = &checkpointed_offsets(&s3);
    assert_eq!(
        offsets.values().sum::<i64>() as u64,
        first.records_in,
        "offsets cover every record read"
    );

    // A raw object written after the checkpoint by a host that then crashed: must not survive.
    let next = offsets["retail-sales-transactions:0"];
    plant_raw_object(&s3, "retail-sales-transactions", 0, next, 5);

    // Second half; the next run resumes at the saved offsets and closes the windows at the end.
    simulate(&broker.address, 4_000, 2_000);
    let second = run_to_end(
        &repo().join("plugins"),
        kafka_config(data.path(), &broker.address, true, &s3),
        false,
    );
    assert!(second.records_in > 0);

    for stream in STREAMS {
        let (got, want) = (
            stream_rows(data.path(), stream),
            stream_rows(reference.path(), stream),
        );
        assert!(!want.is_empty(), "{stream}");
        assert_eq!(
            got, want,
            "{stream}: nothing lost, nothing doubled across the restart"
        );
    }
    let dead = stream_rows(data.path(), "dead_letters");
    assert!(
        dead.iter().all(|d| d.contains("\"topic\":\"retail-")),
        "dead letters name the source topic"
    );

    // Raw batches cover every consumed offset exactly once (the orphan was removed at start).
    assert_eq!(
        raw_offsets(&s3.dir.path().join("retail-data")),
        consumed_offsets(&s3)
    );

    // Alerts and dead letters also went back to Kafka, keyed by store:product / source partition.
    let alerts = consume_all(&broker.address, "retail-restock-alerts");
    // Every alert of every stream (low stock, anomalies, shrinkage, reorder points).
    let expected: usize = std::fs::read_dir(data.path().join("out"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .map(|text| {
            text.lines()
                .filter(|l| l.contains("\"kind\":\"alert\""))
                .count()
        })
        .sum();
    assert!(expected > 0);
    assert_eq!(alerts.len(), expected);
    for (key, alert) in &alerts {
        let want = format!(
            "{}:{}",
            alert["store_id"].as_str().unwrap(),
            alert["product_id"].as_str().unwrap()
        );
        assert_eq!(key, &want);
        assert!(alert["rule"].is_string() && alert["_plugin_version"].is_string());
    }
    // The original messages, with the error context in headers (as Kafka Connect's DLQ).
    let letters = consume_messages(&broker.address, "retail-dead-letters");
    assert_eq!(letters.len(), dead.len());
    let header = |m: &Message, name: &str| {
        (m.2.iter()
            .find(|(n, _)| n == &format!("__shelfstream.errors.{name}")))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    assert!(letters.iter().all(|m| {
        header(m, "topic").is_some_and(|t| t.starts_with("retail-"))
            && header(m, "reason").is_some_and(|r| !r.is_empty())
    }));
}

#[test]
#[ignore = "needs tansu, s3s-fs and ClickHouse: run tests/run.sh"]
fn an_end_mark_reads_through_a_silence_and_stops_at_the_producers_last_offset() {
    // sqlite storage: tansu 0.6's in-memory storage answers ListOffsets (latest) with the last
    // record batch's first offset + 1, short of the end whenever a batch holds several records.
    let broker = broker_on_disk();
    let s3 = s3();
    let data = tempfile::tempdir().unwrap();
    simulate(&broker.address, 300, 0);
    let mut config = kafka_config(data.path(), &broker.address, true, &s3);
    let mark = shelfstream::sources::kafka::EndMark::default();
    let SourceConfig::Kafka(source) = &mut config.sources[0] else {
        unreachable!()
    };
    source.stop_when_idle = None;
    source.stop_at = mark.clone();
    let pipeline = std::thread::spawn(move || run_to_end(&repo().join("plugins"), config, false));

    // Six silent seconds (an idle limit of five would end the read here), then the rest.
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert!(!pipeline.is_finished(), "no end mark yet: the read goes on");
    simulate(&broker.address, 600, 300);
    let topics: Vec<String> = (shelfstream::topics::RETAIL.iter())
        .map(|t| t.to_string())
        .collect();
    let ends =
        shelfstream::tools::kafka::end_offsets(&broker.address.as_str().into(), &topics).unwrap();
    // Counted by reading the topics, not from the end offsets the mark is made of.
    let produced: usize = (topics.iter())
        .map(|t| consume_all(&broker.address, t).len())
        .sum();
    assert!(mark.set(ends));
    assert!(
        wait_for(60, || pipeline.is_finished()),
        "the read stops at the mark"
    );
    let report = pipeline.join().unwrap();
    assert_eq!(report.records_in, produced as u64, "every record, once");
    assert_eq!(
        checkpointed_offsets(&s3).values().sum::<i64>(),
        produced as i64,
        "the checkpoints end at the mark"
    );
}

#[test]
#[ignore = "needs tansu, s3s-fs and ClickHouse: run tests/run.sh"]
fn kill_9_mid_stream_loses_and_doubles_nothing_in_clickhouse() {
    let broker = broker();
    let s3 = s3();
    let database = format!("shelfstream_crash_{}", std::process::id());
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("pipeline.toml");
    write_config(&config, &broker.address, &s3, &database);
    // About 27 s of traffic at 6,000 messages/s: every restart (after the group expired the
    // killed member, 6 s) finds new messages. With less (16,000 steps, 4.4 s) a run that caught
    // up and checkpointed before its kill left nothing for the next one.
    let steps = 100_000u64;

    // Reference: the same events read directly (same rate: it sets the event-time spacing).
    let reference = tempfile::tempdir().unwrap();
    run_to_end(
        &repo().join("plugins"),
        pipeline_config(reference.path(), 6_000.0, Some(steps), true),
        false,
    );

    // The producer runs while the host is killed with SIGKILL three times and restarted.
    let producer = produce_live(&broker.address, steps, 6000);
    let host = |close: bool| host_run(&config, data.path(), close);
    std::thread::sleep(std::time::Duration::from_millis(500));
    for round in 0..3 {
        // Kill each run once it has processed batches for a while (after the group gave it the
        // partitions: a restart waits for the group to expire the killed member).
        let batches_before = log_of(data.path())
            .matches("first batch of the partition")
            .count();
        let checkpointed_before = checkpointed_total(&s3);
        let mut child = host(false).spawn().unwrap();
        assert!(
            wait_for(60, || log_of(data.path())
                .matches("first batch of the partition")
                .count()
                > batches_before),
            "run {round} never got a partition:\n{}",
            log_of(data.path())
        );
        // Past a checkpoint of this run (so the next resumes from it; on a busy machine one
        // second is not always enough for the sinks to be durable), then a little further.
        assert!(
            wait_for(60, || checkpointed_total(&s3) > checkpointed_before),
            "run {round} never checkpointed:\n{}",
            log_of(data.path())
        );
        std::thread::sleep(std::time::Duration::from_millis(300 + 400 * round));
        child.kill().unwrap(); // SIGKILL: no drain, no final checkpoint
        child.wait().unwrap();
    }
    producer.join().unwrap();
    assert!(
        host(true).status().unwrap().success(),
        "the final run completes"
    );
    // Every restarted run resumed from a checkpoint of the killed one before it.
    let resumed = log_of(data.path())
        .lines()
        .filter(|l| l.contains("partitions assigned") && l.contains("retail-sales-transactions:"))
        .count();
    assert!(resumed >= 3, "restarts resumed from checkpoints: {resumed}");
    // Kept for a look after a failure: every run's log.
    let _ = std::fs::copy(
        data.path().join("host.log"),
        std::env::temp_dir().join("shelfstream-crash-test-host.log"),
    );

    let sales = stream_rows(reference.path(), "sales").len();
    let minutes = stream_rows(reference.path(), "sales_1m").len();
    assert_eq!(
        clickhouse_query(
            &database,
            "SELECT count(), uniqExact(sale_id) FROM fact_sales FINAL"
        ),
        format!("{sales}\t{sales}")
    );
    assert_eq!(
        clickhouse_query(&database, "SELECT count() FROM spark_sales_metrics FINAL"),
        minutes.to_string()
    );
    let want: f64 = std::fs::read_to_string(reference.path().join("out/sales_1m.ndjson"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["values"][0][1]
                .as_f64()
                .unwrap()
        })
        .sum();
    let got: f64 = clickhouse_query(
        &database,
        "SELECT sum(total_revenue) FROM spark_sales_metrics FINAL",
    )
    .parse()
    .unwrap();
    // This comparison once failed about one run in four: tansu sometimes skips the first offset of
    // a fetch (offsets at multiples of 256 here), so a restarted run lost that message. The Kafka
    // source now re-reads skipped offsets (sources::kafka::GapGuard). On a difference, the test
    // prints the differing windows, their sales lines and the dead letters a clean run lacks.
    eprintln!("window revenue after the crashes {got} vs a clean run's {want}");
    eprintln!(
        "dead letters: {} in ClickHouse ({}), {} in the reference run",
        clickhouse_query(&database, "SELECT count() FROM dead_letters FINAL"),
        clickhouse_query(
            &database,
            "SELECT groupArray(kind) FROM (SELECT DISTINCT kind FROM dead_letters)"
        ),
        stream_rows(reference.path(), "dead_letters").len()
    );
    if (got - want).abs() > 1e-6 {
        // Which windows differ, and what went to the dead letters.
        let reference_rows: std::collections::BTreeMap<String, f64> =
            std::fs::read_to_string(reference.path().join("out/sales_1m.ndjson"))
                .unwrap()
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    let key = format!(
                        "{}\t{}\t{}",
                        v["dimensions"][0][1].as_str().unwrap(),
                        v["dimensions"][1][1].as_str().unwrap(),
                        v["window_start"].as_i64().unwrap() / 1000
                    );
                    (key, v["values"][0][1].as_f64().unwrap())
                })
                .collect();
        let rows = clickhouse_query(&database, "SELECT store_id, product_id, toUnixTimestamp(window_start), total_revenue, _source_offsets FROM spark_sales_metrics FINAL");
        for line in rows.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            let key = format!("{}\t{}\t{}", f[0], f[1], f[2]);
            let got: f64 = f[3].parse().unwrap();
            if (reference_rows[&key] - got).abs() > 1e-6 {
                eprintln!("window {key}: {got} vs {} ({})", reference_rows[&key], f[4]);
                let lines = clickhouse_query(&database, &format!("SELECT sale_id, total_amount, _source_partition, _source_offset, toUnixTimestamp(transaction_time) FROM fact_sales FINAL WHERE store_id = '{}' AND product_id = '{}' AND toStartOfMinute(transaction_time) = toDateTime({}) ORDER BY _source_offset", f[0], f[1], f[2]));
                eprintln!("its sales lines:\n{lines}");
            }
        }
        let reference_dead =
            std::fs::read_to_string(reference.path().join("out/dead_letters.ndjson")).unwrap();
        for line in clickhouse_query(
            &database,
            "SELECT reason, source_topic, source_partition, source_offset FROM dead_letters FINAL",
        )
        .lines()
        {
            let reason = line.split('\t').next().unwrap();
            if !reference_dead.contains(&reason.replace('"', "\\\"")) {
                eprintln!("dead letter not in the reference run: {line}");
            }
        }
        eprintln!(
            "the runs' log: {}",
            std::env::temp_dir()
                .join("shelfstream-crash-test-host.log")
                .display()
        );
    }
    assert!(
        (got - want).abs() < 1e-6,
        "window revenue {got} vs a clean run's {want}"
    );
    clickhouse_query(&database, &format!("DROP DATABASE {database}"));
}

#[test]
#[ignore = "needs tansu, s3s-fs and ClickHouse: run tests/run.sh"]
fn an_object_store_outage_holds_the_pipeline_and_loses_nothing() {
    let broker = broker();
    let mut s3 = s3();
    let database = format!("shelfstream_outage_{}", std::process::id());
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("pipeline.toml");
    write_config(&config, &broker.address, &s3, &database);
    let steps = 12_000u64;
    let reference = tempfile::tempdir().unwrap();
    run_to_end(
        &repo().join("plugins"),
        pipeline_config(reference.path(), 6_000.0, Some(steps), true),
        false,
    );

    let producer = produce_live(&broker.address, steps, 6000);
    let mut host = host_run(&config, data.path(), true).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    s3.stop();
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert!(
        host.try_wait().unwrap().is_none(),
        "the host waits for the store, it does not exit"
    );
    s3.back();
    producer.join().unwrap();
    assert!(host.wait().unwrap().success());

    for stream in ["sales", "sales_1m", "alerts"] {
        assert_eq!(
            stream_rows(data.path(), stream),
            stream_rows(reference.path(), stream),
            "{stream}"
        );
    }
    assert_eq!(
        raw_offsets(&s3.dir.path().join("retail-data")),
        consumed_offsets(&s3)
    );
    clickhouse_query(&database, &format!("DROP DATABASE {database}"));
}

#[test]
#[ignore = "needs tansu, s3s-fs and ClickHouse: run tests/run.sh"]
fn a_clickhouse_outage_holds_the_pipeline_and_loses_nothing() {
    let broker = broker();
    let s3 = s3();
    let mut ch = private_clickhouse();
    let database = "shelfstream_ch_outage";
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("pipeline.toml");
    write_config_for(&config, &broker.address, &s3, &ch.url, database, "3s");
    let steps = 12_000u64;
    let reference = tempfile::tempdir().unwrap();
    run_to_end(
        &repo().join("plugins"),
        pipeline_config(reference.path(), 6_000.0, Some(steps), true),
        false,
    );

    let producer = produce_live(&broker.address, steps, 6000);
    let mut host = host_run(&config, data.path(), true).spawn().unwrap();
    // Stop it mid-stream: once rows have arrived.
    let rows_in = || ch.rows(database, "fact_sales").unwrap_or(0) > 0;
    assert!(wait_for(60, rows_in), "rows reached ClickHouse");
    ch.stop();
    std::thread::sleep(std::time::Duration::from_secs(4));
    let log = || std::fs::read_to_string(data.path().join("host.log")).unwrap_or_default();
    assert!(
        host.try_wait().unwrap().is_none(),
        "the host waits for ClickHouse, it does not exit:\n{}",
        log()
    );
    ch.back();
    producer.join().unwrap();
    assert!(host.wait().unwrap().success());
    assert!(
        log().contains("ClickHouse insert failed; retrying"),
        "the outage was felt:\n{}",
        log()
    );

    for stream in ["sales", "sales_1m", "alerts"] {
        assert_eq!(
            stream_rows(data.path(), stream),
            stream_rows(reference.path(), stream),
            "{stream}"
        );
    }
    let sales = stream_rows(reference.path(), "sales").len();
    let minutes = stream_rows(reference.path(), "sales_1m").len();
    let q = |sql: &str| clickhouse_query_at(&ch.url, database, sql);
    assert_eq!(
        q("SELECT count(), uniqExact(sale_id) FROM fact_sales FINAL"),
        format!("{sales}\t{sales}")
    );
    assert_eq!(
        q("SELECT count() FROM spark_sales_metrics FINAL"),
        minutes.to_string()
    );
}

#[test]
#[ignore = "needs tansu, s3s-fs and ClickHouse: run tests/run.sh"]
fn a_broker_restart_mid_stream_loses_and_doubles_nothing() {
    let mut broker = broker_on_disk();
    let s3 = s3();
    let database = format!("shelfstream_broker_restart_{}", std::process::id());
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("pipeline.toml");
    // Idle longer than the broker is away, so the host does not take the outage for the end:
    // under CI load tansu took about 9 s to come back, and 12 s of idleness ended a run that
    // way before the producer's next message arrived.
    write_config_for(
        &config,
        &broker.address,
        &s3,
        &shared_clickhouse(),
        &database,
        "30s",
    );
    // A session longer than the restart (Kafka's default, 45 s): the group keeps this host's
    // partitions, so nothing is re-read. (With 20 s, a CI run's restart took longer: the
    // partitions were lost and read again from their checkpoint, at least once as documented,
    // and the NDJSON copies held 22 dead letters twice.)
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("session_timeout = \"6s\"", "session_timeout = \"45s\""),
    )
    .unwrap();
    let steps = 12_000u64;
    let reference = tempfile::tempdir().unwrap();
    let reference_run = run_to_end(
        &repo().join("plugins"),
        pipeline_config(reference.path(), 6_000.0, Some(steps), true),
        false,
    );

    let producer = produce_live(&broker.address, steps, 6000);
    let mut host = host_run(&config, data.path(), true).spawn().unwrap();
    assert!(
        wait_for(60, || checkpointed_total(&s3) > 0),
        "the host checkpointed before the restart:\n{}",
        log_of(data.path())
    );
    broker.stop();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        host.try_wait().unwrap().is_none(),
        "the host waits for the broker, it does not exit:\n{}",
        log_of(data.path())
    );
    broker.back();
    producer.join().unwrap();
    assert!(
        host.wait().unwrap().success(),
        "the host completes after the restart:\n{}",
        log_of(data.path())
    );

    let _ = std::fs::copy(
        data.path().join("host.log"),
        std::env::temp_dir().join("shelfstream-broker-restart-host.log"),
    );
    // The simulator's producer (idempotent) wrote every message once through the restart.
    let produced: usize = shelfstream::topics::RETAIL
        .iter()
        .map(|t| consume_all(&broker.address, t).len())
        .sum();
    assert_eq!(produced as u64, reference_run.records_in);
    for stream in STREAMS {
        assert_same_rows(
            &stream_rows(data.path(), stream),
            &stream_rows(reference.path(), stream),
            stream,
        );
    }
    let sales = stream_rows(reference.path(), "sales").len();
    assert_eq!(
        clickhouse_query(
            &database,
            "SELECT count(), uniqExact(sale_id) FROM fact_sales FINAL"
        ),
        format!("{sales}\t{sales}")
    );
    assert_eq!(
        raw_offsets(&s3.dir.path().join("retail-data")),
        consumed_offsets(&s3)
    );
    // The producer side retried through the restart: every alert and dead letter is on its topic.
    let alerts = stream_rows(reference.path(), "alerts").len();
    assert_eq!(
        consume_all(&broker.address, "retail-restock-alerts").len(),
        alerts
    );
    assert_eq!(
        consume_all(&broker.address, "retail-dead-letters").len(),
        stream_rows(reference.path(), "dead_letters").len()
    );
    clickhouse_query(&database, &format!("DROP DATABASE {database}"));
}

#[test]
#[ignore = "needs tansu, s3s-fs and ClickHouse: run tests/run.sh"]
fn a_corrupt_shard_checkpoint_stops_the_host_naming_it_or_is_set_aside_and_read_again() {
    let broker = broker();
    let s3 = s3();
    let database = format!("shelfstream_bad_checkpoint_{}", std::process::id());
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("pipeline.toml");
    write_config(&config, &broker.address, &s3, &database);
    let steps = 3_000;
    let reference = tempfile::tempdir().unwrap();
    run_to_end(
        &repo().join("plugins"),
        pipeline_config(reference.path(), 0.0, Some(steps), true),
        false,
    );
    simulate(&broker.address, steps, 0);
    assert!(host_run(&config, data.path(), false)
        .status()
        .unwrap()
        .success());

    // Truncated in the object store.
    let checkpoints = s3.dir.path().join("retail-data/checkpoints/shelfstream");
    let object = checkpoints.join("partition-1.json.gz");
    let bytes = std::fs::read(&object).unwrap();
    std::fs::write(&object, &bytes[..bytes.len() / 2]).unwrap();

    // Default (stop): the host fails, naming the object and the choices, and leaves it alone.
    let mut run = host_run(&config, data.path(), true).spawn().unwrap();
    assert!(
        wait_for(90, || run.try_wait().unwrap().is_some()),
        "the host stops instead of waiting:\n{}",
        log_of(data.path())
    );
    assert!(!run.wait().unwrap().success());
    let log = log_of(data.path());
    for needle in [
        "corrupt shard checkpoint s3://retail-data/checkpoints/shelfstream/partition-1.json.gz",
        "put back a good copy of the object",
        "runtime.on_bad_state = \"start-empty\"",
    ] {
        assert!(log.contains(needle), "{needle:?} in:\n{log}");
    }
    assert_eq!(std::fs::read(&object).unwrap(), &bytes[..bytes.len() / 2]);

    // start-empty: set aside, partition 1 read again from its beginning, nothing lost or doubled.
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("[runtime]\n", "[runtime]\non_bad_state = \"start-empty\"\n");
    std::fs::write(&config, text).unwrap();
    assert!(
        host_run(&config, data.path(), true)
            .status()
            .unwrap()
            .success(),
        "{}",
        log_of(data.path())
    );
    let aside: Vec<String> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("partition-1.json.gz.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "the corrupt object is kept aside");
    assert!(log_of(data.path()).contains("set aside, the partition is read again"));
    assert_eq!(
        raw_offsets(&s3.dir.path().join("retail-data")),
        consumed_offsets(&s3)
    );
    let sales = stream_rows(reference.path(), "sales").len();
    let minutes = stream_rows(reference.path(), "sales_1m").len();
    assert_eq!(
        clickhouse_query(
            &database,
            "SELECT count(), uniqExact(sale_id) FROM fact_sales FINAL"
        ),
        format!("{sales}\t{sales}")
    );
    assert_eq!(
        clickhouse_query(
            &database,
            "SELECT count() FROM spark_sales_metrics FINAL WHERE metric = 'sales_1m'"
        ),
        minutes.to_string()
    );
    clickhouse_query(&database, &format!("DROP DATABASE {database}"));
}

#[test]
#[ignore = "needs tansu, s3s-fs and ClickHouse: run tests/run.sh"]
fn raw_objects_of_a_host_killed_before_its_first_checkpoint_are_removed() {
    let broker = broker();
    let s3 = s3();
    let database = format!("shelfstream_first_checkpoint_{}", std::process::id());
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("pipeline.toml");
    write_config(&config, &broker.address, &s3, &database);
    simulate(&broker.address, 1_000, 0);
    // What a host killed after storing raw objects of partition 0, before any checkpoint of
    // it, leaves behind: objects from offset 0 that no checkpoint covers.
    plant_raw_object(&s3, "retail-sales-transactions", 0, 0, 5);
    plant_raw_object(&s3, "retail-price-changes", 0, 0, 3);
    assert!(host_run(&config, data.path(), true)
        .status()
        .unwrap()
        .success());
    assert_eq!(
        raw_offsets(&s3.dir.path().join("retail-data")),
        consumed_offsets(&s3),
        "every consumed offset in exactly one raw object"
    );
    clickhouse_query(&database, &format!("DROP DATABASE {database}"));
}

/// The sum of every checkpointed offset: grows with each checkpoint that covers new records.
fn checkpointed_total(s3: &S3) -> i64 {
    checkpoint_offsets_in(s3.dir.path())
        .iter()
        .map(|(_, o)| o)
        .sum()
}
