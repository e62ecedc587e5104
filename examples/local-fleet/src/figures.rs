//! Figures over a run's samples that the demo and the failover report share: shares per time
//! window, latency percentiles, share drops (flapping) and the failback profile of a member
//! that came back. Pure functions of the samples.

use std::time::Duration;

use crate::load::Sample;

/// The `p`th percentile (0..=100) of the samples' client latencies (zero if none).
pub fn latency_percentile(samples: &[&Sample], p: usize) -> Duration {
    let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    latencies.sort();
    latencies
        .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// Who a share counts: the member the plugin chose, or the member that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Decided,
    Served,
}

fn counts_for(sample: &Sample, member: &str, by: By) -> bool {
    let who = match by {
        By::Decided => sample.decided.as_deref(),
        By::Served => sample.served.as_deref(),
    };
    who == Some(member)
}

/// One time window of requests (by when they were sent).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub start: Duration,
    pub requests: usize,
    pub failed: usize,
    /// Percent of the window's requests per member, in the order asked for.
    pub shares: Vec<f64>,
}

/// Consecutive windows of `width` from 0 to `end` over `samples`, each with every member's
/// share (percent of all requests sent in the window, failed ones included).
pub fn windows(
    samples: &[&Sample],
    members: &[&str],
    by: By,
    width: Duration,
    end: Duration,
) -> Vec<Window> {
    let count = (end.as_nanos() / width.as_nanos().max(1)) as usize;
    let mut windows: Vec<Window> = (0..count)
        .map(|i| Window {
            start: width * u32::try_from(i).unwrap_or(u32::MAX),
            requests: 0,
            failed: 0,
            shares: vec![0.0; members.len()],
        })
        .collect();
    for sample in samples {
        let index = (sample.sent.as_nanos() / width.as_nanos().max(1)) as usize;
        let Some(window) = windows.get_mut(index) else {
            continue;
        };
        window.requests += 1;
        window.failed += usize::from(!sample.ok());
        for (share, member) in window.shares.iter_mut().zip(members) {
            *share += f64::from(u8::from(counts_for(sample, member, by)));
        }
    }
    for window in &mut windows {
        let total = window.requests.max(1) as f64;
        for share in &mut window.shares {
            *share *= 100.0 / total;
        }
    }
    windows
}

/// A share drop that counts: more than this many points between consecutive 1 s windows.
pub const FLAP_DROP_POINTS: f64 = 15.0;

/// ... and more than this many standard errors of the difference of two windows' shares: at
/// 100 requests a window, chance alone moves a 50 % share by 15 points every few dozen
/// windows; a member really losing its share moves it by far more.
pub const FLAP_DROP_SIGMAS: f64 = 4.0;

/// A member's share in one window (percent) and the requests the window had.
#[derive(Debug, Clone, Copy)]
pub struct Share {
    pub percent: f64,
    pub requests: usize,
}

/// The change (in points) from `from` to `to` that counts as real: [`FLAP_DROP_POINTS`], and
/// beyond sampling noise: [`FLAP_DROP_SIGMAS`] standard errors of the difference of two
/// shares, with the pooled share (the two-proportion test: as if the share had not changed).
fn moved(from: Share, to: Share) -> f64 {
    let (n1, n2) = (from.requests.max(1) as f64, to.requests.max(1) as f64);
    let p = (from.percent * n1 + to.percent * n2) / (n1 + n2) / 100.0;
    let noise = 100.0 * (p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)).sqrt() * FLAP_DROP_SIGMAS;
    FLAP_DROP_POINTS.max(noise)
}

/// Flaps of one member's share series (one value per 1 s window). A fall is a window a real
/// change ([`moved`]) below the one before; after a fall the member has recovered once a
/// window is a real change above its lowest since the fall; a flap is a fall after such a
/// recovery: the member lost its share, got it back and lost it again. A failover (one fall),
/// a failback ramp (rises) or a ramp down in steps (falls with no recovery between them) is no
/// flap.
pub fn flaps_in(shares: &[Share]) -> u32 {
    let mut flaps = 0;
    // The lowest share since the last fall, while not recovered from it.
    let mut low: Option<Share> = None;
    let mut fell_before = false;
    for pair in shares.windows(2) {
        let (previous, share) = (pair[0], pair[1]);
        if share.percent + moved(previous, share) < previous.percent {
            if fell_before && low.is_none() {
                flaps += 1;
            }
            fell_before = true;
            low = Some(low.map_or(share, |l| lower(l, share)));
        } else if let Some(l) = low {
            low = (share.percent <= l.percent + moved(l, share)).then_some(lower(l, share));
        }
    }
    flaps
}

