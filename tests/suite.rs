//! The retail exercise suite, plugin by plugin, as built components through the plugin harness.
//! Every expectation is computed by hand from the definition of the metric (see each comment).

mod common;

use common::*;
use shelfstream::harness::PluginHarness;
use shelfstream::plugin::{
    CustomerEvent, Event, Forecast, InventoryUpdate, MetricRow, PriceChange, Severity,
};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

fn harness(name: &str, params: &[(&str, &str)]) -> PluginHarness {
    let mut b = PluginHarness::builder(plugin(name)).allowed_lateness_ms(i64::MAX / 4);
    for (k, v) in params {
        b = b.param(k, v);
    }
    b.start().unwrap()
}

fn alerts(out: &[Event]) -> Vec<&shelfstream::plugin::Alert> {
    out.iter()
        .map(|e| match e {
            Event::Alert(a) => a,
            other => panic!("not an alert: {other:?}"),
        })
        .collect()
}

fn evidence(a: &shelfstream::plugin::Alert, name: &str) -> f64 {
    a.evidence
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no {name} in {a:?}"))
        .1
}

fn dim(e: &Event, name: &str) -> String {
    let Event::Metric(m) = e else {
        panic!("not a metric row: {e:?}")
    };
    m.dimensions
        .iter()
        .find(|(k, _)| k == name)
        .unwrap()
        .1
        .clone()
}

fn movement(product: &str, change: i32, level: i32, ts: i64) -> Event {
    Event::Inventory(InventoryUpdate {
        update_id: format!("U{ts}"),
        store_id: "S001".into(),
        product_id: product.into(),
        quantity_change: change,
        stock_level: level,
        capacity: 100,
        reason: if change > 0 { "restock" } else { "sale" }.into(),
        timestamp: ts,
    })
}

fn price(old: f64, new: f64, ts: i64) -> Event {
    Event::Price(PriceChange {
        store_id: "S001".into(),
        product_id: "SKU-00001".into(),
        old_price: old,
        new_price: new,
        timestamp: ts,
    })
}

fn checkout(products: &[&str], ts: i64) -> Event {
    Event::Customer(CustomerEvent {
        customer_id: "C00001".into(),
        store_id: "S001".into(),
        event_type: "checkout".into(),
        product_ids: products.iter().map(|p| p.to_string()).collect(),
        timestamp: ts,
    })
}

fn daily(product: &str, day: i64, units: f64) -> Event {
    Event::Metric(MetricRow {
        metric: "sales_1d".into(),
        window_start: day * DAY,
        window_end: (day + 1) * DAY,
        dimensions: vec![
            ("store_id".into(), "S001".into()),
            ("product_id".into(), product.into()),
        ],
        values: vec![("units_sold".into(), units)],
    })
}

