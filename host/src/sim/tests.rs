//! The simulator's unit tests.

use std::collections::BTreeMap;

use super::*;
use crate::plugin::RawRecord;
use crate::topics::*;

fn sim(seed: u64) -> Simulator {
    let config = SimulatorConfig {
        seed,
        stores: 3,
        products: 20,
        time_scale: 3_600.0, // 1.8 simulated seconds per step: restocks arrive within the test
        ..SimulatorConfig::default()
    };
    Simulator::new(&config, 1_700_000_000_000)
}

fn take(sim: &mut Simulator, steps: usize) -> Vec<RawRecord> {
    (0..steps)
        .flat_map(|_| sim.step().collect::<Vec<_>>())
        .collect()
}

#[test]
fn same_seed_same_messages_and_skip_resumes_exactly() {
    let a = take(&mut sim(7), 2_000);
    let b = take(&mut sim(7), 2_000);
    assert_eq!(a, b);
    let mut resumed = sim(7);
    resumed.skip(1_000);
    let tail = take(&mut resumed, 1_000);
    let whole = take(&mut sim(7), 1_000);
    let whole_tail: Vec<_> = a.iter().skip(whole.len()).cloned().collect();
    assert_eq!(tail, whole_tail);
    assert_ne!(a, take(&mut sim(8), 2_000));
}

#[test]
fn sales_deplete_stock_and_restocks_refill_it() {
    let mut s = sim(1);
    let records = take(&mut s, 50_000);
    let mut last_level: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut restocks = 0;
    for r in records.iter().filter(|r| r.topic == INVENTORY) {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        let key = format!("{}:{}", v["store_id"], v["product_id"]);
        let level = v["stock_level"].as_i64().unwrap();
        let change = v["quantity_change"].as_i64().unwrap();
        if let Some((prev, _)) = last_level.get(&key) {
            assert_eq!(prev + change, level, "stock is continuous for {key}");
        }
        if v["reason"] == "restock" {
            restocks += 1;
            assert_eq!(level, v["capacity"].as_i64().unwrap());
        }
        last_level.insert(key, (level, change));
    }
    assert!(restocks > 0, "some products ran low and were restocked");
}

