//! A diff report as a short text table (the terminal) and as Markdown (a page a person reads).

use std::fmt::Write;

use serde_json::{Map, Value};

use super::{Report, RuleDiff, TableDiff, TruthScore};

/// The short table: per table the rows on each side and how they differ; alerts per rule.
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "baseline  {}\ncandidate {}", r.baseline, r.candidate);
    if let Some(stages) = &r.stages {
        let _ = writeln!(out, "stages    {} (what the replay ran)", stages.join(", "));
    }
    out.push('\n');
    plain(&mut out, &TABLE_HEAD, r.tables.iter().map(table_cells));
    if !r.alerts.is_empty() {
        out.push('\n');
        plain(&mut out, &RULE_HEAD, r.alerts.iter().map(rule_cells));
    }
    if !r.ground_truth.is_empty() {
        out.push('\n');
        plain(
            &mut out,
            &TRUTH_HEAD,
            r.ground_truth.iter().map(truth_cells),
        );
    }
    for note in &r.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let _ = writeln!(
        out,
        "\n{} divergent rows (tolerance {:e})",
        r.divergent, r.tolerance
    );
    out
}

/// The whole report as Markdown.
pub fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Diff: {} against {}\n", r.candidate, r.baseline);
    let _ = writeln!(
        out,
        "Range {} .. {}; numbers compared with relative tolerance {:e}; **{} divergent rows**.\n",
        r.from.as_deref().unwrap_or("(start)"),
        r.to.as_deref().unwrap_or("(end)"),
        r.tolerance,
        r.divergent
    );
    for note in &r.notes {
        let _ = writeln!(out, "Note: {note}.\n");
    }
    markdown_table(&mut out, &TABLE_HEAD, r.tables.iter().map(table_cells));
    if !r.alerts.is_empty() {
        let _ = writeln!(out, "\n## Alerts per rule\n");
        markdown_table(&mut out, &RULE_HEAD, r.alerts.iter().map(rule_cells));
        for a in r
            .alerts
            .iter()
            .filter(|a| !a.added.is_empty() || !a.removed.is_empty())
        {
            let _ = writeln!(out, "\n### {}\n", a.rule);
            for (what, rows) in [("added", &a.added), ("removed", &a.removed)] {
                for row in rows {
                    let _ = writeln!(out, "- {what}: {}", alert_line(row));
                }
            }
        }
    }
    if !r.ground_truth.is_empty() {
        let _ = writeln!(out, "\n## Against the ground truth\n");
        markdown_table(
            &mut out,
            &TRUTH_HEAD,
            r.ground_truth.iter().map(truth_cells),
        );
        let _ = writeln!(out, "\nPrecision: alerts about an injected incident over all alerts of the rule; recall: incidents some alert is about over all incidents (found/incidents).");
    }
    for t in r
        .tables
        .iter()
        .filter(|t| t.same != t.baseline_rows || t.same != t.candidate_rows)
    {
        let _ = writeln!(out, "\n## {}\n", t.table);
        for (what, rows) in [
            ("only in the baseline", &t.examples_only_baseline),
            ("only in the candidate", &t.examples_only_candidate),
        ] {
            for row in rows {
                let _ = writeln!(out, "- {what}: `{}`", Value::Object(row.clone()));
            }
        }
        for c in &t.examples_changed {
            let columns: Vec<String> = (c.columns.iter())
                .map(|(k, [b, v])| format!("{k}: {b} -> {v}"))
                .collect();
            let _ = writeln!(
                out,
                "- changed `{}`: {}",
                Value::Object(c.key.clone()),
                columns.join(", ")
            );
        }
        if !t.largest_deltas.is_empty() {
            let _ = writeln!(out, "\nLargest changes:\n\n| key | column | baseline | candidate | relative |\n|---|---|---:|---:|---:|");
            for d in &t.largest_deltas {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {} | {:.3e} |",
                    Value::Object(d.key.clone()),
                    d.column,
                    d.baseline,
                    d.candidate,
                    d.relative
                );
            }
        }
    }
    for (side, quality) in &r.quality {
        let _ = writeln!(out, "\n## Data quality of {side}\n");
        let _ = writeln!(out, "| topic | day | messages | accepted | rejected | duplicates | late | failed |\n|---|---|---:|---:|---:|---:|---:|---:|");
        for (topic, days) in quality {
            for (day, q) in days {
                let rejected: Vec<String> = q
                    .rejected
                    .iter()
                    .map(|(why, n)| format!("{n} {why}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "| {topic} | {day} | {} | {} | {} | {} | {} | {} |",
                    q.messages,
                    q.accepted,
                    match rejected.is_empty() {
                        true => "0".to_string(),
                        false => rejected.join(", "),
                    },
                    q.duplicates,
                    q.late,
                    q.failed
                );
            }
        }
    }
    out
}

