//! The messages a simulation step writes: sales, inventory updates, price changes and
//! customer events, as the JSON the cleaners read.

use rand::Rng;

use super::generator::{fnv1a, Due, Simulator, Transaction};
use super::rfc3339;
use super::truth::IncidentKind;
use crate::plugin::RawRecord;
use crate::topics::{CUSTOMERS, INVENTORY, PRICES, SALES};

impl Simulator {
    pub(super) fn emit_sale(
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

    pub(super) fn malformed_sale(&mut self, s: usize, tx: &str) -> String {
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

    pub(super) fn move_stock(&mut self, s: usize, p: usize, i: usize, change: i32, reason: &str) {
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

    pub(super) fn emit_inventory(
        &mut self,
        s: usize,
        p: usize,
        i: usize,
        change: i32,
        reason: &str,
    ) {
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

    pub(super) fn restock(&mut self, i: usize) {
        let (s, p) = self.shelf_coords(i);
        let shelf = &mut self.shelves[i];
        let change = shelf.capacity - shelf.stock;
        shelf.stock = shelf.capacity;
        shelf.restock_due = None;
        self.emit_inventory(s, p, i, change, "restock");
    }

    /// Damaged goods written off: a recorded loss (unlike theft).
    pub(super) fn damage(&mut self) {
        let (s, p, i) = self.pick_shelf();
        if self.shelves[i].stock > 0 {
            let lost = self.rng.random_range(1..=3).min(self.shelves[i].stock);
            self.move_stock(s, p, i, -lost, "shrinkage");
        }
    }

    pub(super) fn price_change(&mut self) {
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

    pub(super) fn set_price(&mut self, s: usize, p: usize, i: usize, new: f64) {
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

    pub(super) fn customer_event(&mut self) {
        let (s, p, _) = self.pick_shelf();
        let kind = if self.rng.random::<f64>() < 0.5 {
            "visit"
        } else {
            "view"
        };
        let products = if kind == "view" { vec![p] } else { Vec::new() };
        self.emit_customer(s, kind, products);
    }

    pub(super) fn emit_customer(&mut self, s: usize, kind: &str, products: Vec<usize>) {
        let customer = format!("C{:05}", self.rng.random_range(1..20_000));
        self.emit_customer_as(s, customer, kind, products);
    }

    /// The basket of a sale, as the customer event `checkout`.
    pub(super) fn emit_checkout(&mut self, s: usize, customer: String, basket: Vec<usize>) {
        self.emit_customer_as(s, customer, "checkout", basket);
    }

    pub(super) fn emit_customer_as(
        &mut self,
        s: usize,
        customer: String,
        kind: &str,
        products: Vec<usize>,
    ) {
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
    pub(super) fn push(&mut self, topic: &'static str, s: usize, p: usize, payload: String) {
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
                headers: Vec::new(),
            };
            *offset += 1;
            self.out.push_back(record);
        }
    }
}
