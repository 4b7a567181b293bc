//! Dead letters that can be re-driven, against the real broker, S3 server and ClickHouse: a
//! dead letter keeps the original message (key, payload bytes, headers) with the error context
//! in Kafka headers, and `host replay --dead-letters` runs the rejected records through a fixed
//! cleaner into the live tables, once however often it runs.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::delivery::*;
use common::services::*;
use common::*;
use shelfstream::plugin::RawRecord;

const SALES: &str = "retail-sales-transactions";

fn host(args: &[&str], dir: &Path) -> Output {
    Command::new(host_binary())
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn transaction(n: usize, quantity: i32) -> String {
    serde_json::json!({
        "transaction_id": format!("TX-{n:04}"),
        "store_id": "S001",
        "customer_id": "C0001",
        "payment_method": "card",
        "timestamp": format!("2026-11-22T10:{:02}:00Z", n % 60),
        "items": [{"product_id": "SKU-00001", "quantity": quantity, "unit_price": 2.5}]
    })
    .to_string()
}

fn header<'a>(m: &'a Message, name: &str) -> &'a [u8] {
    let (_, v) = (m.2.iter().find(|(n, _)| n == name))
        .unwrap_or_else(|| panic!("no header {name} in {:?}", m.2));
    v
}

/// `host run` of the simulator with `clean-sales` limited to `max_quantity`; its data folder.
fn simulator_run(dir: &Path, name: &str, max_quantity: u32) -> std::path::PathBuf {
    let base = std::fs::read_to_string(repo().join("host/pipeline.toml")).unwrap();
    let config = dir.join(format!("{name}.toml"));
    // One start for both runs: by default the simulator starts at the current minute, and the
    // two runs straddled a minute now and then (the same number of sales, other timestamps).
    let limited = (base.replace(
        "params = { max_quantity = 1000,",
        &format!("params = {{ max_quantity = {max_quantity},"),
    ))
    .replace(
        "# start = \"2026-11-22T00:00:00Z\"",
        "start = \"2026-11-22T00:00:00Z\"",
    );
    assert!(limited != base || max_quantity == 1000);
    std::fs::write(&config, limited).unwrap();
    let data = dir.join(name);
    ok(
        host(
            &[
                "run",
                "--max-events",
                "4000",
                "--rate",
                "0",
                "--close-windows-at-end",
                "--no-watch",
                "--quiet",
                "--http",
                "off",
                "--plugins",
                &repo().join("plugins").display().to_string(),
                "--config",
                &config.display().to_string(),
                "--data-dir",
                &data.display().to_string(),
            ],
            dir,
        ),
        "host run",
    );
    data
}

/// The `sales` rows of a folder without provenance, sorted.
fn sales(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path.join("sales.ndjson")).unwrap_or_default();
    let mut rows: Vec<String> = (text.lines())
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut()
                .unwrap()
                .retain(|k, _| !k.starts_with('_'));
            v.to_string()
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn a_file_of_dead_letters_re_driven_with_the_fix_gives_the_sales_a_run_without_the_bug_keeps() {
    if !components_built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let buggy = simulator_run(dir.path(), "buggy", 2);
    let right = simulator_run(dir.path(), "right", 1000);
    let letters = buggy.join("out/dead_letters.ndjson");
    let over_limit = (std::fs::read_to_string(&letters).unwrap().lines())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|d| {
            // "items[i].quantity: N is outside ±1..2": over the limit, not the invalid 0.
            let reason = d["reason"].as_str().unwrap();
            let quantity = (reason.split_once("quantity: "))
                .and_then(|(_, rest)| rest.split(' ').next()?.parse::<i64>().ok());
            d["stage"] == "clean-sales" && quantity.is_some_and(|q| q.abs() > 2)
        })
        .count();
    assert!(
        over_limit > 50,
        "the limit of 2 rejected sales: {over_limit}"
    );

    let out = ok(
        host(
            &[
                "replay",
                "--plugins",
                &repo().join("plugins").display().to_string(),
                "--config",
                &dir.path().join("buggy.toml").display().to_string(),
                "--data-dir",
                &buggy.display().to_string(),
                "--dead-letters",
                &letters.display().to_string(),
                "--params",
                "clean-sales.max_quantity=1000",
                "--id",
                "fix",
                "--quiet",
            ],
            dir.path(),
        ),
        "host replay --dead-letters FILE",
    );
    assert!(
        out.contains(&format!("{over_limit} recovered")),
        "every sale over the limit, and only those: {out}"
    );
    // The buggy run's sales and the recovered ones are the sales of a run without the bug.
    let mut recovered = sales(&buggy.join("out"));
    recovered.extend(sales(&buggy.join("replays/fix")));
    recovered.sort();
    let want = sales(&right.join("out"));
    assert_eq!(recovered.len(), want.len());
    assert!(recovered == want, "the same sale lines");
    // A file says nothing of when a letter was recorded: a range is refused.
    let err = host(
        &[
            "replay",
            "--plugins",
            &repo().join("plugins").display().to_string(),
            "--data-dir",
            &buggy.display().to_string(),
            "--dead-letters",
            &letters.display().to_string(),
            "--from",
            "2026-11-22",
        ],
        dir.path(),
    );
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("--from and --to need kafka or clickhouse")
    );
}

