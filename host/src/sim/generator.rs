//! The simulation: shelves, stock, prices, customers and the agenda of what happens when.

use std::collections::{BTreeMap, VecDeque};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

use super::catalog::{intensity, Product, Store, CATEGORIES, CITIES, DAY_MS, HOUR_MS, PAYMENTS};
use super::truth::{GroundTruth, Incident, IncidentKind};
use super::SimulatorConfig;
use crate::plugin::RawRecord;

#[derive(Debug, Clone)]
pub(super) struct Shelf {
    pub(super) stock: i32,
    pub(super) capacity: i32,
    pub(super) price: f64,
    pub(super) restock_due: Option<i64>,
    /// A promotion or a price error is running until then.
    pub(super) special_until: Option<i64>,
    pub(super) promotion: bool,
    pub(super) stops_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Due {
    Restock(usize),
    BurstSale(usize),
    /// Restore the shelf's normal price (end of a promotion or a price error).
    NormalPrice(usize),
}

pub struct Simulator {
    pub(super) rng: SmallRng,
    pub stores: Vec<Store>,
    pub products: Vec<Product>,
    pub(super) shelves: Vec<Shelf>,
    /// Cumulative popularity for weighted product choice.
    pub(super) cumulative: Vec<f64>,
    pub(super) store_cumulative: Vec<f64>,
    /// Product -> the product often bought with it.
    pub(super) partner: BTreeMap<usize, usize>,
    pub(super) agenda: BTreeMap<(i64, u64), Due>,
    pub(super) agenda_seq: u64,
    pub(super) transactions: u64,
    pub(super) clock_ms: i64,
    pub(super) step_ms: f64,
    pub(super) fraction: f64,
    pub(super) steps: u64,
    pub(super) config: SimulatorConfig,
    pub(super) offsets: BTreeMap<(&'static str, i32), i64>,
    pub(super) out: VecDeque<RawRecord>,
    pub(super) truth: GroundTruth,
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

    /// What was injected so far (stopped shelves are known from the start), until now.
    pub fn ground_truth(&self) -> GroundTruth {
        GroundTruth {
            until: self.clock_ms,
            ..self.truth.clone()
        }
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

    pub(super) fn schedule(&mut self, at: i64, what: Due) {
        self.agenda_seq += 1;
        self.agenda.insert((at, self.agenda_seq), what);
    }

    pub(super) fn run_agenda(&mut self) {
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
    pub(super) fn inject(&mut self, dt_ms: f64) {
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

    pub(super) fn record(
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

    pub(super) fn stopped(&self, i: usize) -> bool {
        self.shelves[i].stops_at.is_some_and(|t| self.clock_ms >= t)
    }

    pub(super) fn shelf_coords(&self, i: usize) -> (usize, usize) {
        (i / self.products.len(), i % self.products.len())
    }

    pub(super) fn pick(cumulative: &[f64], rng: &mut SmallRng) -> usize {
        let total = *cumulative.last().expect("non-empty");
        let x = rng.random::<f64>() * total;
        cumulative
            .partition_point(|&c| c < x)
            .min(cumulative.len() - 1)
    }

    pub(super) fn pick_shelf(&mut self) -> (usize, usize, usize) {
        let s = Self::pick(&self.store_cumulative, &mut self.rng);
        let p = Self::pick(&self.cumulative, &mut self.rng);
        (s, p, s * self.products.len() + p)
    }

    pub(super) fn sale(&mut self) {
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
    pub(super) fn sell(&mut self, s: usize, p: usize, i: usize, wanted: i32) -> Transaction {
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
    pub(super) fn sell_line(
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

    pub(super) fn sale_return(&mut self) {
        let (s, p, i) = self.pick_shelf();
        let tx = Transaction {
            id: format!("R{:010}", self.steps),
            customer: None,
            payment: "card",
        };
        self.emit_sale(s, p, i, &tx, 0, -1);
        self.move_stock(s, p, i, 1, "return");
    }
}

pub(super) struct Transaction {
    pub(super) id: String,
    pub(super) customer: Option<String>,
    pub(super) payment: &'static str,
}

pub(super) fn running_sum(values: impl Iterator<Item = f64>) -> Vec<f64> {
    values
        .scan(0.0, |acc, v| {
            *acc += v;
            Some(*acc)
        })
        .collect()
}

pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
