//! Passive health of one upstream, from the responses the gateway sees: consecutive failures
//! eject it for a backoff that doubles on each re-ejection; after the ejection it is on
//! probation, where traffic ramps back and fewer failures re-eject it; enough consecutive
//! successes after the ramp make it healthy again. Separate trip and recover thresholds plus the
//! minimum dwell (ejection + ramp) are the hysteresis that keeps it from flapping.
//!
//! The state is a fixed 32-byte record so workers can share it through Proxy-Wasm shared data
//! with compare-and-swap.

use crate::config::PassiveHealthV1;

/// Envoy `response.flags` bits that mean the upstream failed, whatever the status code:
/// UpstreamConnectionFailure (0x20), UpstreamConnectionTermination (0x40), UpstreamOverflow
/// (0x80), NoHealthyUpstream (0x2), UpstreamRequestTimeout (0x200), UpstreamRemoteReset (0x10),
/// LocalReset is not the upstream's fault and is excluded.
pub const FAILURE_FLAGS: u64 = 0x2 | 0x10 | 0x20 | 0x40 | 0x80 | 0x200;

/// Is a response evidence of a failing upstream?
pub fn is_failure(code: Option<u64>, flags: Option<u64>, count_5xx: bool) -> bool {
    if flags.is_some_and(|f| f & FAILURE_FLAGS != 0) {
        return true;
    }
    match code {
        // No response code at all with a response completing means the stream was reset.
        Some(0) => true,
        Some(c) => count_5xx && (500..600).contains(&c) && c != 501,
        None => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassiveState {
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// Ejections in the current streak (decides the backoff).
    pub ejections: u32,
    /// On probation after an ejection.
    pub probation: bool,
    /// Ejected until this time (ms since epoch); 0 if never.
    pub ejected_until_ms: u64,
    /// When it last became healthy again (to forget old ejections).
    pub recovered_at_ms: u64,
}

/// What an outcome changed, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    /// Counters moved; the state must be stored.
    Updated,
    Ejected {
        for_ms: u64,
    },
    Recovered,
}

impl PassiveState {
    /// A state ejected until `until_ms` (for native callers that model an ejection, e.g. the
    /// controller's `explain` with `u64::MAX`).
    pub fn ejected_until(until_ms: u64) -> PassiveState {
        PassiveState {
            ejected_until_ms: until_ms,
            probation: true,
            ejections: 1,
            ..PassiveState::default()
        }
    }

    pub fn is_ejected(&self, now_ms: u64) -> bool {
        now_ms < self.ejected_until_ms
    }

    /// Share of normal traffic it may take now: 0 while ejected, ramping to 1 on probation.
    pub fn factor(&self, now_ms: u64, p: &PassiveHealthV1) -> f64 {
        if self.is_ejected(now_ms) {
            return 0.0;
        }
        if !self.probation {
            return 1.0;
        }
        ramp(now_ms, self.ejected_until_ms, 0, p.ramp_seconds)
    }

    /// Record one response.
    pub fn observe(&mut self, failed: bool, now_ms: u64, p: &PassiveHealthV1) -> Transition {
        if !p.enabled || self.is_ejected(now_ms) {
            // Responses of requests sent before the ejection say nothing new.
            return Transition::None;
        }
        if failed {
            self.consecutive_successes = 0;
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            let threshold = if self.probation {
                p.probation_failure_threshold
            } else {
                p.failure_threshold
            };
            if self.consecutive_failures < threshold {
                return Transition::Updated;
            }
            let forget_after = u64::from(p.max_ejection_seconds) * 1000;
            if !self.probation && now_ms.saturating_sub(self.recovered_at_ms) > forget_after {
                self.ejections = 0;
            }
            self.ejections = self.ejections.saturating_add(1);
            let base = u64::from(p.base_ejection_seconds) * 1000;
            let max = u64::from(p.max_ejection_seconds) * 1000;
            let shift = self.ejections.saturating_sub(1).min(20);
            let for_ms = base.saturating_mul(1 << shift).min(max);
            self.ejected_until_ms = now_ms.saturating_add(for_ms);
            self.probation = true;
            self.consecutive_failures = 0;
            Transition::Ejected { for_ms }
        } else {
            if self.consecutive_failures == 0 && !self.probation {
                return Transition::None;
            }
            self.consecutive_failures = 0;
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            let ramp_done = now_ms
                >= self
                    .ejected_until_ms
                    .saturating_add(u64::from(p.ramp_seconds) * 1000);
            if self.probation && ramp_done && self.consecutive_successes >= p.success_threshold {
                self.probation = false;
                self.consecutive_successes = 0;
                self.recovered_at_ms = now_ms;
                return Transition::Recovered;
            }
            Transition::Updated
        }
    }

    pub fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..4].copy_from_slice(&self.consecutive_failures.to_le_bytes());
        b[4..8].copy_from_slice(&self.consecutive_successes.to_le_bytes());
        b[8..12].copy_from_slice(&self.ejections.to_le_bytes());
        b[12] = u8::from(self.probation);
        b[16..24].copy_from_slice(&self.ejected_until_ms.to_le_bytes());
        b[24..32].copy_from_slice(&self.recovered_at_ms.to_le_bytes());
        b
    }

    /// Decode a stored record; anything malformed reads as a fresh (healthy) state.
    pub fn decode(b: &[u8]) -> PassiveState {
        if b.len() != 32 {
            return PassiveState::default();
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        PassiveState {
            consecutive_failures: u32_at(0),
            consecutive_successes: u32_at(4),
            ejections: u32_at(8),
            probation: b[12] != 0,
            ejected_until_ms: u64_at(16),
            recovered_at_ms: u64_at(24),
        }
    }
}