#[test]
fn cleaners_validate_every_topic_and_drop_repeats() {
    if !components_built() {
        return;
    }
    let mut prices = harness("price-cleaner", &[]);
    let change = r#"{"store_id":"s1","product_id":"sku7","old_price":2.499,"new_price":1.994,"timestamp":"2026-11-22T10:00:00+01:00"}"#;
    let out = prices.clean_payloads(
        "retail-price-changes",
        &[
            change,
            change,
            r#"{"store_id":"S1","product_id":"SKU-7","old_price":2,"new_price":0,"timestamp":0}"#,
        ],
    );
    assert_eq!(out.len(), 1);
    let Event::Price(p) = &out[0] else { panic!() };
    assert_eq!(
        (
            p.store_id.as_str(),
            p.product_id.as_str(),
            p.old_price,
            p.new_price
        ),
        ("S001", "SKU-00007", 2.5, 1.99)
    );
    assert_eq!(p.timestamp, 1_795_338_000_000);
    let dead = prices.dead_letters();
    assert!(
        dead[0].reason.starts_with("duplicate"),
        "{}",
        dead[0].reason
    );
    assert!(
        dead[1].reason.contains("new_price: 0 is not a price"),
        "{}",
        dead[1].reason
    );

    let mut customers = harness("customer-cleaner", &[]);
    let out = customers.clean_payloads(
        "retail-customer-events",
        &[
            r#"{"event_id":"E1","customer_id":"C1","store_id":"s2","event_type":"Checkout","product_ids":["sku1","SKU_2"],"timestamp":5}"#,
            r#"{"event_id":"E1","customer_id":"C1","store_id":"s2","event_type":"Checkout","product_ids":["sku1","SKU_2"],"timestamp":5}"#,
            r#"{"customer_id":"C1","store_id":"s2","event_type":"dance","timestamp":5}"#,
            r#"{"customer_id":"C1","store_id":"s2","event_type":"checkout","product_ids":[],"timestamp":5}"#,
            r#"{"customer_id":"C1","store_id":"s2","event_type":"view","product_ids":["shoe"],"timestamp":5}"#,
        ],
    );
    assert_eq!(out.len(), 1);
    let Event::Customer(c) = &out[0] else {
        panic!()
    };
    assert_eq!(
        (c.event_type.as_str(), c.product_ids.clone()),
        (
            "checkout",
            vec!["SKU-00001".to_string(), "SKU-00002".into()]
        )
    );
    let reasons: Vec<&str> = customers
        .dead_letters()
        .iter()
        .map(|d| d.reason.as_str())
        .collect();
    assert!(reasons[0].starts_with("duplicate: E1"), "{reasons:?}");
    assert!(
        reasons[1].contains("event_type") && reasons[2].contains("needs at least one product"),
        "{reasons:?}"
    );
    assert!(reasons[3].contains("product_ids[0]"), "{reasons:?}");

    // Sales and inventory: a repeated message is dropped, a return is a negative line.
    let mut sales = harness("sales-cleaner", &[]);
    let sale = r#"{"transaction_id":"T9","store_id":"S1","timestamp":0,"items":[{"line":3,"product_id":"SKU-1","category":"Dairy","quantity":-2,"unit_price":1.5}]}"#;
    let out = sales.clean_payloads("retail-sales-transactions", &[sale, sale]);
    assert_eq!(out.len(), 1);
    let Event::Sale(s) = &out[0] else { panic!() };
    assert_eq!(
        (s.line, s.quantity, s.total_amount, s.category.as_deref()),
        (3, -2, -3.0, Some("Dairy"))
    );
    assert!(sales.dead_letters()[0]
        .reason
        .starts_with("duplicate: T9#3"));
    let mut inventory = harness("inventory-cleaner", &[("dedup_window", "1m")]);
    let update = |ts: i64| {
        format!(
            r#"{{"update_id":"U1","store_id":"S1","product_id":"SKU-1","quantity_change":-1,"stock_level":4,"capacity":10,"reason":"sale","timestamp":{ts}}}"#
        )
    };
    // A repeat within a minute is a duplicate; the id seen again two minutes later is not.
    let out = inventory.clean_payloads(
        "retail-inventory-updates",
        &[update(0), update(30_000), update(200_000)],
    );
    assert_eq!(out.len(), 2);
}

#[test]
fn hopping_windows_and_daily_rollups_per_category() {
    if !components_built() {
        return;
    }
    // One-hour windows every 30 minutes, grouped by category.
    let mut h = harness(
        "revenue-aggregator",
        &[
            ("window", "1h"),
            ("hop", "30m"),
            ("by", "category"),
            ("metric", "sales_1h"),
        ],
    );
    let mut dairy = sale("T1", "S001", "SKU-00001", 2, 1.5, 10 * HOUR + 10 * 60_000);
    let mut dairy2 = sale("T2", "S002", "SKU-00002", 1, 1.5, 10 * HOUR + 40 * 60_000);
    let mut bakery = sale("T3", "S001", "SKU-00003", 1, 4.0, 10 * HOUR + 40 * 60_000);
    for (e, c) in [
        (&mut dairy, "Dairy"),
        (&mut dairy2, "Dairy"),
        (&mut bakery, "Bakery"),
    ] {
        let Event::Sale(s) = e else { panic!() };
        s.category = Some(c.into());
    }
    h.process(vec![dairy, dairy2, bakery]);
    let out = h.advance_watermark(12 * HOUR);
    let rows: Vec<(i64, String, f64, f64)> = out
        .iter()
        .map(|e| {
            let Event::Metric(m) = e else { panic!() };
            (
                m.window_start,
                dim(e, "category"),
                value(e, "total_revenue"),
                value(e, "transaction_count"),
            )
        })
        .collect();
    // 10:10 is in [09:30, 10:30) and [10:00, 11:00); 10:40 in [10:00, 11:00) and [10:30, 11:30).
    let at = |h: f64| (h * HOUR as f64) as i64;
    assert_eq!(
        rows,
        vec![
            (at(9.5), "Dairy".into(), 3.0, 1.0),
            (at(10.0), "Bakery".into(), 4.0, 1.0),
            (at(10.0), "Dairy".into(), 4.5, 2.0),
            (at(10.5), "Bakery".into(), 4.0, 1.0),
            (at(10.5), "Dairy".into(), 1.5, 1.0),
        ]
    );
    let bad = PluginHarness::builder(plugin("revenue-aggregator"))
        .param("by", "colour")
        .start()
        .err()
        .unwrap();
    assert!(bad.to_string().contains("colour"), "{bad}");
}

