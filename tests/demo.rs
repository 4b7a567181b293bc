//! `host demo`, the README's main command, against the services tests/run.sh started on their
//! default ports: it must produce, process and answer every seed sample query with rows.

mod common;

use std::process::Command;

use common::*;

#[test]
#[ignore = "needs Kafka, ClickHouse and S3 on their default ports: run tests/run.sh"]
fn the_demo_runs_the_whole_stack_and_answers_the_sample_queries() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["demo", "--duration", "4s", "--plugins"])
        .arg(repo().join("plugins"))
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
}