fn lower(a: Share, b: Share) -> Share {
    if b.percent < a.percent {
        b
    } else {
        a
    }
}

/// Flaps summed over `members`, from their answered shares per 1 s window up to `end`.
pub fn flaps(samples: &[&Sample], members: &[&str], end: Duration) -> u32 {
    let windows = windows(samples, members, By::Served, Duration::from_secs(1), end);
    (0..members.len())
        .map(|m| {
            let series: Vec<Share> = (windows.iter())
                .map(|w| Share {
                    percent: w.shares[m],
                    requests: w.requests,
                })
                .collect();
            flaps_in(&series)
        })
        .sum()
}

/// The percent of requests sent in `[from, until)` that the plugin sent to `member`.
pub fn decided_share(samples: &[&Sample], member: &str, from: Duration, until: Duration) -> f64 {
    let sent: Vec<&&Sample> = samples
        .iter()
        .filter(|s| s.sent >= from && s.sent < until)
        .collect();
    if sent.is_empty() {
        return 0.0;
    }
    let hits = sent
        .iter()
        .filter(|s| counts_for(s, member, By::Decided))
        .count();
    100.0 * hits as f64 / sent.len() as f64
}

/// How a member that came back at some time got its traffic back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Failback {
    /// When the plugin first sent it a request.
    pub first: Option<Duration>,
    /// When its share in a 1 s window first reached 90% of `target`.
    pub full: Option<Duration>,
    /// 1 s windows in which its share fell more than [`FLAP_DROP_POINTS`] below its best so
    /// far (per-second noise at 200 req/s is about 3 points).
    pub dips: u32,
}

