//! Thin, non-panicking wrappers over the hostcalls the filter uses. Every call returns
//! `Option`/`bool`: a host surprise degrades the decision, it never aborts the VM. Header values
//! are read as bytes (the SDK's `String` getters unwrap UTF-8 and would trap on hostile bytes).

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, Status};

pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// First value of a request header, lossily decoded (non-UTF-8 bytes cannot match anything).
pub fn request_header(name: &str) -> Option<String> {
    match hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name) {
        Ok(Some(v)) => Some(match String::from_utf8(v) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }),
        _ => None,
    }
}

pub fn set_request_header(name: &str, value: &str) -> bool {
    hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, Some(value.as_bytes()))
        .is_ok()
}

pub fn remove_request_header(name: &str) -> bool {
    hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, None).is_ok()
}

pub fn add_response_header(name: &str, value: &str) {
    let _ = hostcalls::add_map_value_bytes(MapType::HttpResponseHeaders, name, value.as_bytes());
}

pub fn call_response_header(name: &str) -> Option<String> {
    match hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name) {
        Ok(Some(v)) => String::from_utf8(v).ok(),
        _ => None,
    }
}

/// Make Envoy re-resolve the route after the cluster header changed. Envoy before 1.33 does not
/// know this function (NotFound) but clears the cache by itself for ABI 0.2.1 modules.
pub fn clear_route_cache() {
    let _ = hostcalls::call_foreign_function("clear_route_cache", None);
}

/// An integer property (Envoy encodes ints as 8 bytes little-endian), trying each path in turn.
pub fn int_property(paths: &[&[&str]]) -> Option<u64> {
    paths.iter().find_map(|p| {
        let v = hostcalls::get_property(p.to_vec()).ok()??;
        let b: [u8; 8] = v.get(..8)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    })
}

/// A string property, trying each path in turn (`xds.*` first, then legacy names).
pub fn string_property(paths: &[&[&str]]) -> Option<String> {
    paths.iter().find_map(|p| {
        let v = hostcalls::get_property(p.to_vec()).ok()??;
        String::from_utf8(v).ok()
    })
}

pub fn send_local_response(status: u32, headers: Vec<(&str, &str)>, body: &str) -> bool {
    hostcalls::send_http_response(status, headers, Some(body.as_bytes())).is_ok()
}

/// Shared data: value and CAS token.
pub fn shared_get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    hostcalls::get_shared_data(key).unwrap_or((None, None))
}

/// Set shared data; `Err(true)` = CAS mismatch (retry), `Err(false)` = other failure.
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), bool> {
    match hostcalls::set_shared_data(key, Some(value), cas) {
        Ok(()) => Ok(()),
        Err(Status::CasMismatch) => Err(true),
        Err(_) => Err(false),
    }
}

pub fn set_tick_period(ms: u32) -> bool {
    hostcalls::set_tick_period(Duration::from_millis(u64::from(ms))).is_ok()
}

pub fn dispatch_get(upstream: &str, headers: Vec<(&str, &str)>, timeout: Duration) -> Option<u32> {
    hostcalls::dispatch_http_call(upstream, headers, None, vec![], timeout).ok()
}

pub fn call_response_body(size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(proxy_wasm::types::BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .flatten()
}

pub fn log(level: proxy_wasm::types::LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}
