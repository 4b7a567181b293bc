//! `host top`: the live snapshot of a running host as a terminal table, redrawn every second
//! (like `vector top`). [`render`] is a pure function of the snapshot, so it is tested without
//! a terminal.

use std::fmt::Write;
use std::time::Duration;

use super::Live;

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error("asking {url}: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} did not answer with a shelfstream status: {source}")]
    Body {
        url: String,
        source: serde_json::Error,
    },
}

/// Ask a running host for its snapshot (`/api/status`).
pub async fn fetch(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
) -> Result<Live, TopError> {
    let url = format!("{}/api/status", base.trim_end_matches('/'));
    let mut request = client.get(&url).timeout(Duration::from_secs(5));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let failed = |source| TopError::Request {
        url: url.clone(),
        source,
    };
    let response = request.send().await.map_err(failed)?;
    let status = response.status();
    let body = response.text().await.map_err(failed)?;
    if !status.is_success() {
        return Err(TopError::Status {
            url,
            status: status.as_u16(),
            body,
        });
    }
    serde_json::from_str(&body).map_err(|source| TopError::Body { url, source })
}

/// Redraw the table every second until interrupted (`once`: print it one time).
pub async fn run(base: &str, token: Option<&str>, once: bool) -> Result<(), TopError> {
    let client = reqwest::Client::new();
    loop {
        let width = (std::env::var("COLUMNS").ok())
            .and_then(|c| c.parse().ok())
            .unwrap_or(160);
        let text = match fetch(&client, base, token).await {
            Ok(live) => render(&live, base, width),
            Err(e) if !once => format!("shelfstream {base}: {e}\n(retrying every second)"),
            Err(e) => return Err(e),
        };
        if once {
            println!("{text}");
            return Ok(());
        }
        // Clear the screen, cursor home, then the table.
        println!("\x1b[2J\x1b[H{text}");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The snapshot as lines of text at most `width` columns wide.
pub fn render(live: &Live, url: &str, width: usize) -> String {
    let mut out = String::new();
    let rate = live.rates.last().map_or(0.0, |r| r.records_per_sec);
    let lag: i64 = live.partitions.iter().filter_map(|p| p.lag).sum();
    let ready = match live.ready.ready {
        true => "ready".to_string(),
        false => format!("NOT READY: {}", live.ready.reasons.join("; ")),
    };
    let _ = writeln!(
        out,
        "shelfstream {url}  up {}  {} records  {rate:.0}/s  lag {lag}  {ready}",
        duration(live.uptime_secs),
        live.records_in
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<24} {:<22} {:<12} {:>11} {:>11} {:>9} {:>7} {:>8} {:<11}",
        "STAGE", "PLUGIN", "VERSION", "IN", "OUT", "IN/S", "ERRORS", "CALL MS", "STATUS"
    );
    for s in &live.stages {
        let _ = writeln!(
            out,
            "{:<24} {:<22} {:<12} {:>11} {:>11} {:>9.0} {:>7} {:>8.2} {:<11}",
            cut(&s.name, 24),
            cut(&s.plugin, 22),
            cut(&s.version, 12),
            s.events_in,
            s.events_out,
            s.rate_in,
            s.failures + s.dead_letters,
            s.mean_call_ms,
            s.status
        );
    }
    if !live.partitions.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<32} {:>5} {:>12} {:>10} {:>20}",
            "TOPIC", "PART", "POSITION", "LAG", "WATERMARK"
        );
        for p in &live.partitions {
            let lag = p.lag.map_or("-".to_string(), |l| l.to_string());
            let wm = p.watermark_ms.map_or("-".to_string(), time_of);
            let _ = writeln!(
                out,
                "{:<32} {:>5} {:>12} {:>10} {:>20}",
                cut(&p.topic, 32),
                p.partition,
                p.position,
                lag,
                wm
            );
        }
    }
    if !live.sinks.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<14} {:>12} {:>10} {:>8} {:>14}",
            "SINK", "ROWS", "QUEUED", "RETRIES", "HELD PIPELINE"
        );
        for s in &live.sinks {
            let _ = writeln!(
                out,
                "{:<14} {:>12} {:>10} {:>8} {:>13.1}s",
                cut(&s.name, 14),
                s.rows,
                s.queued,
                s.retries,
                s.backpressure_secs
            );
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "RECENT ALERTS");
    for a in live.alerts.iter().rev().take(5) {
        let field = |k: &str| a.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let _ = writeln!(
            out,
            "  {} {} {} {}",
            field("rule"),
            field("store_id"),
            field("product_id"),
            field("message")
        );
    }
    if live.alerts.is_empty() {
        let _ = writeln!(out, "  (none yet)");
    }
    out.lines()
        .map(|l| cut(l.trim_end(), width))
        .collect::<Vec<_>>()
        .join("\n")
}

fn cut(s: &str, width: usize) -> String {
    match s.char_indices().nth(width) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

fn duration(secs: f64) -> String {
    let s = secs as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn time_of(ms: i64) -> String {
    let s = ms.div_euclid(1000);
    let (days, rem) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{PartitionLive, RatePoint, Readiness, StageLive};

    #[test]
    fn the_table_shows_stages_partitions_and_alerts_within_the_width() {
        let live = Live {
            uptime_secs: 3725.0,
            records_in: 1234,
            stages: vec![StageLive {
                name: "sales-cleaner".into(),
                plugin: "sales-cleaner".into(),
                version: "0123456789ab".into(),
                events_in: 1234,
                events_out: 1200,
                rate_in: 41.0,
                dead_letters: 34,
                status: "running".into(),
                ..Default::default()
            }],
            partitions: vec![PartitionLive {
                topic: "retail-sales-transactions".into(),
                partition: 3,
                position: 90,
                lag: Some(10),
                watermark_ms: Some(1_764_547_200_000),
                ..Default::default()
            }],
            alerts: vec![
                serde_json::json!({"rule": "low_stock", "store_id": "S001", "product_id": "SKU-00007", "message": "3 left"}),
            ],
            rates: vec![RatePoint {
                uptime_secs: 3725.0,
                records_per_sec: 41.0,
                lag: 10,
            }],
            ready: Readiness {
                ready: true,
                reasons: vec![],
            },
            ..Default::default()
        };
        let text = render(&live, "http://127.0.0.1:9464", 120);
        assert!(
            text.starts_with(
                "shelfstream http://127.0.0.1:9464  up 1:02:05  1234 records  41/s  lag 10  ready"
            ),
            "{text}"
        );
        let stage = text
            .lines()
            .find(|l| l.starts_with("sales-cleaner"))
            .expect("a stage row");
        let cells: Vec<&str> = stage.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "sales-cleaner",
                "sales-cleaner",
                "0123456789ab",
                "1234",
                "1200",
                "41",
                "34",
                "0.00",
                "running"
            ]
        );
        assert!(text.contains("retail-sales-transactions"), "{text}");
        assert!(text.contains("2025-12-01 00:00:00"), "{text}");
        assert!(text.contains("low_stock S001 SKU-00007 3 left"), "{text}");
        assert!(render(&live, "u", 40)
            .lines()
            .all(|l| l.chars().count() <= 40));
    }
}
