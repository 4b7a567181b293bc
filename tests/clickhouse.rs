//! Against a real ClickHouse server (started by tests/run.sh via tests/services/start.sh; the
//! address from SHELFSTREAM_CLICKHOUSE_URL, default http://127.0.0.1:8123): the schema applies
//! idempotently, the sink delivers exactly what the file sink got, and outputs written twice
//! (a re-delivery after a crash) collapse to one row each.

mod common;

use common::*;
use shelfstream::sinks::clickhouse::{migrate, ClickHouseConfig};

fn clickhouse(database: &str) -> ClickHouseConfig {
    ClickHouseConfig {
        url: std::env::var("SHELFSTREAM_CLICKHOUSE_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:8123".into()),
        database: database.into(),
        batch_rows: 700, // several inserts per run
        ..ClickHouseConfig::default()
    }
}

fn execute(ch: &ClickHouseConfig, sql: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = ch.client().with_database(&ch.database);
    rt.block_on(client.query(sql).execute()).unwrap();
}

fn query(ch: &ClickHouseConfig, sql: &str) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = ch.client().with_database(&ch.database);
    rt.block_on(async {
        let mut cursor = client.query(sql).fetch_bytes("TabSeparated").unwrap();
        let bytes = cursor.collect().await.unwrap();
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .trim()
            .to_string()
    })
}

fn fresh_database(name: &str) -> ClickHouseConfig {
    let ch = clickhouse(&format!("{name}_{}", std::process::id()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        ch.client()
            .query(&format!("DROP DATABASE IF EXISTS {}", ch.database))
            .execute()
            .await
            .unwrap();
        assert!(migrate(&ch.client(), &ch.database).await.unwrap() >= 10);
        // Idempotent: applying it again changes nothing and does not fail.
        migrate(&ch.client(), &ch.database).await.unwrap();
    });
    ch
}

fn file_sum(data: &std::path::Path, stream: &str, field: &str) -> f64 {
    std::fs::read_to_string(data.join("out").join(format!("{stream}.ndjson")))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()[field]
                .as_f64()
                .unwrap()
        })
        .sum()
}

#[test]
#[ignore = "needs ClickHouse: run tests/run.sh"]
fn outputs_land_in_clickhouse_once_even_when_written_twice() {
    let ch = fresh_database("shelfstream_test");
    let first = tempfile::tempdir().unwrap();
    let mut config = pipeline_config(first.path(), 0.0, Some(8_000), true);
    config.clickhouse = Some(ch.clone());
    run_to_end(&repo().join("plugins"), config, false);

    let sales = stream_rows(first.path(), "sales").len();
    let minutes = stream_rows(first.path(), "sales_1m").len();
    let dead = stream_rows(first.path(), "dead_letters").len();
    assert!(sales > 1000 && minutes > 100 && dead > 0);
    assert_eq!(
        query(&ch, "SELECT count(), uniqExact(sale_id) FROM fact_sales"),
        format!("{sales}\t{sales}")
    );
    let revenue: f64 = query(&ch, "SELECT sum(total_amount) FROM fact_sales")
        .parse()
        .unwrap();
    assert!((revenue - file_sum(first.path(), "sales", "total_amount")).abs() < 1e-6);
    assert_eq!(
        query(&ch, "SELECT count() FROM spark_sales_metrics"),
        minutes.to_string()
    );
    assert_eq!(
        query(&ch, "SELECT count() FROM dead_letters"),
        dead.to_string()
    );
    assert_eq!(query(&ch, "SELECT count() FROM dim_product"), "30");
    assert_eq!(
        query(&ch, "SELECT count() FROM fact_sales WHERE _plugin = 'sales-cleaner' AND length(_plugin_version) = 12"),
        sales.to_string(),
        "every row records the plugin version that produced it"
    );
    // ... and the source offsets: a fact its own record, a window what had been read by then.
    assert_eq!(
        query(&ch, "SELECT count() FROM fact_sales WHERE _source_topic = 'retail-sales-transactions' AND _source_offset >= 0 AND _source_partition >= 0"),
        sales.to_string()
    );
    assert_eq!(
        query(&ch, "SELECT count() FROM spark_sales_metrics WHERE visitParamExtractInt(_source_offsets, 'retail-sales-transactions:0') > 0"),
        minutes.to_string()
    );

    // A re-delivery: the same input processed again from scratch writes every row a second time.
    let second = tempfile::tempdir().unwrap();
    let mut config = pipeline_config(second.path(), 0.0, Some(8_000), true);
    config.clickhouse = Some(ch.clone());
    run_to_end(&repo().join("plugins"), config, false);
    assert_eq!(
        query(&ch, "SELECT count() FROM fact_sales FINAL"),
        sales.to_string()
    );
    assert_eq!(
        query(&ch, "SELECT count() FROM spark_sales_metrics FINAL"),
        minutes.to_string()
    );
    assert_eq!(
        query(&ch, "SELECT count() FROM dead_letters FINAL"),
        dead.to_string()
    );
    query(&ch, "OPTIMIZE TABLE fact_sales FINAL");
    assert_eq!(
        query(&ch, "SELECT count(), uniqExact(sale_id) FROM fact_sales"),
        format!("{sales}\t{sales}")
    );
    let revenue: f64 = query(&ch, "SELECT sum(total_amount) FROM fact_sales")
        .parse()
        .unwrap();
    assert!((revenue - file_sum(first.path(), "sales", "total_amount")).abs() < 1e-6);

    query(&ch, &format!("DROP DATABASE {}", ch.database));
}

