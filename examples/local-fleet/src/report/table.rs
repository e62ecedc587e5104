//! The report's table in Markdown: one row per scenario, measured figures or "not run: why".

use std::fmt::Write as _;
use std::time::Duration;

use super::measure::{Avoid, Figures};
use super::Outcome;

/// The table's header cells, in order.
pub const COLUMNS: [&str; 10] = [
    "scenario",
    "requests (GET + POST)",
    ">= 99% of new requests avoid the bad member after",
    "failed GETs",
    "failed POSTs",
    "retried (GET / POST)",
    "flaps",
    "client p50 / p99 (ms)",
    "process RSS start -> end (MiB)",
    "notes",
];

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("not sampled".to_owned(), |k| {
        format!("{:.1}", k as f64 / 1024.0)
    })
}

/// A cell's text: no pipe or line break can break the row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn avoid(avoid: Option<Avoid>) -> String {
    match avoid {
        None => "n/a".to_owned(),
        Some(Avoid::After(d)) => format!("{} ms", d.as_millis()),
        Some(Avoid::NotReached(within)) => {
            format!("not reached within {:.1} s", within.as_secs_f64())
        }
    }
}

fn measured(f: &Figures) -> Vec<String> {
    vec![
        format!("{} + {}", f.gets.total, f.posts.total),
        avoid(f.avoid),
        f.gets.failed.to_string(),
        f.posts.failed.to_string(),
        format!("{} / {}", f.gets.retried, f.posts.retried),
        f.flaps.to_string(),
        format!("{} / {}", ms(f.p50), ms(f.p99)),
        format!("{} -> {}", mib(f.rss_start_kib), mib(f.rss_end_kib)),
        f.notes.join("; "),
    ]
}

/// The Markdown table of `outcomes` (scenario title, outcome).
pub fn render(outcomes: &[(&str, &Outcome)]) -> String {
    let mut table = format!("| {} |\n", COLUMNS.join(" | "));
    let _ = writeln!(table, "|{}", "---|".repeat(COLUMNS.len()));
    for (title, outcome) in outcomes {
        let mut cells = vec![(*title).to_owned()];
        match outcome {
            Outcome::Ran(figures) => cells.extend(measured(figures)),
            Outcome::NotRun(why) => {
                cells.push(format!("not run: {why}"));
                cells.extend(std::iter::repeat_n("-".to_owned(), COLUMNS.len() - 2));
            }
        }
        let cells: Vec<String> = cells.iter().map(|c| cell(c)).collect();
        let _ = writeln!(table, "| {} |", cells.join(" | "));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Tally;

    #[test]
    fn a_row_per_outcome_with_every_column_and_no_number_for_a_scenario_not_run() {
        let figures = Figures {
            gets: Tally {
                total: 10,
                failed: 1,
                retried: 2,
                ..Tally::default()
            },
            posts: Tally::default(),
            avoid: Some(Avoid::After(Duration::from_millis(42))),
            flaps: 0,
            p50: Duration::from_micros(1500),
            p99: Duration::from_millis(12),
            rss_start_kib: Some(2048),
            rss_end_kib: None,
            notes: vec!["a | b".to_owned()],
        };
        let ran = Outcome::Ran(Box::new(figures));
        let not_run = Outcome::NotRun("port in use\nagain".to_owned());
        let table = render(&[("kill", &ran), ("flap", &not_run)]);
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 4);
        for row in &rows {
            // Escaped pipes are not separators.
            assert_eq!(
                row.replace("\\|", "").matches('|').count(),
                COLUMNS.len() + 1,
                "{row}"
            );
        }
        assert!(rows[2]
            .contains("| 10 + 0 | 42 ms | 1 | 0 | 2 / 0 | 0 | 1.5 / 12.0 | 2.0 -> not sampled |"));
        assert!(rows[3].starts_with("| flap | not run: port in use again | - |"));
        assert!(!rows[3].chars().any(|c| c.is_ascii_digit()));
    }
}
