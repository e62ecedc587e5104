//! Dynamic config: one worker at a time (holder of a shared-data lease) long-polls the
//! controller with `dispatch_http_call`, the routes and (apart, with its own ETag) the state
//! document; an accepted document is stored in shared data, from which every worker adopts it
//! on its next tick. A bad or failed pull never replaces the last good config or state.

use crate::config::ConfigSourceV1;

use super::host;

/// Where an accepted document lives in shared data: the record (`etag \n body`) and a small
/// key with its ETag alone, which every worker reads on every tick (the record can be
/// megabytes; copying it into each VM per tick would cost more than the requests).
pub struct Shared {
    pub record: &'static str,
    pub etag: &'static str,
}

/// The config (routes with their state) the puller accepted last.
pub const CONFIG: Shared = Shared {
    record: "fleetgate/config",
    etag: "fleetgate/config/etag",
};
/// The state document the puller accepted last.
pub const STATE: Shared = Shared {
    record: "fleetgate/state",
    etag: "fleetgate/state/etag",
};
const LEASE_KEY: &str = "fleetgate/pull/lease";
const VM_COUNTER_KEY: &str = "fleetgate/vm/counter";

/// A number no other VM of this plugin holds (a CAS-incremented counter in shared data).
pub fn unique_vm_token(fallback: u64) -> u64 {
    for _ in 0..16 {
        let (v, cas) = host::shared_get(VM_COUNTER_KEY);
        let n = v
            .and_then(|b| b.get(..8).and_then(|s| s.try_into().ok()))
            .map_or(0, u64::from_le_bytes)
            + 1;
        if host::shared_set(VM_COUNTER_KEY, &n.to_le_bytes(), cas).is_ok() {
            return n;
        }
    }
    fallback
}

/// Take or renew the pull lease; true if this VM may pull now.
pub fn acquire_lease(token: u64, now_ms: u64, hold_ms: u64) -> bool {
    let (v, cas) = host::shared_get(LEASE_KEY);
    if let Some(b) = v.as_deref().filter(|b| b.len() == 16) {
        let holder = u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
        let until = u64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8]));
        if holder != token && now_ms < until {
            return false;
        }
    }
    let mut rec = [0u8; 16];
    rec[..8].copy_from_slice(&token.to_le_bytes());
    rec[8..].copy_from_slice(&now_ms.saturating_add(hold_ms).to_le_bytes());
    host::shared_set(LEASE_KEY, &rec, cas).is_ok()
}

/// One document pulled from the controller (the routes, or the state): its long-poll and what
/// this worker last saw of it.
#[derive(Debug, Default)]
pub struct Channel {
    pub in_flight: Option<u32>,
    /// ETag of the document this VM runs (or of a rejected one, so the long-poll waits for news).
    pub etag: Option<String>,
    /// ETag of the shared record last looked at.
    pub seen: Option<String>,
    pub retry_at_ms: u64,
}

impl Channel {
    /// May a long-poll start now?
    pub fn idle(&self, now_ms: u64) -> bool {
        self.in_flight.is_none() && now_ms >= self.retry_at_ms
    }
}

/// Are routes and state pulled apart (`state_path` set)?
pub fn split(src: &ConfigSourceV1) -> bool {
    !src.state_path.is_empty()
}

/// The config pull's `:path`. Pulling state apart, it asks for the routes revision as ETag
/// (`watch=routes`), so a state-only change does not answer it.
pub fn config_path(src: &ConfigSourceV1) -> String {
    let watch = if split(src) { "&watch=routes" } else { "" };
    format!("{}?wait={}{watch}", src.path, src.wait_seconds)
}

pub fn state_path(src: &ConfigSourceV1) -> String {
    format!("{}?wait={}", src.state_path, src.wait_seconds)
}

/// Start a long-poll of `path`; returns the call token.
pub fn dispatch(src: &ConfigSourceV1, path: &str, etag: Option<&str>) -> Option<u32> {
    let auth = src.token.as_ref().map(|t| format!("Bearer {t}"));
    let inm = etag.map(|e| format!("\"{e}\""));
    let mut headers = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", src.authority.as_str()),
        (":scheme", "http"),
        ("accept", "application/json"),
    ];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    if let Some(e) = &inm {
        headers.push(("if-none-match", e.as_str()));
    }
    let timeout_ms = (src.wait_seconds + 5).saturating_mul(1000);
    host::dispatch_get(&src.upstream, &headers, timeout_ms)
}

/// How long a lease lasts: the longest a pull can take, plus slack.
pub fn lease_ms(src: &ConfigSourceV1) -> u64 {
    (u64::from(src.wait_seconds) + 10) * 1000
}

/// Store an accepted document for the other workers: the record first, then its ETag.
pub fn store(s: &Shared, ch: &mut Channel, etag: &str, json: &[u8]) {
    let mut v = Vec::with_capacity(etag.len() + 1 + json.len());
    v.extend_from_slice(etag.as_bytes());
    v.push(b'\n');
    v.extend_from_slice(json);
    let _ = host::shared_set(s.record, &v, None);
    let _ = host::shared_set(s.etag, etag.as_bytes(), None);
    ch.seen = Some(etag.to_string());
}

/// The shared record if its ETag is news to `ch` (neither run nor looked at already): two
/// small reads on a quiet tick, the record only when it changed.
pub fn shared_news(s: &Shared, ch: &mut Channel) -> Option<(String, Vec<u8>)> {
    let marker = String::from_utf8(host::shared_get(s.etag).0?).ok()?;
    if ch.seen.as_ref() == Some(&marker) || ch.etag.as_ref() == Some(&marker) {
        return None;
    }
    ch.seen = Some(marker);
    let record = host::shared_get(s.record).0?;
    let (etag, json) = decode_shared(&record)?;
    (ch.etag.as_deref() != Some(etag.as_str())).then(|| (etag, json.to_vec()))
}

fn decode_shared(v: &[u8]) -> Option<(String, &[u8])> {
    let i = v.iter().position(|&b| b == b'\n')?;
    let etag = String::from_utf8(v[..i].to_vec()).ok()?;
    Some((etag, &v[i + 1..]))
}

/// `"abc"` / `W/"abc"` -> `abc`.
pub fn strip_etag(e: &str) -> String {
    e.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}
