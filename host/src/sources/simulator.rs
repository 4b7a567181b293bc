//! The built-in retail simulator: realistic, linked events on the four retail topics, with
//! ground truth for the signals the shipped plugins look for.
//!
//! A chain of `stores` stores sells `products` products. Each step is one customer action:
//! a sale (which depletes stock and writes an inventory update), a return, a visit or product
//! view, or a price change. When a product's stock reaches its reorder point a restock is
//! ordered and arrives after the product's lead time (in event time). Damaged goods are written
//! off now and then. Demand follows a popularity skew, a daily cycle and a weekly one (busy
//! Fridays and Saturdays): event time passes faster when the shops are quiet.
//!
//! On request (see `SimulatorConfig`) it also injects what analytics exist to find, and records
//! each case in [`GroundTruth`]: sales bursts, mistyped prices, theft (stock that vanishes
//! without a record, revealed by the shelf's next update), promotions, shelves that stop
//! selling, products bought together, and repeated messages.
//!
//! Deterministic: the same seed, start and settings give the same messages, byte for byte, so
//! [`Simulator::skip`] can resume a run by regenerating and discarding the first steps.

use std::collections::{BTreeMap, VecDeque};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use serde::Serialize;

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

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Demand by day of the week, Monday first.
pub const WEEKLY: [f64; 7] = [0.85, 0.8, 0.9, 1.0, 1.2, 1.4, 1.0];

/// Relative demand at event time `ms`: the weekly factor times a daily cycle peaking at 16:00.
pub fn intensity(ms: i64) -> f64 {
    let days = ms.div_euclid(DAY_MS);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let hour = ms.rem_euclid(DAY_MS) as f64 / HOUR_MS as f64;
    let daily = 1.0 + 0.5 * (std::f64::consts::TAU * (hour - 10.0) / 24.0).sin();
    WEEKLY[weekday] * daily
}

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
    /// A promotion or a price error is running until then.
    special_until: Option<i64>,
    promotion: bool,
    stops_at: Option<i64>,
}

/// What kind of signal an [`Incident`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// Extra sales on one shelf for an hour (`magnitude`: transactions added).
    SalesAnomaly,
    /// A price typed ten times too high or too low (`magnitude`: the factor), corrected at `end`.
    PriceError,
    /// Stock gone without a record (`magnitude`: units), revealed by the shelf's next update.
    Theft,
    /// A price cut (`magnitude`: the new price over the normal one) that doubles demand.
    Promotion,
    /// The shelf sells nothing from `start` on.
    StoppedSelling,
    /// A recorded movement emptied the shelf (`magnitude`: its capacity).
    StockOut,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub kind: IncidentKind,
    pub store_id: String,
    pub product_id: String,
    pub start: i64,
    pub end: i64,
    pub magnitude: f64,
}

/// Everything the simulator injected, to score detectors against.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroundTruth {
    pub incidents: Vec<Incident>,
    /// (product, product often bought with it).
    pub affinities: Vec<(String, String)>,
    pub duplicates: u64,
    pub malformed: u64,
}

impl GroundTruth {
    pub fn of_kind(&self, kind: IncidentKind) -> impl Iterator<Item = &Incident> {
        self.incidents.iter().filter(move |i| i.kind == kind)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Restock(usize),
    BurstSale(usize),
    /// Restore the shelf's normal price (end of a promotion or a price error).
    NormalPrice(usize),
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
    /// Product -> the product often bought with it.
    partner: BTreeMap<usize, usize>,
    agenda: BTreeMap<(i64, u64), Due>,
    agenda_seq: u64,
    transactions: u64,
    clock_ms: i64,
    step_ms: f64,
    fraction: f64,
    steps: u64,
    config: SimulatorConfig,
    offsets: BTreeMap<(&'static str, i32), i64>,
    out: VecDeque<RawRecord>,
    truth: GroundTruth,
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
        let mut truth = GroundTruth::default();
        let mut shelves = Vec::new();
        for store in &stores {
            for p in &products {
                let capacity = rng.random_range(4..=20) * 10;
                let stops_at = (rng.random::<f64>() < config.stop_selling_share)
                    .then(|| start_ms + rng.random_range(DAY_MS..3 * DAY_MS));
                if let Some(at) = stops_at {
                    truth.incidents.push(Incident {
                        kind: IncidentKind::StoppedSelling,
                        store_id: store.id.clone(),
                        product_id: p.sku.clone(),
                        start: at,
                        end: i64::MAX,
                        magnitude: 0.0,
                    });
                }
                shelves.push(Shelf {
                    stock: rng.random_range(capacity / 2..=capacity),
                    capacity,
                    price: p.base_price,
                    restock_due: None,
                    special_until: None,
                    promotion: false,
                    stops_at,
                });
            }
        }
        // Pairs among the better-selling half, so that they show up in baskets.
        let mut partner = BTreeMap::new();
        let pool = (products.len() / 2).max(2).min(products.len());
        if pool >= 2 {
            for _ in 0..config.affinity_pairs {
                let a = rng.random_range(0..pool);
                let b = rng.random_range(0..pool);
                if a != b && !partner.contains_key(&a) {
                    partner.insert(a, b);
                    truth
                        .affinities
                        .push((products[a].sku.clone(), products[b].sku.clone()));
                }
            }
        }
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
            partner,
            agenda: BTreeMap::new(),
            agenda_seq: 0,
            transactions: 0,
            clock_ms: start_ms,
            step_ms: config.time_scale.max(0.0) * 1_000.0 / rate,
            fraction: 0.0,
            steps: 0,
            config: SimulatorConfig {
                malformed_rate: config.malformed_rate.clamp(0.0, 1.0),
                duplicate_rate: config.duplicate_rate.clamp(0.0, 1.0),
                partitions: config.partitions.max(1),
                ..config.clone()
            },
            offsets: BTreeMap::new(),
            out: VecDeque::new(),
            truth,
        }
    }

