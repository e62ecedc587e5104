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
