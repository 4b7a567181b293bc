//! The retail topics, named once: what the simulator writes, the Kafka source reads by default,
//! and the Kafka sink writes alerts and dead letters to.

pub const SALES: &str = "retail-sales-transactions";
pub const INVENTORY: &str = "retail-inventory-updates";
pub const PRICES: &str = "retail-price-changes";
pub const CUSTOMERS: &str = "retail-customer-events";

/// The four input topics, in the seed's order.
pub const RETAIL: [&str; 4] = [SALES, INVENTORY, PRICES, CUSTOMERS];

/// Alerts from any rule, produced by the Kafka sink.
pub const ALERTS: &str = "retail-restock-alerts";

/// Dead letters, produced by the Kafka sink.
pub const DEAD_LETTERS: &str = "retail-dead-letters";