#[test]
fn sales_anomaly_scores_against_a_median_mad_baseline() {
    if !components_built() {
        return;
    }
    let mut h = harness(
        "sales-anomaly-alert",
        &[
            ("baseline", "6"),
            ("min_history", "3"),
            ("threshold", "5"),
            ("min_units", "10"),
            ("min_scale", "1"),
        ],
    );
    let rows = [4.0, 6.0, 5.0, 5.0, 30.0]
        .iter()
        .enumerate()
        .map(|(i, u)| units_row("S001", "SKU-00001", *u, i as i64 * MIN))
        .collect();
    let out = h.process(rows);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{a:?}");
    // History 4, 6, 5, 5: median 5, |x - 5| = 1, 1, 0, 0 -> MAD 0.5, scale max(1.4826 * 0.5, 1) = 1.
    assert_eq!(
        (a[0].rule.as_str(), a[0].window_start),
        ("sales_anomaly", 4 * MIN)
    );
    assert_eq!(
        (
            evidence(a[0], "baseline_median"),
            evidence(a[0], "baseline_scale"),
            evidence(a[0], "robust_z")
        ),
        (5.0, 1.0, 25.0)
    );
    assert_eq!(
        a[0].severity,
        Severity::Critical,
        "z 25 is over twice the threshold"
    );
    // Three windows without a row count as zero sales: history 6, 5, 5, 0, 0, 0 (the anomaly
    // stayed out), median 2.5, MAD 2.5, scale 3.7065: 12 units score 2.56, no alert. Without the
    // zeros the baseline would be 4, 6, 5, 5 and 12 would score 7.
    assert!(h
        .process(vec![units_row("S001", "SKU-00001", 12.0, 8 * MIN)])
        .is_empty());
}

#[test]
fn price_anomaly_compares_with_the_median_of_recent_prices() {
    if !components_built() {
        return;
    }
    let mut h = harness(
        "price-anomaly-alert",
        &[("max_change", "0.5"), ("history", "3")],
    );
    let out = h.process(vec![
        price(2.0, 1.8, 1),
        price(1.8, 18.0, 2),
        price(18.0, 1.8, 3),
        price(1.8, 2.6, 4),
    ]);
    let a = alerts(&out);
    // Recent 2.0, 1.8: median 1.9; 18 is +847% (critical: over 3 x 50%). The correction to 1.8
    // is -5% from 1.9, and 2.6 is +44% from median(2.0, 1.8, 1.8) = 1.8: both normal.
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (
            evidence(a[0], "reference_price"),
            a[0].timestamp,
            a[0].severity
        ),
        (1.9, 2, Severity::Critical)
    );
    assert!((evidence(a[0], "change") - (18.0 / 1.9 - 1.0)).abs() < 1e-12);
}

#[test]
fn shrinkage_is_stock_that_recorded_movements_do_not_explain() {
    if !components_built() {
        return;
    }
    let mut h = harness(
        "shrinkage-alert",
        &[("tolerance", "5"), ("critical_pct", "25")],
    );
    let out = h.process(vec![
        movement("SKU-00001", 0, 50, 10),
        movement("SKU-00001", -5, 45, 20), // 50 - 5 = 45: explained
        movement("SKU-00001", -2, 30, 30), // expected 43, counted 30: 13 missing
        movement("SKU-00001", 70, 100, 40), // 30 + 70 = 100: explained
        movement("SKU-00001", -1, 96, 50), // 3 missing: within the tolerance
    ]);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].rule.as_str(), a[0].window_start, a[0].window_end),
        ("shrinkage", 20, 30)
    );
    assert_eq!(
        (
            evidence(a[0], "expected_level"),
            evidence(a[0], "missing_units")
        ),
        (43.0, 13.0)
    );
    assert_eq!(
        a[0].severity,
        Severity::Warning,
        "13 is under 25% of the capacity of 100"
    );
}

