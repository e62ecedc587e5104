//! The Proxy-Wasm glue (being written).
