//! The simulated clock: `proxy_get_current_time_nanoseconds` and WASI `clock_time_get` both read
//! it, and only the test moves it (`Host::advance`), so nothing sleeps. It starts at a fixed
//! instant unless the builder names another (`HostBuilder::clock_start`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proxy_wasm_host::abi::v0_2_1::Clock;

/// 2026-01-01T00:00:00Z, where a host's clock starts by default.
pub(crate) const EPOCH_START_NANOS: u64 = 1_767_225_600 * 1_000_000_000;

/// Time elapsed since the host was created, shared by every VM of a host, and the wall time
/// (nanoseconds since the Unix epoch) it counts from.
#[derive(Debug)]
pub(crate) struct SimClock {
    start_nanos: u64,
    elapsed_nanos: AtomicU64,
}

impl Default for SimClock {
    fn default() -> Self {
        SimClock::starting_at(EPOCH_START_NANOS)
    }
}

impl SimClock {
    pub(crate) fn starting_at(start_nanos: u64) -> Self {
        SimClock {
            start_nanos,
            elapsed_nanos: AtomicU64::new(0),
        }
    }

    /// The wall time it reads now, in nanoseconds since the Unix epoch.
    pub(crate) fn now_nanos(&self) -> u64 {
        self.realtime_nanos()
    }

    pub(crate) fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.elapsed_nanos.load(Ordering::SeqCst))
    }

    pub(crate) fn set_elapsed(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.elapsed_nanos.fetch_max(nanos, Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn realtime_nanos(&self) -> u64 {
        self.start_nanos
            .saturating_add(self.elapsed_nanos.load(Ordering::SeqCst))
    }

    fn monotonic_nanos(&self) -> u64 {
        // Never zero, like a real monotonic clock some time after boot.
        1_000_000_000u64.saturating_add(self.elapsed_nanos.load(Ordering::SeqCst))
    }
}
