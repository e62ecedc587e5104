//! The plugin as workers instantiate it: compiled code and configuration. A new spec (an ECDS
//! update) makes each worker start a new instance (a new VM with the same shared data, as Envoy
//! creates a new plugin and keeps shared data) for new requests; requests under way finish on
//! the instance they started on.

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{anyhow, Context as _};
use fleetgate_wasm_tests::{Host, LogLevel, Module, SharedData};
use tokio::sync::watch;

/// What a plugin instance is made of.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    pub module: Module,
    /// The plugin configuration (`PLUGIN_CONFIGURATION`).
    pub config: String,
    /// Identifies the code (path or sha256), to tell an unchanged plugin.
    pub code_id: String,
}

impl PluginSpec {
    /// A spec whose code is identified by the module's name.
    pub fn new(module: Module, config: impl Into<String>) -> Self {
        let code_id = module.name().to_owned();
        PluginSpec {
            module,
            config: config.into(),
            code_id,
        }
    }

    /// Whether `other` would run the same code with the same configuration.
    pub fn same_as(&self, other: &PluginSpec) -> bool {
        self.code_id == other.code_id && self.config == other.config
    }
}

/// Where workers watch for the current spec.
pub type PluginFeed = watch::Receiver<Arc<PluginSpec>>;

/// An instance of `spec` on `data`; an error if the plugin refuses its configuration (with
/// what it logged). Its clock starts at wall time, as Envoy's does: the plugin seeds its
/// random draws from it and compares the times other instances left in shared data.
pub fn instantiate(spec: &PluginSpec, data: SharedData) -> anyhow::Result<Host> {
    let host = Host::builder(&spec.module)
        .clock_start(SystemTime::now())
        .config(spec.config.clone())
        .shared_data(data)
        .log_level(LogLevel::Info)
        .build()
        .context("starting the VM")?;
    if !host.configured() {
        let why: Vec<String> = host.logs().into_iter().map(|l| l.message).collect();
        return Err(anyhow!(
            "the plugin refused its configuration: {}",
            why.join("; ")
        ));
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fleetgate_wasm_tests::{Host, Module, SharedData};

    use super::*;

    /// Three equal clusters; the plugin seeds its draws itself (no `random_seed`).
    const CONFIG: &str = r#"{"version": 1, "clusters": [{"id": "a"}, {"id": "b"}, {"id": "c"}],
        "routes": [{"name": "r", "hosts": ["shop.example.com"], "backends": [
            {"cluster": "a", "upstream": "ua"}, {"cluster": "b", "upstream": "ub"},
            {"cluster": "c", "upstream": "uc"}]}]}"#;

    /// The upstream the plugin names for each of `n` requests.
    fn draws(host: &Host, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let stream = host
                    .request()
                    .authority("shop.example.com")
                    .path("/")
                    .send();
                let upstream = stream.request_header("x-fleetgate-upstream");
                stream.respond(200).finish();
                upstream.expect("the plugin names an upstream")
            })
            .collect()
    }

    /// The plugin seeds its random draws from the clock (and a per-VM counter) and keeps
    /// ejection ends in shared data as clock times. Every instance used to start its clock at
    /// the same fixed date, so every run of the demo replayed the same draws (its kill figure
    /// took a few recurring values) and instances started at different times disagreed on
    /// "now". Instances read wall time instead, as in Envoy.
    #[test]
    fn instances_read_wall_time_so_no_two_draw_alike() {
        let spec = PluginSpec::new(Module::plugin_wasip1(), CONFIG);
        let first = instantiate(&spec, SharedData::new()).expect("first instance");
        std::thread::sleep(Duration::from_millis(5));
        let second = instantiate(&spec, SharedData::new()).expect("second instance");
        let wall = SystemTime::now();
        for host in [&first, &second] {
            let behind = wall.duration_since(host.now()).unwrap_or_default();
            assert!(
                behind < Duration::from_secs(60),
                "clock {behind:?} behind wall time"
            );
        }
        assert!(
            second.now() > first.now(),
            "the later instance reads a later time"
        );
        assert_ne!(draws(&first, 64), draws(&second, 64));
    }
}
