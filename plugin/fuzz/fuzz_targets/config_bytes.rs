#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fleetgate_plugin_fuzz::config_bytes(data));
