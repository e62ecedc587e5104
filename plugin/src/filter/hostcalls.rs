//! The Proxy-Wasm ABI v0.2.1 host functions the plugin imports, owned here rather than taken
//! from the Rust SDK: the SDK `panic!`s on any status it does not expect (and with
//! `panic = "abort"` that is a VM trap). Every call returns `Result<_, Status>`; [`super::host`]
//! decides which statuses are normal answers and counts the rest as host errors.

use std::ptr::null_mut;

/// `proxy_status_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    NotFound,
    BadArgument,
    SerializationFailure,
    ParseFailure,
    InvalidMemoryAccess,
    Empty,
    CasMismatch,
    InternalFailure,
    Unimplemented,
    /// A value the spec does not define.
    Other(u32),
}

fn check(raw: u32) -> Result<(), Status> {
    Err(match raw {
        0 => return Ok(()),
        1 => Status::NotFound,
        2 => Status::BadArgument,
        3 => Status::SerializationFailure,
        4 => Status::ParseFailure,
        6 => Status::InvalidMemoryAccess,
        7 => Status::Empty,
        8 => Status::CasMismatch,
        10 => Status::InternalFailure,
        12 => Status::Unimplemented,
        n => Status::Other(n),
    })
}

pub const MAP_REQUEST_HEADERS: u32 = 0;
pub const MAP_RESPONSE_HEADERS: u32 = 2;
pub const MAP_HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
pub const BUFFER_HTTP_CALL_RESPONSE_BODY: u32 = 4;
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
const METRIC_COUNTER: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, msg: *const u8, len: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(ret: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        kind: u32,
        start: usize,
        max: usize,
        ret: *mut *mut u8,
        ret_len: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_len: usize,
        ret: *mut *mut u8,
        ret_len: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map: u32, ret: *mut *mut u8, ret_len: *mut usize) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_len: usize) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_len: usize,
        ret: *mut *mut u8,
        ret_len: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_len: usize,
        body: *const u8,
        body_len: usize,
        headers: *const u8,
        headers_len: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_len: usize,
        ret: *mut *mut u8,
        ret_len: *mut usize,
        ret_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
        cas: u32,
    ) -> u32;
    fn proxy_http_call(
        upstream: *const u8,
        upstream_len: usize,
        headers: *const u8,
        headers_len: usize,
        body: *const u8,
        body_len: usize,
        trailers: *const u8,
        trailers_len: usize,
        timeout_ms: u32,
        ret_token: *mut u32,
    ) -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_len: usize,
        args: *const u8,
        args_len: usize,
        ret: *mut *mut u8,
        ret_len: *mut usize,
    ) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_len: usize, ret_id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, delta: i64) -> u32;
}

/// Take ownership of bytes the host placed in our memory through `proxy_on_memory_allocate`
/// (which hands out boxed slices of exactly `len` bytes).
fn owned(ptr: *mut u8, len: usize) -> Vec<u8> {
    if ptr.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: the host got `ptr` from our allocator for exactly `len` bytes and passed its
    // ownership to us with this call's answer.
    unsafe { Vec::from_raw_parts(ptr, len, len) }
}

/// A call that answers bytes through the two out-pointers.
fn with_bytes(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> Result<Vec<u8>, Status> {
    let (mut ptr, mut len) = (null_mut(), 0);
    check(call(&mut ptr, &mut len))?;
    Ok(owned(ptr, len))
}

pub fn log(level: u32, msg: &str) -> Result<(), Status> {
    check(unsafe { proxy_log(level, msg.as_ptr(), msg.len()) })
}

pub fn now_nanos() -> Result<u64, Status> {
    let mut t = 0;
    check(unsafe { proxy_get_current_time_nanoseconds(&mut t) })?;
    Ok(t)
}

pub fn set_tick_period(ms: u32) -> Result<(), Status> {
    check(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

pub fn buffer(kind: u32, start: usize, max: usize) -> Result<Vec<u8>, Status> {
    with_bytes(|p, l| unsafe { proxy_get_buffer_bytes(kind, start, max, p, l) })
}

pub fn header(map: u32, name: &str) -> Result<Vec<u8>, Status> {
    with_bytes(|p, l| unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), p, l) })
}