#[test]
#[ignore = "needs tansu, s3s-fs and ClickHouse: run tests/run.sh"]
fn rejected_records_keep_their_message_and_a_fixed_cleaner_recovers_them_once() {
    let broker = broker();
    let s3 = s3();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let database = format!("redrive_{}", std::process::id());
    let config = dir.path().join("pipeline.toml");
    write_config(&config, &broker.address, &s3, &database);
    // The bug to fix: a limit of 5 units a line rejects real sales of 7.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "params = { max_quantity = 1000,",
            "params = { max_quantity = 5,",
        ),
    )
    .unwrap();

    // 30 good sales, 8 of 7 units, one payload that is not UTF-8, one that is not JSON.
    let kafka = shelfstream::tools::kafka::Connection::from(broker.address.as_str());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(shelfstream::tools::kafka::create_topics(&kafka, 1))
        .unwrap();
    let producer = shelfstream::tools::kafka::RecordProducer::new(&kafka).unwrap();
    let binary = vec![0xff, 0xfe, 0x00, 0x7b];
    let mut payloads: Vec<Vec<u8>> = (0..38)
        .map(|n| transaction(n, if n % 5 == 4 && n < 40 { 7 } else { 2 }).into_bytes())
        .collect();
    let big: usize = (0..38).filter(|n| n % 5 == 4).count();
    assert_eq!(big, 7);
    payloads.push(transaction(38, 7).into_bytes()); // the eighth
    payloads.push(binary.clone());
    payloads.push(b"{\"transaction_id\": ".to_vec());
    for (offset, payload) in payloads.iter().enumerate() {
        let key = match payload == &binary {
            true => vec![0x80, 0x01],
            false => b"S001".to_vec(),
        };
        producer
            .send(&RawRecord {
                topic: SALES.into(),
                partition: 0,
                offset: offset as i64,
                key: Some(key),
                payload: payload.clone(),
                timestamp: shelfstream::units::now_ms(),
                headers: vec![
                    ("trace-id".into(), format!("t-{offset}").into_bytes()),
                    ("raw".into(), vec![0xc0, 0x01]),
                ],
            })
            .unwrap();
    }
    producer.flush().unwrap();
    let status = host_run(&config, &data, true).status().unwrap();
    assert!(status.success(), "host run: {}", log_of(&data));

    // The dead-letter topic: the original messages with the context in headers.
    let letters = consume_messages(&broker.address, "retail-dead-letters");
    assert_eq!(
        letters.len(),
        10,
        "8 over the limit, 1 not UTF-8, 1 not JSON"
    );
    let bin = (letters.iter())
        .find(|m| m.1 == binary)
        .expect("the non-UTF-8 payload, byte for byte");
    assert_eq!(bin.0.as_deref(), Some(&[0x80, 0x01][..]), "its key");
    assert_eq!(header(bin, "trace-id"), b"t-39", "its own headers");
    assert_eq!(header(bin, "raw"), [0xc0, 0x01]);
    for (name, want) in [
        ("topic", SALES.as_bytes()),
        ("partition", b"0"),
        ("offset", b"39"),
        ("stage", b"clean-sales"),
        ("plugin", b"sales-cleaner"),
        ("record", b"raw"),
    ] {
        assert_eq!(
            header(bin, &format!("__shelfstream.errors.{name}")),
            want,
            "{name}"
        );
    }
    assert!(!header(bin, "__shelfstream.errors.reason").is_empty());
    assert!(!header(bin, "__shelfstream.errors.plugin.version").is_empty());
    let over: Vec<&Message> = (letters.iter())
        .filter(|m| {
            String::from_utf8_lossy(header(m, "__shelfstream.errors.reason")).contains("quantity")
        })
        .collect();
    assert_eq!(over.len(), 8);
    assert!(over.iter().all(|m| m.0.as_deref() == Some(b"S001")));

    // The table keeps the same, bytes that are not UTF-8 as base64.
    let q = |sql: &str| clickhouse_query(&database, sql).trim().to_string();
    assert_eq!(q("SELECT count() FROM dead_letters FINAL"), "10");
    assert_eq!(
        q("SELECT record, record_key, key_base64, payload_base64 FROM dead_letters FINAL WHERE source_offset = 39"),
        "//4Aew==\tgAE=\t1\t1"
    );
    assert!(q("SELECT headers FROM dead_letters FINAL WHERE source_offset = 39").contains("t-39"));
    let live_sales = "SELECT count() FROM fact_sales FINAL";
    assert_eq!(q(live_sales), "31");
    let (cfg, data_arg) = (config.display().to_string(), data.display().to_string());
    let plugins_arg = repo().join("plugins").display().to_string();

    // The archive kept the exact bytes too: a replay of it through the same cleaner rejects the
    // same 10 messages, the binary one with its key, payload and headers as they were live.
    let common = [
        "--config",
        &cfg,
        "--plugins",
        &plugins_arg,
        "--data-dir",
        &data_arg,
    ];
    let args = [&["replay", "--id", "archived", "--quiet"][..], &common].concat();
    ok(host(&args, dir.path()), "host replay of the archive");
    let replayed =
        std::fs::read_to_string(data.join("replays/archived/dead_letters.ndjson")).unwrap();
    assert_eq!(replayed.lines().count(), 10, "{replayed}");
    let bin: serde_json::Value = (replayed.lines())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|d| d["payload_base64"] == true)
        .expect("the non-UTF-8 payload, as base64");
    assert_eq!(bin["record"], "//4Aew==", "{bin}");
    assert_eq!(
        (&bin["key"], &bin["key_base64"]),
        (&"gAE=".into(), &true.into())
    );
    let headers = bin["headers"].to_string();
    assert!(
        headers.contains("t-39") && headers.contains("wAE="),
        "{headers}"
    );

    // The fix: a new version of the cleaner with a limit that fits.
    let fixed = dir.path().join("sales-cleaner-fixed.wasm");
    std::fs::write(&fixed, new_version_of(&plugin("sales-cleaner"), "fixed")).unwrap();
    let fixed_arg = format!("clean-sales={}", fixed.display());
    let redrive = |source: &str, id: &str| {
        ok(
            host(
                &[
                    &["replay"][..],
                    &common,
                    &["--dead-letters", source, "--plugin", &fixed_arg],
                    &["--params", "clean-sales.max_quantity=1000"],
                    &["--recover", "--quiet", "--id", id],
                ]
                .concat(),
                dir.path(),
            ),
            "host replay --dead-letters",
        )
    };
    let out = redrive("kafka", "fix-1");
    assert!(out.contains("re-drove 10 of 10 dead letters"), "{out}");
    assert!(out.contains("8 recovered, 2 failed again"), "{out}");
    assert_eq!(q(live_sales), "39", "the 8 recovered sales are live");
    assert_eq!(
        q("SELECT count() FROM fact_sales FINAL WHERE quantity = 7"),
        "8"
    );
    assert_eq!(
        q("SELECT uniqExact(_plugin_version) FROM fact_sales FINAL"),
        "2",
        "the recovered rows name the fixed version"
    );
    let replayed = std::fs::read_to_string(data.join("replays/fix-1/sales.ndjson")).unwrap();
    assert_eq!(replayed.lines().count(), 8, "{replayed}");
    assert!(
        replayed.lines().all(|l| l.contains("\"quantity\":7")),
        "{replayed}"
    );

    // Again, from the table: nothing doubles, and nothing is dead-lettered live again.
    let out = redrive("clickhouse", "fix-2");
    assert!(out.contains("8 recovered, 2 failed again"), "{out}");
    assert_eq!(q(live_sales), "39");
    assert_eq!(q("SELECT uniqExact(sale_id) FROM fact_sales"), "39");
    assert_eq!(q("SELECT count() FROM dead_letters FINAL"), "10");
    assert_eq!(
        consume_messages(&broker.address, "retail-dead-letters").len(),
        10
    );

    // A range selects by the time a letter was recorded.
    let err = host(
        &[
            "replay",
            "--config",
            &cfg,
            "--plugins",
            &repo().join("plugins").display().to_string(),
            "--data-dir",
            &data_arg,
            "--dead-letters",
            "kafka",
            "--from",
            "2099-01-01",
            "--id",
            "none",
        ],
        dir.path(),
    );
    assert!(!err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("in that range"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
}