#[test]
fn holt_winters_agrees_with_statsmodels() {
    if !components_built() {
        return;
    }
    let path = repo().join("tests/fixtures/holt_winters/fixture.json");
    let fixture: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let series: Vec<f64> = serde_json::from_value(fixture["series"].clone()).unwrap();
    let list = |k: &str| -> Vec<f64> { serde_json::from_value(fixture[k].clone()).unwrap() };
    let mut h = harness(
        "holt-winters-forecaster",
        &[
            ("alpha", "0.3"),
            ("beta", "0.05"),
            ("gamma", "0.2"),
            ("z", "1.959963984540054"),
        ],
    );
    let mut last = Vec::new();
    for (day, y) in series.iter().enumerate() {
        let out = h.process(vec![daily("SKU-00001", day as i64, *y)]);
        assert_eq!(
            out.is_empty(),
            day < 13,
            "forecasts start once two weeks are in (day {day})"
        );
        last = out;
    }
    assert_eq!(last.len(), 7);
    let (hw, ets, lower, upper) = (
        list("forecast"),
        list("ets_mean"),
        list("lower"),
        list("upper"),
    );
    for (i, e) in last.iter().enumerate() {
        let Event::Forecast(f) = e else { panic!() };
        assert_eq!(f.target_start, (series.len() + i) as i64 * DAY);
        // Tolerance 1e-6: both sides run the same recursion in double precision.
        assert!(
            (f.predicted - ets[i]).abs() < 1e-6,
            "h={}: {} vs ETS {}",
            i + 1,
            f.predicted,
            ets[i]
        );
        assert!(
            (f.lower - lower[i]).abs() < 1e-6 && (f.upper - upper[i]).abs() < 1e-6,
            "h={}: {f:?}",
            i + 1
        );
        if i < 6 {
            // statsmodels' ExponentialSmoothing agrees for h < m; at h = m it reuses the seasonal
            // term of one season earlier, unlike its own ETSModel and the textbook formula.
            assert!(
                (f.predicted - hw[i]).abs() < 1e-6,
                "h={}: {} vs {}",
                i + 1,
                f.predicted,
                hw[i]
            );
        }
    }
}

#[test]
fn stock_planner_sets_reorder_point_safety_stock_and_order() {
    if !components_built() {
        return;
    }
    let mut h = harness(
        "stock-planner",
        &[
            ("service_level", "0.95"),
            ("lead_time", "2d"),
            ("review_period", "3d"),
            ("forecast_z", "1.96"),
        ],
    );
    let t0 = 10 * DAY;
    // Seven daily forecasts of 10 units with sigma 2 (upper = 10 + 1.96 * 2).
    let forecasts: Vec<Event> = (1..=7)
        .map(|d| {
            Event::Forecast(Forecast {
                model: "test".into(),
                store_id: "S001".into(),
                product_id: "SKU-00001".into(),
                target_start: t0 + (d - 1) * DAY,
                target_end: t0 + d * DAY,
                predicted: 10.0,
                lower: 10.0 - 3.92,
                upper: 10.0 + 3.92,
                timestamp: t0,
            })
        })
        .collect();
    assert!(h
        .process(vec![movement("SKU-00001", 0, 60, t0 - 1)])
        .is_empty());
    let plan = h.process(forecasts);
    // Lead time 2 days: demand 20, variance 2 * 2^2 = 8; z(0.95) = 1.644854: safety 4.6523,
    // reorder point 24.6523. Order up to the demand of 2 + 3 days (50) + safety: 54.65 - 60 < 0.
    assert_eq!(plan.len(), 1);
    let safety = 1.644_853_627 * 8f64.sqrt();
    assert!((value(&plan[0], "safety_stock") - safety).abs() < 1e-6);
    assert!((value(&plan[0], "reorder_point") - (20.0 + safety)).abs() < 1e-6);
    assert_eq!(value(&plan[0], "order_quantity"), 0.0);
    let out = h.process(vec![
        movement("SKU-00001", -40, 20, t0 + 1),
        movement("SKU-00001", -2, 18, t0 + 2),
        movement("SKU-00001", 72, 90, t0 + 3),
        movement("SKU-00001", -70, 20, t0 + 4),
    ]);
    let a = alerts(&out);
    // 20 <= 24.65: order ceil(54.65 - 20) = 35; 18 is the same episode; 90 re-arms; 20 again.
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(
        (
            a[0].rule.as_str(),
            evidence(a[0], "order_quantity"),
            a[1].timestamp
        ),
        ("reorder_point", 35.0, t0 + 4)
    );
}

