//! Plugin parameters from the pipeline config, with typed getters.
//!
//! Every getter records the name it was asked for; [`Params::finish`] (called by the SDK after
//! `Plugin::new`) rejects any parameter the plugin never read, so a typo in the config is an
//! error that names the key instead of a silently ignored setting.

use std::collections::BTreeSet;
use std::str::FromStr;

pub struct Params {
    values: Vec<(String, String)>,
    read: BTreeSet<String>,
}

impl Params {
    pub fn new(values: Vec<(String, String)>) -> Self {
        Params {
            values,
            read: BTreeSet::new(),
        }
    }

    /// The raw string value of `name`, if given.
    pub fn raw(&mut self, name: &str) -> Option<&str> {
        self.read.insert(name.to_string());
        self.values
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A value parsed with `FromStr`, or `default` when absent.
    pub fn get<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e| format!("parameter {name}={v:?}: {e}")),
        }
    }

    /// A number that must lie in `min..=max`.
    pub fn number(&mut self, name: &str, default: f64, min: f64, max: f64) -> Result<f64, String> {
        let v: f64 = self.get(name, default)?;
        if v.is_finite() && (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(format!(
                "parameter {name}={v} is out of range (expected {min} to {max})"
            ))
        }
    }

    /// A duration such as `500ms`, `30s`, `5m`, `1h`, `7d`, in milliseconds; must be positive.
    pub fn duration_ms(&mut self, name: &str, default_ms: i64) -> Result<i64, String> {
        match self.raw(name) {
            None => Ok(default_ms),
            Some(v) => parse_duration_ms(v).map_err(|e| format!("parameter {name}={v:?}: {e}")),
        }
    }

    /// Fail on any parameter that was given but never read.
    pub fn finish(self) -> Result<(), String> {
        let unknown: Vec<&str> = self
            .values
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !self.read.contains(*k))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            let known: Vec<&str> = self.read.iter().map(String::as_str).collect();
            Err(format!(
                "unknown parameter(s) {} (this plugin accepts: {})",
                unknown.join(", "),
                known.join(", ")
            ))
        }
    }
}

/// Parse `500ms`, `30s`, `5m`, `1h`, `7d` (a bare number means milliseconds).
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("not a duration (try 30s, 5m, 1h): {text:?}"))?;
    let scale = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m, h, d)"
            ))
        }
    };
    match n.checked_mul(scale) {
        Some(ms) if ms > 0 => Ok(ms),
        _ => Err(format!("duration must be positive and finite: {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kv: &[(&str, &str)]) -> Params {
        Params::new(
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn typed_getters_and_defaults() {
        let mut p = params(&[("threshold", "0.25"), ("window", "5m")]);
        assert_eq!(p.number("threshold", 0.1, 0.0, 1.0).unwrap(), 0.25);
        assert_eq!(p.duration_ms("window", 1).unwrap(), 300_000);
        assert_eq!(p.get("missing", 7u32).unwrap(), 7);
        p.finish().unwrap();
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let mut p = params(&[("threshold", "2"), ("window", "5 weeks"), ("n", "x")]);
        let e = p.number("threshold", 0.1, 0.0, 1.0).unwrap_err();
        assert!(
            e.contains("threshold=2") && e.contains("out of range"),
            "{e}"
        );
        let e = p.duration_ms("window", 1).unwrap_err();
        assert!(e.contains("window") && e.contains("unit"), "{e}");
        let e = p.get::<u32>("n", 1).unwrap_err();
        assert!(e.contains("n=\"x\""), "{e}");
    }

    #[test]
    fn unknown_parameters_are_rejected_by_name() {
        let mut p = params(&[("threshold", "0.5"), ("treshold", "0.5")]);
        p.number("threshold", 0.1, 0.0, 1.0).unwrap();
        let e = p.finish().unwrap_err();
        assert!(
            e.contains("treshold") && e.contains("accepts: threshold"),
            "{e}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("250").unwrap(), 250);
        assert_eq!(parse_duration_ms("2s").unwrap(), 2_000);
        assert_eq!(parse_duration_ms("1h").unwrap(), 3_600_000);
        assert_eq!(parse_duration_ms("7d").unwrap(), 604_800_000);
        assert!(parse_duration_ms("0s").is_err());
        assert!(parse_duration_ms("s").is_err());
    }
}
