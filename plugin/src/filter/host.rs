//! What the filter asks of the host, in its terms (`Option`/`bool`): [`hostcalls`] answers
//! `Result<_, Status>`, and here each call says which statuses are normal answers (a missing
//! header is `NotFound`, a lost CAS race is `CasMismatch`). Anything else is a host error:
//! counted for `fleetgate_host_errors_total`, and the request carries on without that answer.

use std::cell::Cell;

use super::hostcalls::{self as hc, Status};

thread_local! {
    static HOST_ERRORS: Cell<u64> = const { Cell::new(0) };
}

/// Host errors since the last call (the metrics flush them into their counter).
pub fn take_host_errors() -> u64 {
    HOST_ERRORS.with(|n| n.replace(0))
}

/// `Ok` as `Some`, the `expected` statuses as `None`, anything else counted, then `None`.
fn answer<T>(r: Result<T, Status>, expected: &[Status]) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(s) => {
            if !expected.contains(&s) {
                HOST_ERRORS.with(|n| n.set(n.get() + 1));
            }
            None
        }
    }
}

const ABSENT: &[Status] = &[Status::NotFound];

pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;

pub fn now_ms() -> u64 {
    answer(hc::now_nanos(), &[]).map_or(0, |ns| ns / 1_000_000)
}

/// Bytes as text; non-UTF-8 bytes become U+FFFD (they can match nothing the config names).
fn text(v: Vec<u8>) -> String {
    match String::from_utf8(v) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// All request headers in one hostcall, in the ABI's pair encoding (see
/// [`hc::parse_pairs`]); empty if the host has none to give.
pub fn request_headers() -> Vec<u8> {
    answer(hc::header_pairs(hc::MAP_REQUEST_HEADERS), ABSENT).unwrap_or_default()
}

/// Decode [`request_headers`]; a malformed answer counts as a host error and reads as none.
pub fn header_pairs(raw: &[u8]) -> Vec<(&[u8], &[u8])> {
    hc::parse_pairs(raw).unwrap_or_else(|| {
        HOST_ERRORS.with(|n| n.set(n.get() + 1));
        Vec::new()
    })
}

/// A header map the filter edits.
#[derive(Debug, Clone, Copy)]
pub enum Map {
    Request,
    Response,
}

impl Map {
    fn id(self) -> u32 {
        match self {
            Map::Request => hc::MAP_REQUEST_HEADERS,
            Map::Response => hc::MAP_RESPONSE_HEADERS,
        }
    }
}

/// Replace every value of a header.
pub fn set_header(map: Map, name: &str, value: &str) {
    answer(hc::replace_header(map.id(), name, value), &[]);
}

/// Append a value.
pub fn add_header(map: Map, name: &str, value: &str) {
    answer(hc::add_header(map.id(), name, value), &[]);
}

pub fn remove_header(map: Map, name: &str) {
    answer(hc::remove_header(map.id(), name), ABSENT);
}

pub fn call_response_header(name: &str) -> Option<String> {
    answer(hc::header(hc::MAP_HTTP_CALL_RESPONSE_HEADERS, name), ABSENT).map(text)
}

/// Make Envoy re-resolve the route after the cluster header changed. Envoy before 1.33 does not
/// know this function (NotFound) but clears the cache by itself for ABI 0.2.1 modules.
pub fn clear_route_cache() {
    answer(hc::call_foreign_function("clear_route_cache"), ABSENT);
}

/// A property, trying each path in turn (`xds.*` first, then legacy names).
pub fn property(paths: &[&[&str]]) -> Option<Vec<u8>> {
    paths.iter().find_map(|p| answer(hc::property(p), ABSENT))
}

/// An integer property (Envoy encodes ints as 8 bytes little-endian).
pub fn int_property(paths: &[&[&str]]) -> Option<u64> {
    let v = property(paths)?;
    Some(u64::from_le_bytes(v.get(..8)?.try_into().ok()?))
}

pub fn string_property(paths: &[&[&str]]) -> Option<String> {
    String::from_utf8(property(paths)?).ok()
}

pub fn send_local_response(status: u32, headers: &[(&str, &str)], body: &str) -> bool {
    answer(hc::send_local_response(status, headers, body), &[]).is_some()
}

/// Shared data: value and CAS token (`(None, None)` when absent or unreadable).
pub fn shared_get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    match answer(hc::shared_get(key), ABSENT) {
        Some((v, cas)) => (Some(v), Some(cas)),
        None => (None, None),
    }
}

/// Set shared data; `Err(true)` = CAS mismatch (retry), `Err(false)` = other failure.
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), bool> {
    match hc::shared_set(key, value, cas.unwrap_or(0)) {
        Err(Status::CasMismatch) => Err(true),
        r => answer(r, &[]).ok_or(false),
    }
}

pub fn set_tick_period(ms: u32) -> bool {
    answer(hc::set_tick_period(ms), &[]).is_some()
}

/// Start an HTTP callout (no body); the call's token.
pub fn dispatch_get(upstream: &str, headers: &[(&str, &str)], timeout_ms: u32) -> Option<u32> {
    answer(hc::http_call(upstream, headers, timeout_ms), &[])
}

pub fn call_response_body(size: usize) -> Option<Vec<u8>> {
    answer(
        hc::buffer(hc::BUFFER_HTTP_CALL_RESPONSE_BODY, 0, size),
        ABSENT,
    )
}

pub fn plugin_configuration(size: usize) -> Option<Vec<u8>> {
    answer(hc::buffer(hc::BUFFER_PLUGIN_CONFIGURATION, 0, size), ABSENT)
}

pub fn log(level: u32, msg: &str) {
    answer(hc::log(level, msg), &[]);
}

pub fn define_counter(name: &str) -> Option<u32> {
    answer(hc::define_counter(name), &[])
}

pub fn increment(id: u32) {
    answer(hc::increment_metric(id, 1), &[]);
}

/// For the host-error counter itself: its own failures are not counted again.
pub fn define_counter_quietly(name: &str) -> Option<u32> {
    hc::define_counter(name).ok()
}

pub fn increment_quietly(id: u32, by: u64) {
    let _ = hc::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
}
