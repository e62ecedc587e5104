//! The failback ledger in shared data (see [`crate::failback`]): read and rewritten with
//! compare-and-swap each time a config is adopted, never per request.

use crate::config::Config;
use crate::failback::{self, Ledger};

use super::host;

const KEY: &str = "fleetgate/failback";
const CAS_RETRIES: usize = 8;

/// Set the failback timers of `new` from this instance's previous config (`old`) and the shared
/// ledger, then store what `new` leaves for later instances. A CAS conflict means another worker
/// stored first: read its record and carry again, so all workers keep one timer per backend.
/// If shared data fails, the timers come from `old` and whatever could be read.
pub fn carry_over(old: Option<&Config>, new: &mut Config, now_ms: u64) {
    let mine = old.map(Ledger::of);
    carry_with(new, now_ms, |shared, new| {
        failback::carry_over(mine.as_ref(), shared, new, now_ms)
    });
}

/// [`carry_over`] for a new state of `old`'s routes ([`failback::carry_state`]). A state that
/// turns no backend usable or unusable (most ready-count changes) needs no shared timer and
/// leaves the ledger as it is: shared data is not touched.
pub fn carry_state(old: &Config, new: &mut Config, now_ms: u64) {
    if failback::carry_state(old, &Ledger::default(), new, now_ms) {
        carry_with(new, now_ms, |shared, new| {
            failback::carry_state(old, shared, new, now_ms);
        });
    }
}

/// Read the ledger, `carry` the timers into `new`, store what `new` leaves, with CAS.
fn carry_with(new: &mut Config, now_ms: u64, carry: impl Fn(&Ledger, &mut Config)) {
    for _ in 0..CAS_RETRIES {
        let (stored, cas) = host::shared_get(KEY);
        let shared = stored
            .as_deref()
            .and_then(Ledger::decode)
            .unwrap_or_default();
        carry(&shared, new);
        let next = Ledger::to_share(new, now_ms).encode();
        if stored.as_deref() == Some(next.as_slice()) {
            return;
        }
        match host::shared_set(KEY, &next, cas) {
            Err(true) => continue,
            Ok(()) | Err(false) => return,
        }
    }
}