#[test]
fn slow_movers_label_days_of_cover_and_sell_through() {
    if !components_built() {
        return;
    }
    let mut h = harness(
        "slow-movers",
        &[
            ("lookback", "3"),
            ("slow_cover_days", "10"),
            ("fast_cover_days", "1"),
        ],
    );
    h.process(vec![
        movement("SKU-00001", 0, 20, 0),
        movement("SKU-00002", 0, 10, 0),
        movement("SKU-00003", 0, 50, 0),
        daily("SKU-00001", 0, 5.0),
        daily("SKU-00001", 1, 5.0),
        daily("SKU-00001", 2, 5.0),
        daily("SKU-00003", 2, 1.0),
    ]);
    // Day 2 is classified once the watermark is past the end of day 3.
    assert!(h.advance_watermark(3 * DAY).is_empty());
    let out = h.advance_watermark(4 * DAY);
    assert!(h.dead_letters().is_empty(), "{:?}", h.dead_letters());
    let rows: Vec<(String, String, f64, f64)> = out
        .iter()
        .map(|e| {
            (
                dim(e, "product_id"),
                dim(e, "label"),
                value(e, "days_of_cover"),
                value(e, "sell_through"),
            )
        })
        .collect();
    // SKU-1: 15 units in 3 days, 5/day, 20 in stock: 4 days of cover, 15/35 sold through.
    // SKU-2: no sale, 10 in stock: dead. SKU-3: 1/3 a day against 50: 150 days, slow.
    assert_eq!(
        rows,
        vec![
            ("SKU-00001".into(), "NORMAL".into(), 4.0, 15.0 / 35.0),
            ("SKU-00002".into(), "DEAD".into(), 9999.0, 0.0),
            ("SKU-00003".into(), "SLOW".into(), 150.0, 1.0 / 51.0),
        ]
    );
    let Event::Metric(m) = &out[0] else { panic!() };
    assert_eq!((m.window_start, m.window_end), (0, 3 * DAY));
}

#[test]
fn cross_sell_ranks_partners_by_lift() {
    if !components_built() {
        return;
    }
    let mut h = harness(
        "cross-sell",
        &[("top_n", "2"), ("min_pairs", "2"), ("refresh", "1d")],
    );
    let mut baskets = Vec::new();
    baskets.extend((0..6).map(|i| checkout(&["A", "B"], i)));
    baskets.extend((0..4).map(|i| checkout(&["A"], 10 + i)));
    baskets.push(checkout(&["B", "C"], 20));
    baskets.extend((0..9).map(|i| checkout(&["C"], 30 + i)));
    h.process(baskets);
    let out = h.advance_watermark(DAY);
    // N = 20, n(A) = 10, n(B) = 7, n(A,B) = 6; (B,C) was seen once, under min_pairs.
    // A -> B: confidence 0.6, lift 0.6 / 0.35; B -> A: confidence 6/7, lift (6/7) / 0.5.
    let rows: Vec<(String, String, f64, f64, f64)> = out
        .iter()
        .map(|e| {
            (
                dim(e, "product_id"),
                dim(e, "recommended_product_id"),
                value(e, "support"),
                value(e, "confidence"),
                value(e, "lift"),
            )
        })
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str(), rows[0].2, rows[0].3),
        ("A", "B", 0.3, 0.6)
    );
    assert!(
        (rows[0].4 - 0.6 / 0.35).abs() < 1e-12 && (rows[1].4 - (6.0 / 7.0) / 0.5).abs() < 1e-12
    );
    assert!(
        h.advance_watermark(DAY + 1).is_empty(),
        "one refresh per day"
    );
}
