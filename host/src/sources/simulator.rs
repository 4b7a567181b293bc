//! The built-in retail simulator: realistic, linked events on the four retail topics.
//!
//! A chain of `stores` stores sells `products` products. Each step is one customer action:
//! a sale (which depletes stock and writes an inventory update), a return, a visit or product
//! view, or a price change. When a product's stock reaches its reorder point a restock is
//! ordered and arrives after the product's lead time (in event time). Now and then stock goes
//! missing (shrinkage). Sales follow a popularity skew and a daily cycle.
//!
//! Deterministic: the same seed, start and settings give the same messages, byte for byte, so
//! [`Simulator::skip`] can resume a run by regenerating and discarding the first steps.

use std::collections::{BTreeMap, VecDeque};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

use crate::config::SimulatorConfig;
use crate::plugin::RawRecord;

pub const SALES: &str = "retail-sales-transactions";
pub const INVENTORY: &str = "retail-inventory-updates";
pub const PRICES: &str = "retail-price-changes";
pub const CUSTOMERS: &str = "retail-customer-events";

pub const CATEGORIES: [&str; 8] = [
    "Beverages",
    "Dairy",
    "Bakery",
    "Produce",
    "Snacks",
    "Household",
    "Personal Care",
    "Frozen",
];

#[derive(Debug, Clone)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub category: &'static str,
    pub base_price: f64,
    /// Relative demand weight (Zipf-like).
    pub popularity: f64,
    /// Restock lead time in event-time milliseconds.
    pub lead_time_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Store {
    pub id: String,
    pub city: &'static str,
    pub traffic: f64,
}

#[derive(Debug, Clone)]
struct Shelf {
    stock: i32,
    capacity: i32,
    price: f64,
    restock_due: Option<i64>,
}

const CITIES: [&str; 6] = ["Lisbon", "Porto", "Madrid", "Lyon", "Milan", "Berlin"];
const PAYMENTS: [&str; 4] = ["card", "cash", "mobile", "card"];

