//! What the simulated chain sells and where: categories, products, stores, and demand over time.

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

pub(super) const CITIES: [&str; 6] = ["Lisbon", "Porto", "Madrid", "Lyon", "Milan", "Berlin"];
pub(super) const PAYMENTS: [&str; 4] = ["card", "cash", "mobile", "card"];
pub(super) const HOUR_MS: i64 = 3_600_000;
pub(super) const DAY_MS: i64 = 24 * HOUR_MS;