/// A whole header map in the ABI's pair encoding (see [`parse_pairs`]).
pub fn header_pairs(map: u32) -> Result<Vec<u8>, Status> {
    with_bytes(|p, l| unsafe { proxy_get_header_map_pairs(map, p, l) })
}

pub fn replace_header(map: u32, name: &str, value: &str) -> Result<(), Status> {
    let (k, v) = (name.as_bytes(), value.as_bytes());
    check(unsafe { proxy_replace_header_map_value(map, k.as_ptr(), k.len(), v.as_ptr(), v.len()) })
}

pub fn add_header(map: u32, name: &str, value: &str) -> Result<(), Status> {
    let (k, v) = (name.as_bytes(), value.as_bytes());
    check(unsafe { proxy_add_header_map_value(map, k.as_ptr(), k.len(), v.as_ptr(), v.len()) })
}

pub fn remove_header(map: u32, name: &str) -> Result<(), Status> {
    check(unsafe { proxy_remove_header_map_value(map, name.as_ptr(), name.len()) })
}

/// A property by its path segments (joined with NUL, as the ABI wants).
pub fn property(path: &[&str]) -> Result<Vec<u8>, Status> {
    let joined = path.join("\0");
    with_bytes(|p, l| unsafe { proxy_get_property(joined.as_ptr(), joined.len(), p, l) })
}

pub fn send_local_response(
    status: u32,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(), Status> {
    let h = serialize_pairs(headers);
    check(unsafe {
        proxy_send_local_response(
            status,
            null_mut(),
            0,
            body.as_ptr(),
            body.len(),
            h.as_ptr(),
            h.len(),
            -1,
        )
    })
}

/// Value and CAS token of a shared-data key.
pub fn shared_get(key: &str) -> Result<(Vec<u8>, u32), Status> {
    let mut cas = 0;
    let v = with_bytes(|p, l| unsafe {
        proxy_get_shared_data(key.as_ptr(), key.len(), p, l, &mut cas)
    })?;
    Ok((v, cas))
}

pub fn shared_set(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    check(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

pub fn http_call(upstream: &str, headers: &[(&str, &str)], timeout_ms: u32) -> Result<u32, Status> {
    let h = serialize_pairs(headers);
    let t = serialize_pairs(&[]);
    let mut token = 0;
    check(unsafe {
        proxy_http_call(
            upstream.as_ptr(),
            upstream.len(),
            h.as_ptr(),
            h.len(),
            null_mut(),
            0,
            t.as_ptr(),
            t.len(),
            timeout_ms,
            &mut token,
        )
    })?;
    Ok(token)
}

pub fn call_foreign_function(name: &str) -> Result<Vec<u8>, Status> {
    with_bytes(|p, l| unsafe {
        proxy_call_foreign_function(name.as_ptr(), name.len(), null_mut(), 0, p, l)
    })
}

pub fn define_counter(name: &str) -> Result<u32, Status> {
    let mut id = 0;
    check(unsafe { proxy_define_metric(METRIC_COUNTER, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, delta: i64) -> Result<(), Status> {
    check(unsafe { proxy_increment_metric(id, delta) })
}

/// Decode the pair encoding; `None` if it is malformed (every length is checked).
pub fn parse_pairs(b: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let u32_at = |i: usize| -> Option<usize> {
        let w: [u8; 4] = b.get(i..i.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(w)).ok()
    };
    if b.is_empty() {
        return Some(Vec::new());
    }
    let n = u32_at(0)?;
    let mut data = n.checked_mul(8)?.checked_add(4)?;
    let mut out = Vec::with_capacity(n.min(b.len() / 10));
    for i in 0..n {
        let (kl, vl) = (u32_at(4 + 8 * i)?, u32_at(8 + 8 * i)?);
        let k = b.get(data..data.checked_add(kl)?)?;
        let v_start = data.checked_add(kl)?.checked_add(1)?;
        let v = b.get(v_start..v_start.checked_add(vl)?)?;
        data = v_start.checked_add(vl)?.checked_add(1)?;
        out.push((k, v));
    }
    Some(out)
}

/// The ABI's header map encoding: count, (key length, value length) pairs, then each key and
/// value NUL-terminated, all lengths u32 little-endian.
fn serialize_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 10 + k.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        for s in [k, v] {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
    }
    out
}