/// The failback of `member` after it came back at `at` (requests sent before `until`, at
/// most 120 s), its full share being `target` percent.
pub fn failback(
    samples: &[&Sample],
    member: &str,
    at: Duration,
    until: Duration,
    target: f64,
) -> Failback {
    let first = samples
        .iter()
        .filter(|s| s.sent >= at && s.sent < until && counts_for(s, member, By::Decided))
        .map(|s| s.sent - at)
        .min();
    let mut profile = Failback {
        first,
        full: None,
        dips: 0,
    };
    let mut best: f64 = 0.0;
    let mut start = at;
    let second = Duration::from_secs(1);
    while start + second <= until.min(at + Duration::from_secs(120)) {
        let end = start + second;
        if !samples.iter().any(|s| s.sent >= start && s.sent < end) {
            break;
        }
        let share = decided_share(samples, member, start, end);
        if share + FLAP_DROP_POINTS < best {
            profile.dips += 1;
        }
        best = best.max(share);
        if profile.full.is_none() && share >= 0.9 * target {
            profile.full = Some(end - at);
        }
        start = end;
    }
    profile
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, member: &str, ok: bool) -> Sample {
        Sample {
            sent: Duration::from_millis(ms),
            latency: Duration::from_millis(ms % 10),
            status: Some(if ok { 200 } else { 503 }),
            decided: Some(member.to_owned()),
            served: Some(member.to_owned()),
            attempts: 1,
        }
    }

    /// One window per percentage, each of `requests` requests.
    fn shares(percents: &[f64], requests: usize) -> Vec<Share> {
        (percents.iter())
            .map(|p| Share {
                percent: *p,
                requests,
            })
            .collect()
    }

    #[test]
    fn only_a_share_lost_again_after_it_was_regained_is_a_flap() {
        // Windows of many requests: the 15-point threshold alone decides.
        let big = |v: &[f64]| shares(v, 100_000);
        // Failover (one fall), then a slow ramp back: no flap.
        assert_eq!(flaps_in(&big(&[33.0, 0.0, 0.0, 10.0, 20.0, 33.0])), 0);
        // A ramp down in steps with plateaus (falls, no recovery between them): no flap.
        assert_eq!(
            flaps_in(&big(&[100.0, 80.0, 80.0, 60.0, 60.0, 40.0, 0.0])),
            0
        );
        // Lost, back, lost again: one flap; and again: two.
        assert_eq!(flaps_in(&big(&[33.0, 0.0, 33.0, 0.0])), 1);
        assert_eq!(flaps_in(&big(&[33.0, 0.0, 33.0, 0.0, 33.0, 10.0])), 2);
        // Back by a slow ramp (no single big rise), then lost again: a flap.
        assert_eq!(flaps_in(&big(&[33.0, 0.0, 10.0, 20.0, 30.0, 5.0])), 1);
        // Noise below the threshold never counts.
        assert_eq!(flaps_in(&big(&[33.0, 20.0, 33.0, 19.0, 33.0])), 0);
    }

    #[test]
    fn sampling_noise_of_small_windows_is_no_flap_but_a_share_lost_twice_is() {
        let small = |v: &[f64]| shares(v, 100);
        // A 50 % share at 100 requests a window: 20-point swings are within chance.
        assert_eq!(flaps_in(&small(&[50.0, 30.0, 52.0, 31.0, 50.0])), 0);
        // A member back at a third, one window high by chance (seen in CI at 50 + 50 req/s).
        assert_eq!(
            flaps_in(&small(&[28.0, 34.0, 0.0, 0.0, 4.0, 16.0, 26.0, 48.0, 22.0])),
            0
        );
        // A third lost, regained and lost again is far beyond it.
        assert_eq!(flaps_in(&small(&[33.0, 0.0, 33.0, 0.0])), 1);
    }

    #[test]
    fn windows_count_shares_and_failures_per_window() {
        let samples = [
            sample(10, "a", true),
            sample(20, "b", true),
            sample(30, "b", false),
            sample(120, "a", true),
            sample(5_000, "a", true),
        ];
        let refs: Vec<&Sample> = samples.iter().collect();
        let w = windows(
            &refs,
            &["a", "b"],
            By::Served,
            Duration::from_millis(100),
            Duration::from_millis(300),
        );
        assert_eq!(w.len(), 3);
        assert_eq!((w[0].requests, w[0].failed), (3, 1));
        assert!((w[0].shares[0] - 100.0 / 3.0).abs() < 1e-9);
        assert!((w[0].shares[1] - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(w[1].shares, vec![100.0, 0.0]);
        assert_eq!((w[2].requests, w[2].shares.clone()), (0, vec![0.0, 0.0]));
    }

    #[test]
    fn failback_finds_the_first_request_and_the_full_share() {
        // `a` gets nothing for 1 s after coming back at 1 s, then half, then all.
        let samples: Vec<Sample> = (0..4000u64)
            .step_by(10)
            .map(|ms| {
                let to_a = ms < 1000 || (ms >= 2000 && (ms >= 3000 || ms % 20 == 0));
                sample(ms, if to_a { "a" } else { "b" }, true)
            })
            .collect();
        let refs: Vec<&Sample> = samples.iter().collect();
        let at = Duration::from_secs(1);
        let profile = failback(&refs, "a", at, Duration::from_secs(4), 100.0);
        assert_eq!(profile.first, Some(Duration::from_secs(1)));
        assert_eq!(profile.full, Some(Duration::from_secs(3)));
        assert_eq!(profile.dips, 0);
    }

    #[test]
    fn percentiles_pick_the_rank() {
        let samples: Vec<Sample> = (0..100u64)
            .map(|i| Sample {
                latency: Duration::from_millis(99 - i),
                ..sample(i, "a", true)
            })
            .collect();
        let refs: Vec<&Sample> = samples.iter().collect();
        assert_eq!(latency_percentile(&refs, 50), Duration::from_millis(50));
        assert_eq!(latency_percentile(&refs, 99), Duration::from_millis(99));
        assert_eq!(latency_percentile(&[], 99), Duration::ZERO);
    }
}