#[test]
fn injected_signals_are_in_the_messages_and_in_the_ground_truth() {
    let config = SimulatorConfig {
        seed: 5,
        stores: 3,
        products: 20,
        time_scale: 20_000.0, // 20 simulated seconds per step
        malformed_rate: 0.0,
        duplicate_rate: 0.01,
        sales_anomalies_per_day: 3.0,
        price_errors_per_day: 3.0,
        thefts_per_day: 3.0,
        promotions_per_day: 3.0,
        stop_selling_share: 0.1,
        affinity_pairs: 3,
        ..SimulatorConfig::default()
    };
    let mut s = Simulator::new(&config, 1_700_000_000_000);
    let records = take(&mut s, 40_000); // about nine simulated days
    let truth = s.ground_truth();
    for kind in [
        IncidentKind::SalesAnomaly,
        IncidentKind::PriceError,
        IncidentKind::Theft,
        IncidentKind::Promotion,
        IncidentKind::StoppedSelling,
    ] {
        assert!(truth.of_kind(kind).count() > 0, "{kind:?}");
    }
    let json = |r: &RawRecord| serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap();
    // Theft: the unexplained drop between two updates of a shelf adds up to what was stolen
    // (thefts after a shelf's last update stay hidden).
    let mut first: BTreeMap<String, i64> = BTreeMap::new();
    let mut last: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut unexplained: BTreeMap<String, i64> = BTreeMap::new();
    let mut seen_ids = std::collections::BTreeSet::new();
    for r in records.iter().filter(|r| r.topic == INVENTORY) {
        let v = json(r);
        if !seen_ids.insert(v["update_id"].to_string()) {
            continue; // a duplicate message
        }
        let key = format!(
            "{}:{}",
            v["store_id"].as_str().unwrap(),
            v["product_id"].as_str().unwrap()
        );
        let (level, change, t) = (
            v["stock_level"].as_i64().unwrap(),
            v["quantity_change"].as_i64().unwrap(),
            r.timestamp,
        );
        if let Some((prev, _)) = last.get(&key) {
            let gap = prev + change - level;
            assert!(gap >= 0, "stock never appears from nowhere ({key})");
            *unexplained.entry(key.clone()).or_default() += gap;
        }
        first.entry(key.clone()).or_insert(t);
        last.insert(key, (level, t));
    }
    for (key, gap) in &unexplained {
        let (store, product) = key.split_once(':').unwrap();
        let last_update = last[key].1;
        let stolen: f64 = truth
            .of_kind(IncidentKind::Theft)
            .filter(|i| i.store_id == store && i.product_id == product)
            .filter(|i| i.start >= first[key] && i.start < last_update)
            .map(|i| i.magnitude)
            .sum();
        assert_eq!(
            *gap as f64,
            stolen,
            "{key} {:?}",
            truth
                .of_kind(IncidentKind::Theft)
                .filter(|i| i.store_id == store && i.product_id == product)
                .collect::<Vec<_>>()
        );
    }
    assert!(
        unexplained.values().any(|g| *g > 0),
        "some theft was revealed"
    );
    // Price errors are ten times off, and the shelf's price comes back.
    let errors: Vec<_> = truth.of_kind(IncidentKind::PriceError).collect();
    let prices: Vec<_> = records
        .iter()
        .filter(|r| r.topic == PRICES)
        .map(|r| (r.timestamp, json(r)))
        .collect();
    for e in &errors {
        let (_, v) = prices
            .iter()
            .find(|(t, v)| {
                *t == e.start
                    && v["product_id"] == e.product_id.as_str()
                    && v["store_id"] == e.store_id.as_str()
            })
            .expect("the mistyped price was sent");
        let ratio = v["new_price"].as_f64().unwrap() / v["old_price"].as_f64().unwrap();
        assert!(
            (ratio / e.magnitude - 1.0).abs() < 0.1,
            "{ratio} vs {}",
            e.magnitude
        );
    }
    // Stopped shelves sell nothing after they stop.
    for stop in truth.of_kind(IncidentKind::StoppedSelling) {
        let after = records
            .iter()
            .filter(|r| r.topic == SALES && r.timestamp >= stop.start)
            .filter(|r| {
                let v = json(r);
                v["store_id"] == stop.store_id.as_str()
                    && v["items"][0]["product_id"] == stop.product_id.as_str()
                    && v["items"][0]["quantity"].as_i64().unwrap() > 0
            });
        assert_eq!(after.count(), 0, "{stop:?}");
    }
    // Affinity pairs are bought together; checkouts carry the basket.
    let (a, b) = &truth.affinities[0];
    let together = records
        .iter()
        .filter(|r| r.topic == CUSTOMERS)
        .map(json)
        .filter(|v| v["event_type"] == "checkout")
        .filter(|v| {
            let ids: Vec<&str> = v["product_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap())
                .collect();
            ids.contains(&a.as_str()) && ids.contains(&b.as_str())
        })
        .count();
    assert!(together > 5, "{a} and {b} bought together {together} times");
    assert!(truth.duplicates > 0);
}

#[test]
fn demand_follows_the_week() {
    // Friday and Saturday are busier than Monday and Tuesday.
    let monday_noon = 1_795_435_200_000; // 2026-11-23T12:00:00Z, a Monday
    assert!(intensity(monday_noon + 4 * 86_400_000) > intensity(monday_noon));
    assert!(intensity(monday_noon + 5 * 86_400_000) > intensity(monday_noon + 86_400_000));
    assert!(intensity(monday_noon + 4 * 3_600_000) > intensity(monday_noon - 12 * 3_600_000));
}

#[test]
fn keys_stay_in_one_partition_and_offsets_are_dense() {
    let records = take(&mut sim(3), 5_000);
    let mut partition_of: BTreeMap<Vec<u8>, i32> = BTreeMap::new();
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for r in &records {
        let p = *partition_of
            .entry(r.key.clone().unwrap())
            .or_insert(r.partition);
        assert_eq!(p, r.partition);
        let n = next.entry((r.topic.clone(), r.partition)).or_insert(0);
        assert_eq!(r.offset, *n);
        *n += 1;
    }
    for topic in [SALES, INVENTORY, PRICES, CUSTOMERS] {
        assert!(records.iter().any(|r| r.topic == topic), "{topic}");
    }
}
