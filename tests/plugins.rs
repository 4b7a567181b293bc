//! Unit tests of every shipped plugin, run as built components through the plugin harness.
//! Expectations are computed by hand from the definition of each metric.

mod common;

use common::*;
use shelfstream::harness::PluginHarness;
use shelfstream::pipeline::DeadLetterKind;
use shelfstream::plugin::{Event, Severity};

#[test]
fn sales_cleaner_normalises_and_rejects_with_reasons() {
    if !components_built() {
        return;
    }
    let mut h = PluginHarness::builder(plugin("sales-cleaner"))
        .start()
        .unwrap();
    let out = h.clean_payloads(
        "retail-sales-transactions",
        &[
            r#"{"transaction_id":"T1","store_id":"s3","timestamp":"2026-11-22T10:00:00.5+01:00","payment_method":"Cash",
                "items":[{"product_id":"sku7","quantity":3,"unit_price":0.995},{"product_id":"SKU-00008","quantity":-1,"unit_price":2}]}"#,
            r#"{"transaction_id":"T2","store_id":"S001","timestamp":"2026-11-22T10:00:00Z","items":[{"product_id":"SKU-1","quantity":1}]}"#,
            "{not json",
        ],
    );
    assert_eq!(out.len(), 2, "two lines from the first transaction");
    let Event::Sale(s) = &out[0] else { panic!() };
    assert_eq!(
        (s.store_id.as_str(), s.product_id.as_str()),
        ("S003", "SKU-00007")
    );
    assert_eq!(
        s.timestamp, 1_795_338_000_500,
        "10:00:00.5+01:00 is 09:00:00.5Z"
    );
    assert_eq!((s.unit_price, s.total_amount), (1.0, 3.0));
    assert_eq!(s.payment_method, "cash");
    let Event::Sale(r) = &out[1] else { panic!() };
    assert_eq!(
        (r.quantity, r.total_amount),
        (-1, -2.0),
        "a return is a negative line"
    );

    let dead = h.dead_letters();
    assert_eq!(dead.len(), 2);
    assert!(dead
        .iter()
        .all(|d| d.kind == DeadLetterKind::Rejected && d.plugin == "sales-cleaner"));
    assert!(
        dead[0].reason.contains("items[0].unit_price: missing"),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[0].source.as_ref().unwrap().offset, 1);
    assert!(
        dead[1].reason.contains("invalid JSON"),
        "{}",
        dead[1].reason
    );
}

#[test]
fn inventory_cleaner_validates_updates() {
    if !components_built() {
        return;
    }
    let mut h = PluginHarness::builder(plugin("inventory-cleaner"))
        .start()
        .unwrap();
    let out = h.clean_payloads(
        "retail-inventory-updates",
        &[
            r#"{"update_id":"U1","store_id":"S1","product_id":"SKU-5","quantity_change":-2,"stock_level":8,"capacity":40,"reason":"sale","timestamp":60000}"#,
            r#"{"update_id":"U2","store_id":"S1","product_id":"SKU-5","quantity_change":-2,"stock_level":8,"capacity":0,"reason":"sale","timestamp":60000}"#,
        ],
    );
    assert_eq!(out.len(), 1);
    assert!(
        h.dead_letters()[0].reason.contains("capacity"),
        "{:?}",
        h.dead_letters()
    );
}

#[test]
fn revenue_windows_close_only_when_the_watermark_passes_them() {
    if !components_built() {
        return;
    }
    let mut h = PluginHarness::builder(plugin("revenue-aggregator"))
        .param("window", "1m")
        .allowed_lateness_ms(10_000)
        .start()
        .unwrap();
    // Window [0, 60s): two transactions, 3 units, 5.00 revenue. One event in [60s, 120s).
    let out = h.process(vec![
        sale("T1", "S001", "SKU-00001", 2, 1.50, 10_000),
        sale("T2", "S001", "SKU-00001", 1, 2.00, 30_000),
        sale("T3", "S001", "SKU-00001", 4, 1.00, 65_000),
    ]);
    assert!(
        out.is_empty(),
        "watermark 55s has not passed the window end 60s: {out:?}"
    );
    assert_eq!(h.stage().watermark(), 55_000);

    let out = h.process(vec![sale("T4", "S001", "SKU-00001", 1, 1.00, 71_000)]);
    assert_eq!(out.len(), 1, "watermark 61s closes [0, 60s)");
    assert_eq!(value(&out[0], "total_revenue"), 5.0);
    assert_eq!(value(&out[0], "units_sold"), 3.0);
    assert_eq!(value(&out[0], "transaction_count"), 2.0);
    assert_eq!(value(&out[0], "avg_unit_price"), 1.67);
    let Event::Metric(m) = &out[0] else { panic!() };
    assert_eq!((m.window_start, m.window_end), (0, MIN));

    // An event older than the watermark (61s) is late: dead letter, not counted.
    let out = h.process(vec![sale("T5", "S001", "SKU-00001", 9, 9.0, 50_000)]);
    assert!(out.is_empty());
    let dead = h.take_dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].kind, DeadLetterKind::Late);
    assert!(
        dead[0].reason.contains("before the watermark 61000"),
        "{}",
        dead[0].reason
    );

    let out = h.advance_watermark(2 * MIN);
    assert_eq!(out.len(), 1);
    assert_eq!(value(&out[0], "total_revenue"), 5.0, "T3 4.00 + T4 1.00");
    assert_eq!(value(&out[0], "units_sold"), 5.0);
}

