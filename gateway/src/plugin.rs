//! The plugin as workers instantiate it: compiled code and configuration. A new spec (an ECDS
//! update) makes each worker start a new instance (a new VM with the same shared data, as Envoy
//! creates a new plugin and keeps shared data) for new requests; requests under way finish on
//! the instance they started on.

use std::sync::Arc;

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
/// what it logged).
pub fn instantiate(spec: &PluginSpec, data: SharedData) -> anyhow::Result<Host> {
    let host = Host::builder(&spec.module)
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
