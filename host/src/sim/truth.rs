//! Ground truth: every signal the simulator injected, to score detectors against.

use serde::{Deserialize, Serialize};

/// What kind of signal an [`Incident`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub kind: IncidentKind,
    pub store_id: String,
    pub product_id: String,
    pub start: i64,
    pub end: i64,
    pub magnitude: f64,
}

/// Everything the simulator injected, to score detectors against.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroundTruth {
    /// The simulated time reached (ms) when this was taken (`ground_truth.json` of a run).
    #[serde(default)]
    pub until: i64,
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
