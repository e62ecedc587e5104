//! A Proxy-Wasm ABI v0.2.1 test host for fleetgate's filters, built on the `proxy-wasm-host`
//! crate (wasmtime). This crate is the embedder: it lends the guest Envoy-like header maps,
//! properties, a simulated clock, one shared-data store for several worker VMs, queued HTTP
//! callouts, captured logs, metrics and local responses, and drives the callbacks in the order
//! Envoy does. Tests read like a story:
//!
//! ```no_run
//! use fleetgate_wasm_tests::{Host, Module};
//! let module = Module::noop_wasip1();
//! let host = Host::new(&module, "{}").unwrap();
//! let d = host.request().authority("shop.example.com").path("/api").send();
//! d.respond(200).finish();
//! ```
//!
//! See `HOST_NOTES.md` for what the underlying crate lacks and how this host works around it.

pub mod bench;
mod callouts;
mod clock;
mod exchange;
pub mod faults;
mod headers;
mod host;
mod logs;
mod module;
pub mod properties;
mod shared;
mod stream;

pub use callouts::HttpCallRequest;
pub use headers::Headers;
pub use host::{Host, HostBuilder, VmId};
pub use logs::LogLine;
pub use module::{Module, Target};
pub use proxy_wasm_host::abi::v0_2_1::types::{Action, LogLevel};
pub use shared::SharedData;
pub use stream::{LocalReply, Request, Response, Stream};
