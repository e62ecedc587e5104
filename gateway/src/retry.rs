//! The route's retry policy, as `examples/envoy/envoy.yaml` configures Envoy: idempotent methods
//! (GET, HEAD, OPTIONS) retry on connect failure, reset, per-try timeout and 502/503/504; other
//! methods only on connect failure (the upstream cannot have acted on the request). Each retry
//! goes to a priority (member) not tried yet (`previous_priorities`), so a request whose member
//! dies mid-flight is retried on another member. Pure: no I/O.

use std::time::Duration;

/// Envoy `response.flags` bits the gateway reports.
pub mod flags {
    /// NoHealthyUpstream (UH): the route's clusters had no endpoint.
    pub const NO_HEALTHY_UPSTREAM: u64 = 0x2;
    /// UpstreamRemoteReset (UR): the connection broke after the request was sent.
    pub const UPSTREAM_REMOTE_RESET: u64 = 0x10;
    /// UpstreamConnectionFailure (UF): the TCP connection could not be established.
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 0x20;
    /// UpstreamRequestTimeout (UT): the upstream did not answer within the (per-try) timeout.
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x200;
    /// UpstreamRetryLimitExceeded (URX): every attempt failed.
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: u64 = 0x2000;
    /// NoRouteFound (NR): the cluster header was missing or named an unknown cluster.
    pub const NO_ROUTE_FOUND: u64 = 0x100;
}

/// Why one attempt on an upstream failed before a response arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// Connection refused or connect timeout.
    ConnectFailure,
    /// The connection closed or broke before the whole response was read.
    Reset,
    /// No response within the per-try timeout.
    Timeout,
}

impl AttemptFailure {
    /// The Envoy response flag of this failure.
    pub fn flag(self) -> u64 {
        match self {
            AttemptFailure::ConnectFailure => flags::UPSTREAM_CONNECTION_FAILURE,
            AttemptFailure::Reset => flags::UPSTREAM_REMOTE_RESET,
            AttemptFailure::Timeout => flags::UPSTREAM_REQUEST_TIMEOUT,
        }
    }

    /// The status a client gets when this was the last attempt (Envoy: 503 for connect
    /// failures and resets, 504 for timeouts).
    pub fn status(self) -> u16 {
        match self {
            AttemptFailure::Timeout => 504,
            AttemptFailure::ConnectFailure | AttemptFailure::Reset => 503,
        }
    }
}

/// The result of one attempt as the retry policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// A complete response with this status.
    Status(u16),
    /// No (complete) response.
    Failed(AttemptFailure),
}

/// The route's retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (Envoy `num_retries`; the example uses 2).
    pub num_retries: u32,
    /// Timeout of one attempt (`per_try_timeout`).
    pub per_try_timeout: Duration,
    /// Whether idempotent methods also retry on a reset, a timeout and 502/503/504.
    pub retry_idempotent_on_errors: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            num_retries: 2,
            per_try_timeout: Duration::from_secs(5),
            retry_idempotent_on_errors: true,
        }
    }
}

/// The methods the example's `shop-idempotent` route matches (`GET|HEAD|OPTIONS`).
pub fn is_idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS")
}

impl RetryPolicy {
    /// A policy that never retries (for comparisons).
    pub fn none() -> Self {
        RetryPolicy {
            num_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// Whether `result` of attempt number `attempt` (1-based) of a `method` request is retried.
    pub fn should_retry(&self, method: &str, attempt: u32, result: AttemptResult) -> bool {
        if attempt > self.num_retries {
            return false;
        }
        let errors = self.retry_idempotent_on_errors && is_idempotent(method);
        match result {
            AttemptResult::Failed(AttemptFailure::ConnectFailure) => true,
            AttemptResult::Failed(AttemptFailure::Reset | AttemptFailure::Timeout) => errors,
            AttemptResult::Status(502..=504) => errors,
            AttemptResult::Status(_) => false,
        }
    }
}

/// Envoy `previous_priorities` with `update_frequency: 1`: the first priority that has endpoints
/// and was not tried yet; once every priority with endpoints was tried, start over from the
/// first. `None` if no priority has endpoints.
pub fn next_priority(has_endpoints: &[bool], tried: &[usize]) -> Option<usize> {
    let usable = || (0..has_endpoints.len()).filter(|p| has_endpoints[*p]);
    usable()
        .find(|p| !tried.contains(p))
        .or_else(|| usable().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_decisions_follow_the_envoy_example_routes() {
        let policy = RetryPolicy::default();
        use AttemptFailure::*;
        use AttemptResult::*;
        let table = [
            ("GET", 1, Failed(ConnectFailure), true),
            ("GET", 1, Failed(Reset), true),
            ("GET", 1, Failed(Timeout), true),
            ("GET", 1, Status(503), true),
            ("GET", 1, Status(500), false),
            ("GET", 1, Status(200), false),
            ("GET", 3, Failed(ConnectFailure), false),
            ("POST", 1, Failed(ConnectFailure), true),
            ("POST", 1, Failed(Reset), false),
            ("POST", 1, Failed(Timeout), false),
            ("POST", 1, Status(503), false),
        ];
        for (method, attempt, result, want) in table {
            assert_eq!(
                policy.should_retry(method, attempt, result),
                want,
                "{method} attempt {attempt} {result:?}"
            );
        }
    }

    #[test]
    fn next_priority_skips_tried_and_empty_priorities_then_starts_over() {
        assert_eq!(next_priority(&[true, true, true], &[]), Some(0));
        assert_eq!(next_priority(&[false, true, true], &[]), Some(1));
        assert_eq!(next_priority(&[true, true, true], &[0]), Some(1));
        assert_eq!(next_priority(&[true, false, true], &[0]), Some(2));
        assert_eq!(next_priority(&[true, true], &[0, 1]), Some(0));
        assert_eq!(next_priority(&[false, false], &[]), None);
    }
}