    /// Steps taken so far: the resume position.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Event time of the latest step.
    pub fn clock_ms(&self) -> i64 {
        self.clock_ms
    }

    /// What was injected so far (stopped shelves are known from the start).
    pub fn ground_truth(&self) -> &GroundTruth {
        &self.truth
    }

    /// Regenerate and discard `n` steps (resume after a restart).
    pub fn skip(&mut self, n: u64) {
        for _ in 0..n {
            self.step().for_each(drop);
        }
    }

    /// Take one step; returns the messages it produced (usually one to three).
    pub fn step(&mut self) -> impl Iterator<Item = RawRecord> + '_ {
        self.steps += 1;
        let dt = self.step_ms / intensity(self.clock_ms);
        self.fraction += dt;
        let whole = self.fraction.floor();
        self.fraction -= whole;
        self.clock_ms += whole as i64;
        self.run_agenda();
        self.inject(dt);
        let roll: f64 = self.rng.random();
        match roll {
            r if r < 0.62 => self.sale(),
            r if r < 0.64 => self.sale_return(),
            r if r < 0.66 => self.price_change(),
            r if r < 0.67 => self.damage(),
            _ => self.customer_event(),
        }
        self.out.drain(..)
    }

    fn schedule(&mut self, at: i64, what: Due) {
        self.agenda_seq += 1;
        self.agenda.insert((at, self.agenda_seq), what);
    }

    fn run_agenda(&mut self) {
        while let Some((&(due, _), &what)) = self.agenda.first_key_value() {
            if due > self.clock_ms {
                break;
            }
            self.agenda.pop_first();
            match what {
                Due::Restock(i) => self.restock(i),
                Due::BurstSale(i) => {
                    let (s, p) = self.shelf_coords(i);
                    let wanted = self.rng.random_range(3..=6);
                    self.sell(s, p, i, wanted);
                }
                Due::NormalPrice(i) => {
                    let (s, p) = self.shelf_coords(i);
                    self.shelves[i].special_until = None;
                    self.shelves[i].promotion = false;
                    let normal = self.products[p].base_price;
                    self.set_price(s, p, i, normal);
                }
            }
        }
    }

    /// Start injected incidents, each with its expected rate per simulated day.
    fn inject(&mut self, dt_ms: f64) {
        let per_step = |per_day: f64| per_day * dt_ms / DAY_MS as f64;
        let now = self.clock_ms;
        if self.rng.random::<f64>() < per_step(self.config.sales_anomalies_per_day) {
            let (s, p, i) = self.pick_shelf();
            if !self.stopped(i) {
                let bursts = self.rng.random_range(12..=20);
                let start = now + 60_000;
                for k in 0..bursts {
                    self.schedule(start + k * HOUR_MS / bursts, Due::BurstSale(i));
                }
                self.record(
                    IncidentKind::SalesAnomaly,
                    s,
                    p,
                    start,
                    start + HOUR_MS,
                    bursts as f64,
                );
            }
        }
        if self.rng.random::<f64>() < per_step(self.config.price_errors_per_day) {
            let (s, p, i) = self.pick_shelf();
            if self.shelves[i].special_until.is_none() {
                let factor = if self.rng.random::<bool>() { 10.0 } else { 0.1 };
                let until = now + self.rng.random_range(30..120) * 60_000;
                self.shelves[i].special_until = Some(until);
                let wrong = ((self.shelves[i].price * factor * 100.0).round() / 100.0).max(0.01);
                self.set_price(s, p, i, wrong);
                self.schedule(until, Due::NormalPrice(i));
                self.record(IncidentKind::PriceError, s, p, now, until, factor);
            }
        }
        if self.rng.random::<f64>() < per_step(self.config.thefts_per_day) {
            let (s, p, i) = self.pick_shelf();
            let stock = self.shelves[i].stock;
            if stock >= 10 {
                let lost = (stock as f64 * self.rng.random_range(0.4..0.6)).round() as i32;
                self.shelves[i].stock -= lost; // silently: no message
                self.record(IncidentKind::Theft, s, p, now, now, lost as f64);
            }
        }
        if self.rng.random::<f64>() < per_step(self.config.promotions_per_day) {
            let (s, p, i) = self.pick_shelf();
            if self.shelves[i].special_until.is_none() && !self.stopped(i) {
                let cut = self.rng.random_range(0.70..0.80);
                let until = now + self.rng.random_range(4..12) * HOUR_MS;
                let shelf = &mut self.shelves[i];
                shelf.special_until = Some(until);
                shelf.promotion = true;
                let price = ((self.products[p].base_price * cut * 100.0).round() / 100.0).max(0.01);
                self.set_price(s, p, i, price);
                self.schedule(until, Due::NormalPrice(i));
                self.record(IncidentKind::Promotion, s, p, now, until, cut);
            }
        }
    }

    fn record(
        &mut self,
        kind: IncidentKind,
        s: usize,
        p: usize,
        start: i64,
        end: i64,
        magnitude: f64,
    ) {
        self.truth.incidents.push(Incident {
            kind,
            store_id: self.stores[s].id.clone(),
            product_id: self.products[p].sku.clone(),
            start,
            end,
            magnitude,
        });
    }

    fn stopped(&self, i: usize) -> bool {
        self.shelves[i].stops_at.is_some_and(|t| self.clock_ms >= t)
    }

    fn shelf_coords(&self, i: usize) -> (usize, usize) {
        (i / self.products.len(), i % self.products.len())
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
        let mut wanted = 1 + (self.rng.random::<f64>().powi(3) * 5.0) as i32;
        if self.shelves[i].promotion {
            wanted *= 2;
        }
        if self.stopped(i) || self.shelves[i].stock == 0 {
            return self.emit_customer(s, "view", vec![p]);
        }
        let tx = self.sell(s, p, i, wanted);
        // A product often bought with this one joins the basket half the time.
        let mut basket = vec![p];
        if let Some(&q) = self.partner.get(&p) {
            let j = s * self.products.len() + q;
            if self.rng.random::<bool>() && !self.stopped(j) && self.shelves[j].stock > 0 {
                let wanted = self.rng.random_range(1..=2);
                self.sell_line(s, q, j, &tx, 1, wanted);
                basket.push(q);
            }
        }
        // Some baskets hold an unrelated product too (background co-occurrence).
        if self.rng.random::<f64>() < 0.15 {
            let q = Self::pick(&self.cumulative, &mut self.rng);
            let j = s * self.products.len() + q;
            if !basket.contains(&q) && !self.stopped(j) && self.shelves[j].stock > 0 {
                self.sell_line(s, q, j, &tx, basket.len() as u32, 1);
                basket.push(q);
            }
        }
        if let Some(customer) = tx.customer.clone() {
            self.emit_checkout(s, customer, basket);
        }
    }

    /// A one-line transaction of up to `wanted` units (as many as are in stock).
    fn sell(&mut self, s: usize, p: usize, i: usize, wanted: i32) -> Transaction {
        self.transactions += 1;
        let tx = Transaction {
            id: format!("T{:010}", self.transactions),
            customer: (self.rng.random::<f64>() < 0.7)
                .then(|| format!("C{:05}", self.rng.random_range(1..20_000))),
            payment: PAYMENTS[self.rng.random_range(0..PAYMENTS.len())],
        };
        self.sell_line(s, p, i, &tx, 0, wanted);
        tx
    }

    /// One line of a transaction, sent as its own message keyed by its shelf, so every event of
    /// one store and product stays in one partition.
    fn sell_line(
        &mut self,
        s: usize,
        p: usize,
        i: usize,
        tx: &Transaction,
        line: u32,
        wanted: i32,
    ) {
        let sold = wanted.min(self.shelves[i].stock);
        if sold == 0 {
            return;
        }
        self.emit_sale(s, p, i, tx, line, sold);
        self.move_stock(s, p, i, -sold, "sale");
    }

    fn sale_return(&mut self) {
        let (s, p, i) = self.pick_shelf();
        let tx = Transaction {
            id: format!("R{:010}", self.steps),
            customer: None,
            payment: "card",
        };
        self.emit_sale(s, p, i, &tx, 0, -1);
        self.move_stock(s, p, i, 1, "return");
    }

    fn emit_sale(
        &mut self,
        s: usize,
        p: usize,
        i: usize,
        tx: &Transaction,
        line: u32,
        quantity: i32,
    ) {
        let price = self.shelves[i].price;
        let malformed = self.rng.random::<f64>() < self.config.malformed_rate;
        let payload = if malformed {
            self.truth.malformed += 1;
            self.malformed_sale(s, &tx.id)
        } else {
            serde_json::json!({
                "transaction_id": tx.id,
                "store_id": self.stores[s].id,
                "customer_id": tx.customer,
                "payment_method": tx.payment,
                "timestamp": rfc3339(self.clock_ms),
                "items": [{"line": line, "product_id": self.products[p].sku, "category": self.products[p].category,
                    "quantity": quantity, "unit_price": price}],
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
        let emptied = before > 0 && shelf.stock == 0;
        let capacity = shelf.capacity;
        let reorder_point = shelf.capacity / 4;
        if shelf.stock <= reorder_point && shelf.restock_due.is_none() {
            let due = self.clock_ms + self.products[p].lead_time_ms;
            shelf.restock_due = Some(due);
            self.schedule(due, Due::Restock(i));
        }
        if emptied {
            let now = self.clock_ms;
            self.record(IncidentKind::StockOut, s, p, now, now, capacity as f64);
        }
        self.emit_inventory(s, p, i, change, reason);
    }

    fn emit_inventory(&mut self, s: usize, p: usize, i: usize, change: i32, reason: &str) {
        let shelf = &self.shelves[i];
        let payload = serde_json::json!({
            "update_id": format!("U{:010}", self.offsets.values().sum::<i64>()),
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

    fn restock(&mut self, i: usize) {
        let (s, p) = self.shelf_coords(i);
        let shelf = &mut self.shelves[i];
        let change = shelf.capacity - shelf.stock;
        shelf.stock = shelf.capacity;
        shelf.restock_due = None;
        self.emit_inventory(s, p, i, change, "restock");
    }

    /// Damaged goods written off: a recorded loss (unlike theft).
    fn damage(&mut self) {
        let (s, p, i) = self.pick_shelf();
        if self.shelves[i].stock > 0 {
            let lost = self.rng.random_range(1..=3).min(self.shelves[i].stock);
            self.move_stock(s, p, i, -lost, "shrinkage");
        }
    }

    fn price_change(&mut self) {
        let (s, p, i) = self.pick_shelf();
        if self.shelves[i].special_until.is_some() {
            return self.emit_customer(s, "view", vec![p]);
        }
        let factor = if self.rng.random::<f64>() < 0.5 {
            0.9
        } else {
            1.05
        };
        let new = ((self.products[p].base_price * factor * 100.0).round() / 100.0).max(0.19);
        self.set_price(s, p, i, new);
    }

    fn set_price(&mut self, s: usize, p: usize, i: usize, new: f64) {
        let old = self.shelves[i].price;
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
        let customer = format!("C{:05}", self.rng.random_range(1..20_000));
        self.emit_customer_as(s, customer, kind, products);
    }

    /// The basket of a sale, as the customer event `checkout`.
    fn emit_checkout(&mut self, s: usize, customer: String, basket: Vec<usize>) {
        self.emit_customer_as(s, customer, "checkout", basket);
    }

    fn emit_customer_as(&mut self, s: usize, customer: String, kind: &str, products: Vec<usize>) {
        let key_product = products.first().copied().unwrap_or(0);
        let payload = serde_json::json!({
            "event_id": format!("E{:010}", self.offsets.values().sum::<i64>()),
            "customer_id": customer,
            "store_id": self.stores[s].id,
            "event_type": kind,
            "product_ids": products.iter().map(|&p| self.products[p].sku.clone()).collect::<Vec<_>>(),
            "timestamp": rfc3339(self.clock_ms),
        })
        .to_string();
        self.push(CUSTOMERS, s, key_product, payload);
    }

    /// Key `store:product`; the partition is a stable hash of the key. Now and then the same
    /// message goes out twice (a producer retry), as `duplicate_rate` asks.
    fn push(&mut self, topic: &'static str, s: usize, p: usize, payload: String) {
        let key = format!("{}:{}", self.stores[s].id, self.products[p].sku);
        let partition = (fnv1a(key.as_bytes()) % self.config.partitions as u64) as i32;
        let copies = if self.config.duplicate_rate > 0.0
            && self.rng.random::<f64>() < self.config.duplicate_rate
        {
            self.truth.duplicates += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let offset = self.offsets.entry((topic, partition)).or_insert(0);
            let record = RawRecord {
                topic: topic.to_string(),
                partition,
                offset: *offset,
                key: Some(key.clone().into_bytes()),
                payload: payload.clone().into_bytes(),
                timestamp: self.clock_ms,
            };
            *offset += 1;
            self.out.push_back(record);
        }
    }
}

struct Transaction {
    id: String,
    customer: Option<String>,
    payment: &'static str,
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
        let truth = s.ground_truth().clone();
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
}