/// Linear ramp from 0 to 1 over `ramp_s`, starting `hold_s` after `since_ms`.
pub fn ramp(now_ms: u64, since_ms: u64, hold_s: u32, ramp_s: u32) -> f64 {
    let start = since_ms.saturating_add(u64::from(hold_s) * 1000);
    if now_ms < start {
        return 0.0;
    }
    if ramp_s == 0 {
        return 1.0;
    }
    let f = (now_ms - start) as f64 / (f64::from(ramp_s) * 1000.0);
    f.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p() -> PassiveHealthV1 {
        PassiveHealthV1::default() // trip 5, probation 2, recover 5, 10s..300s, ramp 10s
    }

    #[test]
    fn five_consecutive_failures_eject_for_the_base_time() {
        let mut s = PassiveState::default();
        for _ in 0..4 {
            assert_eq!(s.observe(true, 1_000, &p()), Transition::Updated);
        }
        assert_eq!(
            s.observe(true, 1_000, &p()),
            Transition::Ejected { for_ms: 10_000 }
        );
        assert!(s.is_ejected(10_999));
        assert!(!s.is_ejected(11_000));
        assert_eq!(s.factor(5_000, &p()), 0.0);
        assert!(
            (s.factor(16_000, &p()) - 0.5).abs() < 1e-9,
            "half way up the ramp"
        );
    }

    #[test]
    fn probation_failures_re_eject_with_doubled_backoff() {
        let mut s = PassiveState::default();
        for _ in 0..5 {
            s.observe(true, 0, &p());
        }
        s.observe(true, 10_000, &p());
        assert_eq!(
            s.observe(true, 10_000, &p()),
            Transition::Ejected { for_ms: 20_000 }
        );
    }

    #[test]
    fn recovery_needs_the_ramp_and_enough_successes() {
        let mut s = PassiveState::default();
        for _ in 0..5 {
            s.observe(true, 0, &p());
        }
        // During the ramp, successes count but do not end probation.
        for _ in 0..10 {
            assert_eq!(s.observe(false, 12_000, &p()), Transition::Updated);
        }
        // One failure on probation resets the success streak; two would re-eject.
        assert_eq!(s.observe(true, 13_000, &p()), Transition::Updated);
        for _ in 0..4 {
            s.observe(false, 14_000, &p());
        }
        assert!(s.probation);
        assert!(s.probation);
        // Ramp over (ejected until 5s, ramp 10s) and successes counted: healthy again.
        assert_eq!(s.observe(false, 20_000, &p()), Transition::Recovered);
        assert_eq!(s.factor(20_000, &p()), 1.0);
    }

    #[test]
    fn alternating_success_and_failure_never_ejects() {
        let mut s = PassiveState::default();
        for i in 0..10_000u64 {
            let t = s.observe(i % 2 == 0, i, &p());
            assert!(!matches!(t, Transition::Ejected { .. }));
        }
    }

    #[test]
    fn flags_and_codes_classify_failures() {
        assert!(is_failure(Some(503), None, true));
        assert!(!is_failure(Some(503), None, false));
        assert!(is_failure(Some(200), Some(0x20), false));
        assert!(!is_failure(Some(404), Some(0), true));
        assert!(!is_failure(None, None, true));
        assert!(is_failure(Some(0), None, false));
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(cf: u32, cs: u32, e: u32, pr: bool, until: u64, rec: u64) {
            let s = PassiveState { consecutive_failures: cf, consecutive_successes: cs, ejections: e, probation: pr, ejected_until_ms: until, recovered_at_ms: rec };
            prop_assert_eq!(PassiveState::decode(&s.encode()), s);
        }

        #[test]
        fn any_outcome_sequence_keeps_backoff_within_bounds(seq in proptest::collection::vec(any::<bool>(), 0..500)) {
            let mut s = PassiveState::default();
            let mut now = 0u64;
            for failed in seq {
                now += 700;
                if let Transition::Ejected { for_ms } = s.observe(failed, now, &p()) {
                    prop_assert!((10_000..=300_000).contains(&for_ms));
                }
            }
        }
    }
}