#[test]
#[ignore = "needs ClickHouse: run tests/run.sh"]
fn the_seed_sample_queries_run_unmodified_and_return_rows() {
    let ch = fresh_database("shelfstream_seed");
    let data = tempfile::tempdir().unwrap();
    let mut config = pipeline_config(data.path(), 0.0, Some(8_000), true);
    for s in &mut config.sources {
        if let shelfstream::sources::SourceConfig::Simulator(sim) = s {
            sim.start = None; // event time starts now: "today" and "the last hour" hold data
        }
    }
    config.clickhouse = Some(ch.clone());
    run_to_end(&repo().join("plugins"), config, false);

    let version = query(&ch, "SELECT version()");
    let queries =
        shelfstream::tools::queries::named_queries(shelfstream::tools::queries::SEED_SAMPLES);
    assert_eq!(queries.len(), 8);
    for (name, sql) in &queries {
        if name == "product_performance" && version.starts_with("18.") {
            // One JOIN per query on 18.16: the original must fail, product_performance_18 stands in.
            let rt = tokio::runtime::Runtime::new().unwrap();
            let err = rt
                .block_on(async {
                    ch.client()
                        .with_database(&ch.database)
                        .query(sql)
                        .fetch_bytes("TabSeparated")
                        .unwrap()
                        .collect()
                        .await
                })
                .unwrap_err();
            assert!(err.to_string().contains("more than one JOIN"), "{err}");
            continue;
        }
        let rows = query(&ch, sql);
        assert!(!rows.is_empty(), "{name} returned no rows");
    }
    let statuses = query(
        &ch,
        "SELECT groupUniqArray(stock_status) FROM spark_inventory_metrics",
    );
    assert!(
        statuses.contains("IN_STOCK") && statuses.contains("LOW_STOCK"),
        "{statuses}"
    );
    query(&ch, &format!("DROP DATABASE {}", ch.database));
}

#[test]
#[ignore = "needs ClickHouse: run tests/run.sh"]
fn the_exercise_queries_answer_from_three_simulated_weeks() {
    let ch = fresh_database("shelfstream_exercises");
    let data = tempfile::tempdir().unwrap();
    let mut config = pipeline_config(data.path(), 0.0, Some(50_000), true);
    for s in &mut config.sources {
        if let shelfstream::sources::SourceConfig::Simulator(sim) = s {
            sim.time_scale = 30_000.0; // 30 simulated seconds per step: about 17 days
            sim.stop_selling_share = 0.05;
        }
    }
    config.clickhouse = Some(ch.clone());
    run_to_end(&repo().join("plugins"), config, false);
    let queries =
        shelfstream::tools::queries::named_queries(shelfstream::tools::queries::EXERCISES);
    assert_eq!(queries.len(), 10);
    for (name, sql) in &queries {
        let rows = query(&ch, sql);
        assert!(!rows.is_empty(), "{name} returned no rows");
    }
    // Every ClickHouse query of the Grafana dashboards, over a fixed range around the data.
    let (from, to) = (1_793_491_200, 1_795_132_800); // 2026-11-01 .. 2026-11-20, UTC
    let mut panels = 0;
    for (dashboard, title, sql) in grafana_clickhouse_queries() {
        let sql =
            expand_grafana_macros(&sql, from, to).replace("retail.", &format!("{}.", ch.database));
        let rows = query(&ch, &sql);
        assert!(
            !rows.is_empty(),
            "{dashboard}: panel {title:?} returned no rows:\n{sql}"
        );
        panels += 1;
    }
    assert!(panels >= 8, "{panels} ClickHouse queries in the dashboards");
    // Every category appears in the category rollup, and its revenue is the facts' revenue.
    let rollup: f64 = query(
        &ch,
        "SELECT sum(total_revenue) FROM sales_rollups WHERE metric = 'sales_daily_category'",
    )
    .parse()
    .unwrap();
    let facts: f64 = query(&ch, "SELECT sum(total_amount) FROM fact_sales")
        .parse()
        .unwrap();
    assert!(
        (rollup - facts).abs() < 0.01 * facts.abs().max(1.0) / 100.0,
        "{rollup} vs {facts}"
    );
    query(&ch, &format!("DROP DATABASE {}", ch.database));
}

