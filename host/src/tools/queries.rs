//! The SQL files of `sql/queries/`, as the demo runs them and the tests check them.

/// The seed's sample queries (see `sql/queries/seed_samples.sql`).
pub const SEED_SAMPLES: &str = include_str!("../../../sql/queries/seed_samples.sql");

/// Answers to the seed's five learning exercises (see `sql/queries/exercises.sql`).
pub const EXERCISES: &str = include_str!("../../../sql/queries/exercises.sql");

/// The named queries of a file in `sql/queries/` (`-- name: x` before each), comments dropped.
pub fn named_queries(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("-- name:") {
            out.push((name.trim().to_string(), String::new()));
        } else if !line.trim_start().starts_with("--") {
            if let Some((_, sql)) = out.last_mut() {
                sql.push_str(line);
                sql.push('\n');
            }
        }
    }
    out.into_iter()
        .map(|(n, s)| (n, s.trim().trim_end_matches(';').to_string()))
        .collect()
}