fn alert_line(row: &Map<String, Value>) -> String {
    let get = |k: &str| {
        row.get(k)
            .map(|v| v.as_str().map_or(v.to_string(), str::to_string))
            .unwrap_or_default()
    };
    format!(
        "{} {} {} at {} (window {}): {} evidence {}",
        get("severity"),
        get("store_id"),
        get("product_id"),
        get("alert_time"),
        get("window_start"),
        get("message"),
        get("evidence")
    )
}

const TABLE_HEAD: [&str; 8] = [
    "table",
    "baseline",
    "candidate",
    "same",
    "changed",
    "only baseline",
    "only candidate",
    "agreement",
];

fn table_cells(t: &TableDiff) -> Vec<String> {
    let counts = [
        t.baseline_rows,
        t.candidate_rows,
        t.same,
        t.changed,
        t.only_baseline,
        t.only_candidate,
    ];
    let mut cells = vec![t.table.clone()];
    cells.extend(counts.iter().map(u64::to_string));
    cells.push(format!("{:.2}%", 100.0 * t.agreement));
    cells
}

const RULE_HEAD: [&str; 6] = [
    "alert rule",
    "baseline",
    "candidate",
    "added",
    "removed",
    "changed",
];

fn rule_cells(a: &RuleDiff) -> Vec<String> {
    let counts = [
        a.baseline,
        a.candidate,
        a.added.len() as u64,
        a.removed.len() as u64,
        a.changed,
    ];
    let mut cells = vec![a.rule.clone()];
    cells.extend(counts.iter().map(u64::to_string));
    cells
}

const TRUTH_HEAD: [&str; 6] = [
    "alert rule vs truth",
    "incidents",
    "precision (b)",
    "precision (c)",
    "recall (b)",
    "recall (c)",
];

fn truth_cells(t: &TruthScore) -> Vec<String> {
    let (b, c) = (&t.baseline, &t.candidate);
    vec![
        t.rule.clone(),
        b.incidents.to_string(),
        format!("{:.3} ({}/{})", b.precision, b.true_alerts, b.alerts),
        format!("{:.3} ({}/{})", c.precision, c.true_alerts, c.alerts),
        format!("{:.3} ({}/{})", b.recall, b.found, b.incidents),
        format!("{:.3} ({}/{})", c.recall, c.found, c.incidents),
    ]
}

/// A terminal table: the first column left-aligned, the others right-aligned, each as wide as
/// its widest cell.
fn plain(out: &mut String, head: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows.collect();
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            let widest = rows.iter().map(|r| r[i].len()).max().unwrap_or(0);
            match i {
                0 => widest.max(head[0].len()).max(28),
                _ => widest.max(head[i].len()).max(9),
            }
        })
        .collect();
    let line = |out: &mut String, cells: &[&str]| {
        let _ = write!(out, "{:<w$}", cells[0], w = widths[0]);
        for (cell, w) in cells[1..].iter().zip(&widths[1..]) {
            let _ = write!(out, " {cell:>w$}");
        }
        out.push('\n');
    };
    line(out, head);
    for row in &rows {
        line(out, &row.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

/// A Markdown table, numbers right-aligned.
fn markdown_table(out: &mut String, head: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(head.len() - 1));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
}
