//! Proves the test host: the noop filter and the probe guest, on both wasm targets.

mod callouts;
mod lifecycle;
mod probe;
mod shared_data;
