//! The summary a replay prints at the end.

use std::fmt::Write;

use super::ReplaySummary;

/// What a replay read and wrote, and the data quality of its range, as text tables.
pub fn report(s: &ReplaySummary) -> String {
    let mut out = String::new();
    let rate = s.records as f64 / s.processing_secs.max(1e-9);
    let _ = writeln!(
        out,
        "replay {}: {} records in {} batches from {} objects ({}) in {:.1} s, {:.0} events/s",
        s.id,
        s.records,
        s.batches,
        s.objects,
        s.shards.join(", "),
        s.elapsed_secs,
        rate
    );
    if let Some(r) = &s.redrive {
        let _ = writeln!(
            out,
            "  re-drove {} of {} dead letters from {}: {} recovered, {} failed again",
            s.records, r.letters, r.source, r.recovered, r.failed_again
        );
        if r.not_raw + r.duplicates + r.repeats > 0 {
            let _ = writeln!(
                out,
                "  not re-driven: {} typed events or notes (no raw record), {} duplicates dropped by a cleaner, {} repeats of a record",
                r.not_raw, r.duplicates, r.repeats
            );
        }
        if let Some(db) = &r.recovered_into {
            let _ = writeln!(out, "  recovered rows written to the live database {db}");
        }
    }
    let _ = writeln!(
        out,
        "  archive {}  range {} .. {}",
        s.archive,
        s.from.as_deref().unwrap_or("(start)"),
        s.to.as_deref().unwrap_or("(end)")
    );
    if s.skipped > 0 {
        let _ = writeln!(
            out,
            "  {} records of the objects read were outside the range",
            s.skipped
        );
    }
    for (key, value) in &s.params {
        let _ = writeln!(out, "  parameter {key} = {value}");
    }
    if let Some(db) = &s.clickhouse_database {
        let _ = writeln!(out, "  ClickHouse database {db}");
    }
    let _ = writeln!(out, "\n{:<28} {:>10}", "stream", "rows");
    for (stream, rows) in &s.outputs {
        let _ = writeln!(out, "{stream:<28} {rows:>10}");
    }
    let _ = writeln!(out, "{:<28} {:>10}", "dead letters", s.dead_letters);
    let _ = writeln!(
        out,
        "\ndata quality\n{:<28} {:<10} {:>9} {:>9} {:>9} {:>10} {:>6} {:>6}",
        "topic", "day", "messages", "accepted", "rejected", "duplicates", "late", "failed"
    );
    for (topic, days) in &s.quality {
        for (day, q) in days {
            let rejected: u64 = q.rejected.values().sum();
            let _ = writeln!(
                out,
                "{topic:<28} {day:<10} {:>9} {:>9} {:>9} {:>10} {:>6} {:>6}",
                q.messages, q.accepted, rejected, q.duplicates, q.late, q.failed
            );
            for (reason, n) in &q.rejected {
                let _ = writeln!(out, "{:<39}   {n:>6} x {reason}", "");
            }
        }
    }
    out
}