#[test]
#[ignore = "needs ClickHouse: run tests/run.sh"]
fn migrate_adds_the_columns_an_older_table_lacks_and_rebuilds_a_changed_key() {
    let ch = clickhouse(&format!("shelfstream_upgrade_{}", std::process::id()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = ch.client();
        for sql in [
            format!("DROP DATABASE IF EXISTS {}", ch.database),
            format!("CREATE DATABASE {}", ch.database),
            // fact_sales as an early version of sql/schema.sql made it: no provenance columns.
            format!("CREATE TABLE {}.fact_sales (sale_id String, total_amount Float64, transaction_date Date) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(transaction_date) ORDER BY sale_id", ch.database),
            format!("INSERT INTO {}.fact_sales VALUES ('T1-0', 2.5, '2026-11-22')", ch.database),
            // sales_rollups before shards: its sorting key lacks _partition.
            format!("CREATE TABLE {}.sales_rollups (window_start DateTime('UTC'), metric String, store_id String, total_revenue Float64) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(window_start) ORDER BY (metric, store_id, window_start)", ch.database),
            format!("INSERT INTO {}.sales_rollups VALUES ('2026-11-22 00:00:00', 'sales_daily_store', 'S1', 9.5)", ch.database),
        ] {
            client.query(&sql).execute().await.unwrap();
        }
        migrate(&client, &ch.database).await.unwrap();
    });
    let columns = query(&ch, "SELECT groupArray(name) FROM system.columns WHERE database = currentDatabase() AND table = 'fact_sales'");
    for column in [
        "_source_offset",
        "_plugin_version",
        "store_id",
        "transaction_time",
    ] {
        assert!(columns.contains(column), "{column} missing: {columns}");
    }
    assert_eq!(
        query(
            &ch,
            "SELECT sale_id, total_amount, _source_offset FROM fact_sales"
        ),
        "T1-0\t2.5\t0"
    );
    // The table whose sorting key had to change was rebuilt with its rows (old one kept), and
    // two shards' rows of one store and day no longer replace each other.
    assert!(query(&ch, "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = 'sales_rollups'").contains("_partition"));
    assert_eq!(
        query(
            &ch,
            "SELECT store_id, total_revenue, _partition FROM sales_rollups"
        ),
        "S1\t9.5\t0"
    );
    assert_eq!(
        query(
            &ch,
            "SELECT count() FROM sales_rollups_before_partition_key"
        ),
        "1"
    );
    execute(&ch, "INSERT INTO sales_rollups (window_start, metric, store_id, total_revenue, _partition) VALUES ('2026-11-22 00:00:00', 'sales_daily_store', 'S1', 1.5, 2)");
    execute(&ch, "OPTIMIZE TABLE sales_rollups FINAL");
    assert_eq!(
        query(&ch, "SELECT sum(total_revenue) FROM sales_rollups FINAL"),
        "11"
    );
    query(&ch, &format!("DROP DATABASE {}", ch.database));
}

/// `(dashboard, panel title, SQL)` of every ClickHouse target in `sql/grafana/dashboards/`.
fn grafana_clickhouse_queries() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo().join("sql/grafana/dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in json["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if target["datasource"]["type"] == "grafana-clickhouse-datasource" {
                    out.push((
                        path.file_name().unwrap().to_string_lossy().into_owned(),
                        panel["title"].as_str().unwrap().to_string(),
                        target["rawSql"].as_str().unwrap().to_string(),
                    ));
                }
            }
        }
    }
    out
}

/// The Grafana ClickHouse datasource's time macros for the range `from..to` (Unix seconds), as
/// the plugin expands them.
fn expand_grafana_macros(sql: &str, from: i64, to: i64) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("$__timeFilter(") {
        out.push_str(&rest[..at]);
        let args = &rest[at + "$__timeFilter(".len()..];
        let end = args.find(')').expect("closing parenthesis");
        let column = args[..end].trim();
        out.push_str(&format!(
            "{column} >= toDateTime({from}) AND {column} <= toDateTime({to})"
        ));
        rest = &args[end + 1..];
    }
    out.push_str(rest);
    let out = out
        .replace("$__fromTime", &format!("toDateTime({from})"))
        .replace("$__toTime", &format!("toDateTime({to})"));
    assert!(
        !out.contains('$'),
        "a macro this test does not expand: {out}"
    );
    out
}

#[test]
fn grafana_macros_expand_as_the_datasource_does() {
    let sql = "SELECT 1 FROM t WHERE $__timeFilter(a) AND $__timeFilter( b ) AND c < $__toTime";
    assert_eq!(
        expand_grafana_macros(sql, 10, 20),
        "SELECT 1 FROM t WHERE a >= toDateTime(10) AND a <= toDateTime(20) AND b >= toDateTime(10) AND b <= toDateTime(20) AND c < toDateTime(20)"
    );
}