#[test]
fn avg_unit_price_is_the_quantity_weighted_price_of_the_lines() {
    if !components_built() {
        return;
    }
    let mut h = PluginHarness::builder(plugin("revenue-aggregator"))
        .param("window", "1m")
        .allowed_lateness_ms(MIN)
        .start()
        .unwrap();
    let out = h.process(vec![
        // [0, 60s), S001 / SKU-00001: one unit sold at 10.72, one returned at 10.72. Revenue and
        // units are 0; the price of the lines is still 10.72: (1 x 10.72 + 1 x 10.72) / 2.
        sale("T1", "S001", "SKU-00001", 1, 10.72, 10_000),
        sale("R1", "S001", "SKU-00001", -1, 10.72, 20_000),
        // S001 / SKU-00002: one sold at 4.00, three returned at 2.00. Revenue 4 - 6 = -2 over
        // -2 units would say 1.00; weighted by |quantity|: (1 x 4.00 + 3 x 2.00) / 4 = 2.50.
        sale("T2", "S001", "SKU-00002", 1, 4.00, 30_000),
        sale("R2", "S001", "SKU-00002", -3, 2.00, 40_000),
        // S002 / SKU-00003: 2 at 1.00 and 1 at 2.50: (2 + 2.5) / 3 = 1.50 (cents, half up).
        sale("T3", "S002", "SKU-00003", 2, 1.00, 50_000),
        sale("T4", "S002", "SKU-00003", 1, 2.50, 55_000),
    ]);
    assert!(out.is_empty());
    let out = h.advance_watermark(MIN);
    let by_product = |p: &str| {
        out.iter()
            .find(|e| matches!(e, Event::Metric(m) if m.dimensions.iter().any(|(_, v)| v == p)))
            .unwrap_or_else(|| panic!("no row for {p}: {out:?}"))
    };
    let one = by_product("SKU-00001");
    assert_eq!(value(one, "total_revenue"), 0.0);
    assert_eq!(value(one, "units_sold"), 0.0);
    assert_eq!(value(one, "avg_unit_price"), 10.72);
    let two = by_product("SKU-00002");
    assert_eq!(value(two, "total_revenue"), -2.0);
    assert_eq!(value(two, "units_sold"), -2.0);
    assert_eq!(value(two, "avg_unit_price"), 2.5);
    assert_eq!(value(by_product("SKU-00003"), "avg_unit_price"), 1.5);
}

#[test]
fn revenue_state_survives_snapshot_and_restore() {
    if !components_built() {
        return;
    }
    let events = vec![
        sale("T1", "S001", "SKU-00001", 2, 1.50, 10_000),
        sale("T2", "S002", "SKU-00001", 1, 2.00, 20_000),
    ];
    let start = || PluginHarness::builder(plugin("revenue-aggregator")).allowed_lateness_ms(MIN);
    let mut first = start().start().unwrap();
    assert!(first.process(events).is_empty());
    let saved = first.snapshot().unwrap();
    assert!(!saved.state.is_empty());
    let mut second = start().restore(saved).unwrap();
    let out = second.advance_watermark(MIN);
    assert_eq!(
        out.len(),
        2,
        "both keys' windows came back from the snapshot"
    );
    assert_eq!(
        value(&out[0], "total_revenue") + value(&out[1], "total_revenue"),
        5.0
    );
}

#[test]
fn low_stock_alerts_once_per_episode_and_escalates_when_out() {
    if !components_built() {
        return;
    }
    let mut h = PluginHarness::builder(plugin("low-stock-alert"))
        .param("low_pct", "20")
        .allowed_lateness_ms(i64::MAX / 4)
        .start()
        .unwrap();
    let levels = [50, 15, 10, 0, 0, 100, 19];
    let mut fired = Vec::new();
    for (i, level) in levels.iter().enumerate() {
        for e in h.process(vec![stock("S001", "SKU-00009", *level, 100, i as i64)]) {
            let Event::Alert(a) = e else { panic!() };
            fired.push((i, a.rule.clone(), a.severity, a.evidence.clone()));
        }
    }
    let summary: Vec<(usize, &str)> = fired.iter().map(|(i, r, ..)| (*i, r.as_str())).collect();
    assert_eq!(
        summary,
        vec![(1, "low_stock"), (3, "out_of_stock"), (6, "low_stock")]
    );
    assert_eq!(fired[0].2, Severity::Warning);
    assert_eq!(fired[1].2, Severity::Critical);
    let reorder = fired[0]
        .3
        .iter()
        .find(|(k, _)| k == "reorder_quantity")
        .unwrap()
        .1;
    assert_eq!(reorder, 85.0, "refill from 15 to the capacity of 100");
}