pub struct Simulator {
    rng: SmallRng,
    pub stores: Vec<Store>,
    pub products: Vec<Product>,
    shelves: Vec<Shelf>,
    /// Cumulative popularity for weighted product choice.
    cumulative: Vec<f64>,
    store_cumulative: Vec<f64>,
    restocks: BTreeMap<(i64, usize), ()>,
    clock_ms: i64,
    step_ms: f64,
    fraction: f64,
    steps: u64,
    malformed_rate: f64,
    partitions: i32,
    offsets: BTreeMap<(&'static str, i32), i64>,
    out: VecDeque<RawRecord>,
}

impl Simulator {
    /// `start_ms`: event time of the first step.
    pub fn new(config: &SimulatorConfig, start_ms: i64) -> Self {
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let stores: Vec<Store> = (1..=config.stores.max(1))
            .map(|i| Store {
                id: format!("S{i:03}"),
                city: CITIES[(i as usize - 1) % CITIES.len()],
                traffic: rng.random_range(0.5..1.5),
            })
            .collect();
        let price_dist = LogNormal::new(1.2, 0.6).expect("valid lognormal");
        let products: Vec<Product> = (1..=config.products.max(1))
            .map(|i| {
                let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
                Product {
                    sku: format!("SKU-{i:05}"),
                    name: format!("{category} item {i}"),
                    category,
                    base_price: (price_dist.sample(&mut rng) * 100.0f64).round().max(19.0) / 100.0,
                    popularity: 1.0 / (i as f64).powf(0.8),
                    lead_time_ms: rng.random_range(10..120) * 60_000,
                }
            })
            .collect();
        let shelves = stores
            .iter()
            .flat_map(|_| products.iter())
            .map(|p| {
                let capacity = rng.random_range(4..=20) * 10;
                Shelf {
                    stock: rng.random_range(capacity / 2..=capacity),
                    capacity,
                    price: p.base_price,
                    restock_due: None,
                }
            })
            .collect();
        let cumulative = running_sum(products.iter().map(|p| p.popularity));
        let store_cumulative = running_sum(stores.iter().map(|s| s.traffic));
        let rate = if config.rate > 0.0 {
            config.rate
        } else {
            1_000.0
        };
        Simulator {
            rng,
            stores,
            products,
            shelves,
            cumulative,
            store_cumulative,
            restocks: BTreeMap::new(),
            clock_ms: start_ms,
            step_ms: config.time_scale.max(0.0) * 1_000.0 / rate,
            fraction: 0.0,
            steps: 0,
            malformed_rate: config.malformed_rate.clamp(0.0, 1.0),
            partitions: config.partitions.max(1),
            offsets: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    /// Steps taken so far: the resume position.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Regenerate and discard `n` steps (resume after a restart).
    pub fn skip(&mut self, n: u64) {
        for _ in 0..n {
            self.step().for_each(drop);
        }
    }

    /// Take one step; returns the messages it produced (usually one or two).
    pub fn step(&mut self) -> impl Iterator<Item = RawRecord> + '_ {
        self.steps += 1;
        self.fraction += self.step_ms;
        let whole = self.fraction.floor();
        self.fraction -= whole;
        self.clock_ms += whole as i64;
        self.arrive_restocks();
        let roll: f64 = self.rng.random();
        match roll {
            r if r < 0.62 => self.sale(),
            r if r < 0.64 => self.sale_return(),
            r if r < 0.66 => self.price_change(),
            r if r < 0.67 => self.shrinkage(),
            _ => self.customer_event(),
        }
        self.out.drain(..)
    }

    fn pick(cumulative: &[f64], rng: &mut SmallRng) -> usize {
        let total = *cumulative.last().expect("non-empty");
        let x = rng.random::<f64>() * total;
        cumulative
            .partition_point(|&c| c < x)
            .min(cumulative.len() - 1)
    }

    fn pick_shelf(&mut self) -> (usize, usize, usize) {
        let s = Self::pick(&self.store_cumulative, &mut self.rng);
        let p = Self::pick(&self.cumulative, &mut self.rng);
        (s, p, s * self.products.len() + p)
    }

    fn sale(&mut self) {
        let (s, p, i) = self.pick_shelf();
        let wanted = 1 + (self.rng.random::<f64>().powi(3) * 5.0) as i32;
        let sold = wanted.min(self.shelves[i].stock);
        if sold == 0 {
            return self.emit_customer(s, "view", vec![p]);
        }
        let tx = format!("T{:010}", self.steps);
        let customer = (self.rng.random::<f64>() < 0.7)
            .then(|| format!("C{:05}", self.rng.random_range(1..20_000)));
        let payment = PAYMENTS[self.rng.random_range(0..PAYMENTS.len())];
        self.emit_sale(s, p, i, &tx, sold, customer, payment);
        self.move_stock(s, p, i, -sold, "sale");
    }

    fn sale_return(&mut self) {
        let (s, p, i) = self.pick_shelf();
        let tx = format!("R{:010}", self.steps);
        self.emit_sale(s, p, i, &tx, -1, None, "card");
        self.move_stock(s, p, i, 1, "return");
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_sale(
        &mut self,
        s: usize,
        p: usize,
        i: usize,
        tx: &str,
        quantity: i32,
        customer: Option<String>,
        payment: &str,
    ) {
        let price = self.shelves[i].price;
        let malformed = self.rng.random::<f64>() < self.malformed_rate;
        let payload = if malformed {
            self.malformed_sale(s, tx)
        } else {
            serde_json::json!({
                "transaction_id": tx,
                "store_id": self.stores[s].id,
                "customer_id": customer,
                "payment_method": payment,
                "timestamp": rfc3339(self.clock_ms),
                "items": [{"product_id": self.products[p].sku, "quantity": quantity, "unit_price": price}],
            })
            .to_string()
        };
        self.push(SALES, s, p, payload);
    }

    fn malformed_sale(&mut self, s: usize, tx: &str) -> String {
        match self.rng.random_range(0..4) {
            0 => format!("{{\"transaction_id\": \"{tx}\", \"store_id\": \"{}\", \"items\": [", self.stores[s].id),
            1 => serde_json::json!({"transaction_id": tx, "store_id": self.stores[s].id,
                "timestamp": rfc3339(self.clock_ms), "items": [{"product_id": "SKU-00001", "quantity": 1, "unit_price": -4.0}]}).to_string(),
            2 => serde_json::json!({"transaction_id": tx, "timestamp": rfc3339(self.clock_ms),
                "items": [{"product_id": "SKU-00001", "quantity": 1, "unit_price": 1.0}]}).to_string(),
            _ => serde_json::json!({"transaction_id": tx, "store_id": self.stores[s].id,
                "timestamp": "yesterday", "items": [{"product_id": "SKU-00001", "quantity": 1, "unit_price": 1.0}]}).to_string(),
        }
    }

    fn move_stock(&mut self, s: usize, p: usize, i: usize, change: i32, reason: &str) {
        let shelf = &mut self.shelves[i];
        let before = shelf.stock;
        shelf.stock = (shelf.stock + change).clamp(0, shelf.capacity);
        let change = shelf.stock - before;
        let reorder_point = shelf.capacity / 4;
        if shelf.stock <= reorder_point && shelf.restock_due.is_none() {
            let due = self.clock_ms + self.products[p].lead_time_ms;
            shelf.restock_due = Some(due);
            self.restocks.insert((due, i), ());
        }
        self.emit_inventory(s, p, i, change, reason);
    }

    fn emit_inventory(&mut self, s: usize, p: usize, i: usize, change: i32, reason: &str) {
        let shelf = &self.shelves[i];
        let payload = serde_json::json!({
            "update_id": format!("U{:010}-{}", self.steps, reason),
            "store_id": self.stores[s].id,
            "product_id": self.products[p].sku,
            "quantity_change": change,
            "stock_level": shelf.stock,
            "capacity": shelf.capacity,
            "reason": reason,
            "timestamp": rfc3339(self.clock_ms),
        })
        .to_string();
        self.push(INVENTORY, s, p, payload);
    }

    fn arrive_restocks(&mut self) {
        while let Some((&(due, i), _)) = self.restocks.first_key_value() {
            if due > self.clock_ms {
                break;
            }
            self.restocks.pop_first();
            let (s, p) = (i / self.products.len(), i % self.products.len());
            let shelf = &mut self.shelves[i];
            let change = shelf.capacity - shelf.stock;
            shelf.stock = shelf.capacity;
            shelf.restock_due = None;
            self.emit_inventory(s, p, i, change, "restock");
        }
    }

    fn shrinkage(&mut self) {
        let (s, p, i) = self.pick_shelf();
        if self.shelves[i].stock > 0 {
            let lost = self.rng.random_range(1..=3).min(self.shelves[i].stock);
            self.move_stock(s, p, i, -lost, "shrinkage");
        }
    }

    fn price_change(&mut self) {
        let (s, p, i) = self.pick_shelf();
        let old = self.shelves[i].price;
        let factor = if self.rng.random::<f64>() < 0.5 {
            0.9
        } else {
            1.05
        };
        let new = ((self.products[p].base_price * factor * 100.0).round() / 100.0).max(0.19);
        self.shelves[i].price = new;
        let payload = serde_json::json!({
            "store_id": self.stores[s].id,
            "product_id": self.products[p].sku,
            "old_price": old,
            "new_price": new,
            "timestamp": rfc3339(self.clock_ms),
        })
        .to_string();
        self.push(PRICES, s, p, payload);
    }

    fn customer_event(&mut self) {
        let (s, p, _) = self.pick_shelf();
        let kind = if self.rng.random::<f64>() < 0.5 {
            "visit"
        } else {
            "view"
        };
        let products = if kind == "view" { vec![p] } else { Vec::new() };
        self.emit_customer(s, kind, products);
    }

    fn emit_customer(&mut self, s: usize, kind: &str, products: Vec<usize>) {
        let key_product = products.first().copied().unwrap_or(0);
        let payload = serde_json::json!({
            "customer_id": format!("C{:05}", self.rng.random_range(1..20_000)),
            "store_id": self.stores[s].id,
            "event_type": kind,
            "product_ids": products.iter().map(|&p| self.products[p].sku.clone()).collect::<Vec<_>>(),
            "timestamp": rfc3339(self.clock_ms),
        })
        .to_string();
        self.push(CUSTOMERS, s, key_product, payload);
    }

    /// Key `store:product`; the partition is a stable hash of the key.
    fn push(&mut self, topic: &'static str, s: usize, p: usize, payload: String) {
        let key = format!("{}:{}", self.stores[s].id, self.products[p].sku);
        let partition = (fnv1a(key.as_bytes()) % self.partitions as u64) as i32;
        let offset = self.offsets.entry((topic, partition)).or_insert(0);
        let record = RawRecord {
            topic: topic.to_string(),
            partition,
            offset: *offset,
            key: Some(key.into_bytes()),
            payload: payload.into_bytes(),
            timestamp: self.clock_ms,
        };
        *offset += 1;
        self.out.push_back(record);
    }
}

fn running_sum(values: impl Iterator<Item = f64>) -> Vec<f64> {
    values
        .scan(0.0, |acc, v| {
            *acc += v;
            Some(*acc)
        })
        .collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// UTC milliseconds as RFC 3339 text with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
