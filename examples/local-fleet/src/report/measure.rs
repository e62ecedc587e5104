//! A scenario's figures from its recording: pure, so each definition is tested on its own.

use std::time::Duration;

use super::run::Recording;
use super::scenarios::{Plan, Scenario};
use crate::figures::{self, Failback};
use crate::load::{self, Sample, Tally};

/// Time until >= 99% of new requests avoid the bad member.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Avoid {
    After(Duration),
    /// Not within the measured window (its length).
    NotReached(Duration),
}

/// A scenario's row of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub gets: Tally,
    pub posts: Tally,
    pub avoid: Option<Avoid>,
    pub flaps: u32,
    pub p50: Duration,
    pub p99: Duration,
    /// Process RSS at the traffic's start and end (`None`: not sampled).
    pub rss_start_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    /// Scenario-specific measured facts (a kept share, a failback, the churn's changes).
    pub notes: Vec<String>,
}

/// A passive-health transition the plugin logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ejected { cluster: String, for_ms: u64 },
    Recovered { cluster: String },
}

/// The transition a plugin log line reports (`fleetgate: ejected upstream U (cluster C) for
/// N ms ...`, `fleetgate: upstream U (cluster C) recovered`), if any.
pub fn parse_health(message: &str) -> Option<Health> {
    let rest = message.strip_prefix("fleetgate: ")?;
    let (_, after) = rest.split_once("(cluster ")?;
    let (cluster, tail) = after.split_once(')')?;
    let cluster = cluster.to_owned();
    if rest.starts_with("ejected ") {
        let for_ms = tail
            .strip_prefix(" for ")?
            .split_once(" ms")?
            .0
            .parse()
            .ok()?;
        Some(Health::Ejected { cluster, for_ms })
    } else if tail.trim() == "recovered" {
        Some(Health::Recovered { cluster })
    } else {
        None
    }
}

/// The passive-health transitions of a run, in words (the first `MAX` of them).
fn health_note(recording: &Recording) -> Option<String> {
    const MAX: usize = 6;
    let transitions: Vec<String> = recording
        .health_log
        .iter()
        .filter_map(|(at, line)| Some((at, parse_health(line)?)))
        .map(|(at, health)| match health {
            Health::Ejected { cluster, for_ms } => {
                format!("{cluster} ejected at {} for {} s", secs(*at), for_ms / 1000)
            }
            Health::Recovered { cluster } => format!("{cluster} recovered at {}", secs(*at)),
        })
        .collect();
    if transitions.is_empty() {
        return None;
    }
    let more = transitions.len().saturating_sub(MAX);
    let mut note = format!(
        "passive health: {}",
        transitions[..transitions.len().min(MAX)].join(", ")
    );
    if more > 0 {
        note.push_str(&format!(" (+{more} more)"));
    }
    Some(note)
}

/// Both methods' samples.
pub fn all_samples(recording: &Recording) -> Vec<&Sample> {
    recording.gets.iter().chain(&recording.posts).collect()
}

/// When event `index` really happened, and the next event (or the end).
fn phase(recording: &Recording, index: usize, end: Duration) -> Option<(Duration, Duration)> {
    let at = recording.events.get(index)?.0;
    let next = recording.events.get(index + 1).map_or(end, |e| e.0);
    Some((at, next))
}

/// Failover of `member` after event `index`: measured until the next event, the end, or the
/// end of the first passive-health ejection, whichever is first (the ejected member's
/// probation probes after that are by design).
fn avoid(
    recording: &Recording,
    s: &Scenario,
    plan: &Plan,
    member: &str,
    index: usize,
) -> Option<Avoid> {
    let (at, next) = phase(recording, index, s.duration)?;
    let until = next.min(at + plan.ejection());
    let samples: Vec<Sample> = all_samples(recording).into_iter().cloned().collect();
    Some(match load::failover_time(&samples, member, at, until) {
        Some(after) => Avoid::After(after),
        None => Avoid::NotReached(until - at),
    })
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn failback_note(
    recording: &Recording,
    s: &Scenario,
    member: &str,
    index: usize,
) -> Option<String> {
    let (at, until) = phase(recording, index, s.duration)?;
    let samples = all_samples(recording);
    let share = s.design_share(member);
    let Failback { first, full, .. } = figures::failback(&samples, member, at, until, share);
    let first = first.map_or("none".to_owned(), |d| format!("+{}", secs(d)));
    let full = full.map_or("not within the run".to_owned(), |d| format!("+{}", secs(d)));
    Some(format!(
        "failback of {member}: first request {first}, 90% of its {share:.0}% share (1 s window) {full}"
    ))
}

fn keep_note(recording: &Recording, member: &str, index: usize, end: Duration) -> Option<String> {
    let (at, until) = phase(recording, index, end)?;
    let samples = all_samples(recording);
    let before = figures::decided_share(&samples, member, Duration::ZERO, at);
    let during = figures::decided_share(&samples, member, at, until);
    Some(format!(
        "{member}'s share while unreachable: {during:.1}% (before: {before:.1}%)"
    ))
}

/// Bytes of the recording's sample buffers (capacity, not length: what the client holds).
fn sample_buffers(recording: &Recording) -> usize {
    (recording.gets.capacity() + recording.posts.capacity()) * std::mem::size_of::<Sample>()
}

/// The figures of `scenario` from `recording`.
pub fn figures(recording: &Recording, s: &Scenario, plan: &Plan) -> Figures {
    let samples = all_samples(recording);
    let mut notes = Vec::new();
    if let Some((member, index)) = s.keep {
        notes.extend(keep_note(recording, member, index, s.duration));
    }
    if let Some((member, index)) = s.failback {
        notes.extend(failback_note(recording, s, member, index));
    }
    notes.extend(health_note(recording));
    if let Some(churn) = s.churn {
        notes.push(format!(
            "{} config changes published ({}'s ready replicas alternating every {} ms); the RSS includes the client's {} recorded requests, whose buffers alone take {:.1} MiB",
            recording.changes,
            churn.member,
            churn.period.as_millis(),
            samples.len(),
            sample_buffers(recording) as f64 / (1024.0 * 1024.0)
        ));
    }
    Figures {
        gets: Tally::of(&recording.gets),
        posts: Tally::of(&recording.posts),
        avoid: s
            .avoid
            .and_then(|(member, index)| avoid(recording, s, plan, member, index)),
        flaps: figures::flaps(&samples, s.members, s.duration),
        p50: figures::latency_percentile(&samples, 50),
        p99: figures::latency_percentile(&samples, 99),
        rss_start_kib: recording.rss.first().map(|r| r.1),
        rss_end_kib: recording.rss.last().map(|r| r.1),
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugins_health_lines_parse_and_others_do_not() {
        assert_eq!(
            parse_health("fleetgate: ejected upstream outbound|80|hz-b|shop (cluster hz-b) for 10000 ms after consecutive failures"),
            Some(Health::Ejected { cluster: "hz-b".to_owned(), for_ms: 10_000 })
        );
        assert_eq!(
            parse_health("fleetgate: upstream outbound|80|hz-b|shop (cluster hz-b) recovered"),
            Some(Health::Recovered {
                cluster: "hz-b".to_owned()
            })
        );
        assert_eq!(
            parse_health("fleetgate: config accepted (revision abc)"),
            None
        );
        assert_eq!(parse_health("something else"), None);
    }
}
