//! The module's exports: the Proxy-Wasm ABI v0.2.1 callbacks, routed to the root and HTTP
//! contexts. Owned here rather than by the Rust SDK's dispatcher, which panics on ids it does
//! not know and unwraps `proxy_set_effective_context`; here a callback for an unknown context
//! or callout is ignored (or answered "continue"), and nothing in this file can trap.

use std::cell::RefCell;
use std::collections::HashMap;

use super::{Http, Root};

/// `proxy_action_t`.
pub const CONTINUE: u32 = 0;
pub const PAUSE: u32 = 1;

#[derive(Default)]
struct Contexts {
    roots: HashMap<u32, Root>,
    http: HashMap<u32, Http>,
}

thread_local! {
    static CONTEXTS: RefCell<Contexts> = RefCell::new(Contexts::default());
}

/// Run `f` on the context table; `None` if it is busy (a host calling back into a callback).
fn with<R>(f: impl FnOnce(&mut Contexts) -> R) -> Option<R> {
    CONTEXTS.with(|c| c.try_borrow_mut().ok().map(|mut c| f(&mut c)))
}

fn on_root<R>(id: u32, f: impl FnOnce(&mut Root) -> R) -> Option<R> {
    with(|c| {
        let root = c.roots.get_mut(&id)?;
        let r = f(root);
        root.flush_host_errors();
        Some(r)
    })
    .flatten()
}

fn on_http<R>(id: u32, f: impl FnOnce(&mut Http) -> R) -> Option<R> {
    with(|c| {
        let http = c.http.get_mut(&id)?;
        let r = f(http);
        http.flush_host_errors();
        Some(r)
    })
    .flatten()
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

/// WASI reactor start: run static constructors (as the SDK's `main!` does).
#[no_mangle]
pub extern "C" fn _initialize() {
    #[cfg(target_os = "wasi")]
    // SAFETY: the linker-generated constructor runner, called once before any other export.
    unsafe {
        __wasm_call_ctors();
    }
}

/// The host places data for us here; we take ownership with `Vec::from_raw_parts(ptr, len,
/// len)`. A size we cannot allocate answers 0 (failure) instead of aborting.
#[cfg_attr(
    all(target_arch = "wasm32", target_os = "unknown"),
    export_name = "malloc"
)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), no_mangle)]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut v: Vec<u8> = Vec::new();
    if v.try_reserve_exact(size).is_err() {
        return std::ptr::null_mut();
    }
    v.resize(size, 0);
    Box::into_raw(v.into_boxed_slice()) as *mut u8
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(id: u32, parent: u32) {
    with(|c| {
        if parent == 0 {
            c.roots.insert(id, Root::new());
        } else if let Some(root) = c.roots.get(&parent) {
            let http = root.create_http();
            c.http.insert(id, http);
        }
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_: u32, _: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(id: u32, size: usize) -> u32 {
    on_root(id, |r| r.on_configure(size)).map_or(0, u32::from)
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(id: u32) {
    on_root(id, Root::on_tick);
}

/// The spec passes the calling (root) context; a host that passes another id still reaches
/// the root that made the call.
#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    id: u32,
    token: u32,
    headers: usize,
    body: usize,
    _trailers: usize,
) {
    let owner = with(|c| {
        if c.roots.contains_key(&id) {
            return Some(id);
        }
        c.roots
            .iter()
            .find(|(_, r)| r.owns_call(token))
            .map(|(k, _)| *k)
    })
    .flatten();
    if let Some(root) = owner {
        on_root(root, |r| r.on_http_call_response(token, headers, body));
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(id: u32, _: usize, _: u32) -> u32 {
    on_http(id, Http::on_request_headers).unwrap_or(CONTINUE)
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(id: u32, _: usize, _: u32) -> u32 {
    on_http(id, Http::on_response_headers).unwrap_or(CONTINUE)
}

#[no_mangle]
pub extern "C" fn proxy_on_done(_: u32) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_log(id: u32) {
    on_http(id, Http::on_log);
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(id: u32) {
    with(|c| {
        if c.http.remove(&id).is_none() {
            c.roots.remove(&id);
        }
    });
}
