//! Prints the per-request cost and memory of the noop baseline filter in the test host, for both
//! targets: `cargo bench -p fleetgate-wasm-tests`. The plugin's benchmark will sit beside these
//! figures (same `standard_exchange`), so plugin minus noop is the plugin's own cost.
//! `cargo test -p fleetgate-wasm-tests --benches` runs it in a quick smoke mode (`--bench` absent).

use std::time::Instant;

use fleetgate_wasm_tests::bench::{memory_bytes, standard_exchange, time_requests};
use fleetgate_wasm_tests::{Host, Module, Target};

fn main() -> anyhow::Result<()> {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (warmup, requests) = if full { (2_000, 50_000) } else { (10, 100) };
    for target in Target::ALL {
        let started = Instant::now();
        let module = Module::noop(target);
        let loaded = started.elapsed();
        let host = Host::new(&module, "{}")?;
        let timing = time_requests(&host, warmup, requests, standard_exchange)?;
        let memory = memory_bytes(&module, "{}", |host| {
            (0..100).try_for_each(|_| standard_exchange(host))
        })?;
        println!(
            "noop {target:?}: {:.0} ns/request over {} requests; compile {:?} (load {:?}); linear memory {} KiB",
            timing.ns_per_request,
            timing.requests,
            module.compile_time(),
            loaded,
            memory / 1024
        );
    }
    Ok(())
}
