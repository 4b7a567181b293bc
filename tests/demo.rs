//! `host demo`, the README's main command, against a tansu and an s3s-fs of its own and the
//! ClickHouse tests/run.sh started: it must produce, process every record produced and answer
//! every seed sample query with rows.

mod common;

use std::process::Command;

use common::services::*;
use common::*;

#[test]
#[ignore = "needs tansu, s3s-fs and ClickHouse: run tests/run.sh"]
fn the_demo_runs_the_whole_stack_and_answers_the_sample_queries() {
    // A broker and an S3 server of the test's own: the shared ones on the default ports keep
    // every earlier run's data, and tansu's sqlite storage slows as it grows.
    let broker = broker_on_disk();
    let s3 = s3();
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["demo", "--duration", "4s", "--plugins"])
        .arg(repo().join("plugins"))
        .args(["--brokers", &broker.address, "--s3-endpoint", &s3.endpoint])
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let queries =
        shelfstream::tools::queries::named_queries(shelfstream::tools::queries::SEED_SAMPLES);
    for (name, _) in &queries {
        let section = stdout
            .split(&format!("-- {name}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("{name} missing"));
        let section = section.split("\n-- ").next().unwrap();
        let answered = section.contains('┌')
            || (name == "product_performance" && section.contains("cannot run it"));
        assert!(answered, "{name} printed no rows:\n{section}");
    }
    assert!(stdout.contains("alerts on Kafka topic retail-restock-alerts"));
    assert!(stdout.contains("raw batches: s3://retail-data/raw/"));
    assert!(!stream_rows(data.path(), "sales").is_empty());
    // Everything produced went through, however slowly the broker delivered it.
    let counts = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("== ")?
                .split_once(" records through the plugins, of ")
        })
        .unwrap_or_else(|| panic!("no record counts:\n{stdout}"));
    let read: u64 = counts.0.parse().unwrap();
    let produced: u64 = counts.1.split(' ').next().unwrap().parse().unwrap();
    assert!(produced > 0);
    assert_eq!(read, produced, "records read, of those produced");
}