#[test]
fn forecaster_follows_exponential_smoothing() {
    if !components_built() {
        return;
    }
    let mut h = PluginHarness::builder(plugin("demand-forecaster"))
        .param("alpha", "0.5")
        .param("z", "1.96")
        .allowed_lateness_ms(i64::MAX / 4)
        .start()
        .unwrap();
    let out = h.process(vec![
        units_row("S001", "SKU-00001", 10.0, 0),
        units_row("S001", "SKU-00001", 20.0, MIN),
    ]);
    assert_eq!(out.len(), 2);
    let Event::Forecast(f1) = &out[0] else {
        panic!()
    };
    assert_eq!((f1.predicted, f1.lower, f1.upper), (10.0, 10.0, 10.0));
    assert_eq!((f1.target_start, f1.target_end), (MIN, 2 * MIN));
    let Event::Forecast(f2) = &out[1] else {
        panic!()
    };
    // level = 10 + 0.5 * (20 - 10) = 15; mse = 0.5 * 10^2 = 50; width = 1.96 * sqrt(50)
    let width = 1.96 * 50f64.sqrt();
    assert_eq!(f2.predicted, 15.0);
    assert!((f2.upper - (15.0 + width)).abs() < 1e-9 && (f2.lower - (15.0 - width)).abs() < 1e-9);
}

#[test]
fn bad_parameters_are_rejected_with_the_plugins_message() {
    if !components_built() {
        return;
    }
    let err = PluginHarness::builder(plugin("revenue-aggregator"))
        .param("window", "soon")
        .start()
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("rejected its parameters") && err.contains("window"),
        "{err}"
    );
    let err = PluginHarness::builder(plugin("low-stock-alert"))
        .param("low_percent", "20")
        .start()
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("unknown parameter(s) low_percent"), "{err}");
}

#[test]
fn sales_spike_fires_above_a_multiple_of_the_running_mean() {
    if !components_built() {
        return;
    }
    let mut h = PluginHarness::builder(plugin("sales-spike-alert"))
        .param("factor", "3")
        .param("min_units", "10")
        .param("alpha", "0.5")
        .allowed_lateness_ms(i64::MAX / 4)
        .start()
        .unwrap();
    // mean: 4 -> (4) 4 -> 4+0.5*(6-4)=5 -> spike 16 > 3*5 fires; mean 10.5 -> 30 < 31.5 does not.
    let units = [4.0, 4.0, 6.0, 16.0, 30.0];
    let rows = units
        .iter()
        .enumerate()
        .map(|(i, u)| units_row("S001", "SKU-00001", *u, i as i64 * MIN))
        .collect();
    let out = h.process(rows);
    assert_eq!(out.len(), 1, "{out:?}");
    let Event::Alert(a) = &out[0] else { panic!() };
    assert_eq!((a.rule.as_str(), a.window_start), ("sales_spike", 3 * MIN));
    assert_eq!(a.evidence[1], ("mean_units".to_string(), 5.0));
}

#[test]
fn inventory_windows_report_the_latest_level_and_status() {
    if !components_built() {
        return;
    }
    let mut h = PluginHarness::builder(plugin("inventory-aggregator"))
        .param("low_pct", "20")
        .allowed_lateness_ms(MIN)
        .start()
        .unwrap();
    // Out of order within the window: the latest by event time wins (15 at 50 s), not the last fed.
    h.process(vec![
        stock("S001", "SKU-00001", 40, 100, 10_000),
        stock("S001", "SKU-00001", 15, 100, 50_000),
    ]);
    h.process(vec![
        stock("S001", "SKU-00002", 0, 50, 20_000),
        stock("S001", "SKU-00001", 90, 100, 30_000),
    ]);
    let out = h.advance_watermark(MIN);
    assert_eq!(out.len(), 2);
    let row = |e: &Event| {
        let Event::Metric(m) = e else { panic!() };
        (
            m.dimensions[1].1.clone(),
            m.dimensions[2].1.clone(),
            value(e, "latest_stock"),
            value(e, "stock_percentage"),
        )
    };
    assert_eq!(
        row(&out[0]),
        ("SKU-00001".into(), "LOW_STOCK".into(), 15.0, 15.0)
    );
    assert_eq!(
        row(&out[1]),
        ("SKU-00002".into(), "OUT_OF_STOCK".into(), 0.0, 0.0)
    );
}
