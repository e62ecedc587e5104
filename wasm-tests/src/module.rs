//! Compiled guest modules: the `.wasm` files `build.rs` produced, compiled once per process on one
//! shared engine and cached, so every test and every VM reuses the compiled code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use proxy_wasm_host::abi::v0_2_1::Host as AbiHost;
use proxy_wasm_host::Engine;

/// The wasm target a guest was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `wasm32-wasip1`: imports WASI, exports `proxy_on_memory_allocate`.
    Wasip1,
    /// `wasm32-unknown-unknown`: no WASI, exports `malloc`.
    Unknown,
}

impl Target {
    /// Both targets, in a fixed order, for tests that must pass on each.
    pub const ALL: [Target; 2] = [Target::Wasip1, Target::Unknown];
}

/// A compiled guest module. Cloning is cheap (reference counts).
#[derive(Clone)]
pub struct Module {
    pub(crate) compiled: proxy_wasm_host::Module,
    pub(crate) runtime: AbiHost,
    name: Arc<str>,
    compile_time: Duration,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.name)
            .field("compile_time", &self.compile_time)
            .finish()
    }
}

/// The engine (with its epoch ticker thread) and linked ABI host functions, one per process.
fn runtime() -> &'static Result<AbiHost, String> {
    static RUNTIME: OnceLock<Result<AbiHost, String>> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let engine =
            Engine::new().map_err(|error| format!("cannot build the wasmtime engine: {error}"))?;
        AbiHost::new(&engine)
            .map_err(|error| format!("cannot link the Proxy-Wasm host functions: {error}"))
    })
}

fn cache() -> &'static Mutex<HashMap<PathBuf, Module>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Module>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

fn built(path: &'static str, what: &str) -> Module {
    if path.is_empty() {
        panic!(
            "{what} did not build; see the cargo warnings of fleetgate-wasm-tests' build script"
        );
    }
    Module::from_file(path).unwrap_or_else(|error| panic!("cannot load {what}: {error:#}"))
}

impl Module {
    /// The fleetgate plugin built for `wasm32-wasip1` (the Envoy/Higress build).
    pub fn plugin_wasip1() -> Module {
        built(
            env!("FLEETGATE_PLUGIN_WASIP1"),
            "fleetgate-plugin (wasm32-wasip1)",
        )
    }
    /// The fleetgate plugin built for `wasm32-unknown-unknown`.
    pub fn plugin_unknown() -> Module {
        built(
            env!("FLEETGATE_PLUGIN_UNKNOWN"),
            "fleetgate-plugin (wasm32-unknown-unknown)",
        )
    }
    /// The no-op baseline filter for `wasm32-wasip1`.
    pub fn noop_wasip1() -> Module {
        built(
            env!("FLEETGATE_NOOP_WASIP1"),
            "fleetgate-noop-filter (wasm32-wasip1)",
        )
    }
    /// The no-op baseline filter for `wasm32-unknown-unknown`.
    pub fn noop_unknown() -> Module {
        built(
            env!("FLEETGATE_NOOP_UNKNOWN"),
            "fleetgate-noop-filter (wasm32-unknown-unknown)",
        )
    }
    /// The fleetgate plugin for `target`.
    pub fn plugin(target: Target) -> Module {
        match target {
            Target::Wasip1 => Module::plugin_wasip1(),
            Target::Unknown => Module::plugin_unknown(),
        }
    }
    /// The no-op baseline filter for `target`.
    pub fn noop(target: Target) -> Module {
        match target {
            Target::Wasip1 => Module::noop_wasip1(),
            Target::Unknown => Module::noop_unknown(),
        }
    }
    /// The host's probe guest (`wasm-tests/guests/probe`) for `target`.
    pub fn probe(target: Target) -> Module {
        match target {
            Target::Wasip1 => built(
                env!("FLEETGATE_PROBE_WASIP1"),
                "fleetgate-probe-guest (wasm32-wasip1)",
            ),
            Target::Unknown => built(
                env!("FLEETGATE_PROBE_UNKNOWN"),
                "fleetgate-probe-guest (wasm32-unknown-unknown)",
            ),
        }
    }

    /// The minimal router guest (wasm32-wasip1): `:authority` -> upstream map, one header.
    pub fn router_wasip1() -> Module {
        built(
            env!("FLEETGATE_ROUTER_WASIP1"),
            "fleetgate-router-guest (wasm32-wasip1)",
        )
    }

    /// The wasip1 plugin with every call of import `name` behind a fault stub (see
    /// [`crate::faults`]).
    pub fn plugin_with_faulty_import(name: &str) -> anyhow::Result<Module> {
        let path = env!("FLEETGATE_PLUGIN_WASIP1");
        let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
        let rewritten = crate::faults::with_faulty_import(&bytes, name)?;
        Module::from_bytes(&format!("{path} (faulty {name})"), &rewritten)
    }

    /// Loads and compiles a `.wasm` file, or returns the copy compiled earlier in this process.
    pub fn from_file(path: impl AsRef<Path>) -> anyhow::Result<Module> {
        let path = path.as_ref().to_path_buf();
        if let Some(module) = cache()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&path)
        {
            return Ok(module.clone());
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let module = Module::from_bytes(&path.display().to_string(), &bytes)?;
        // Two tests may compile the same file at once; either result is fine to keep.
        cache()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path, module.clone());
        Ok(module)
    }

    /// Compiles a module from bytes (not cached).
    pub fn from_bytes(name: &str, bytes: &[u8]) -> anyhow::Result<Module> {
        let runtime = runtime()
            .as_ref()
            .map_err(|error| anyhow!("{error}"))?
            .clone();
        let started = Instant::now();
        let compiled = proxy_wasm_host::Module::new(runtime.engine(), bytes)
            .with_context(|| format!("compiling {name}"))?;
        Ok(Module {
            compiled,
            runtime,
            name: name.into(),
            compile_time: started.elapsed(),
        })
    }

    /// How long wasmtime took to compile this module.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// The path or name the module was loaded from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the module exports `name` (e.g. `malloc`, `proxy_on_memory_allocate`).
    pub fn has_export(&self, name: &str) -> bool {
        self.compiled.has_export(name)
    }
}
