//! The test host: one compiled module, one or more VMs (Envoy worker instances) that share one
//! shared-data store, one simulated clock, one callout queue and one log, and the plumbing that
//! drives root-context callbacks (start, configure, tick, callout responses).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use proxy_wasm_host::abi::v0_2_1::types::LogLevel;
use proxy_wasm_host::abi::v0_2_1::{
    ContextId, Guest, GuestError, GuestId, HttpCallResponse, PluginConfig, VmServices,
};
use proxy_wasm_host::Limits;

use crate::callouts::{CalloutQueue, HttpCallRequest, Pending};
use crate::clock::SimClock;
use crate::exchange::{Exchange, ForeignFunctions};
use crate::faults::FaultSwitch;
use crate::logs::{LogBook, LogLine};
use crate::module::Module;
use crate::properties::Properties;
use crate::shared::SharedStore;
use crate::stream::Request;

/// Identifies one VM (worker) of a host; the first VM is `VmId::FIRST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VmId(pub usize);

impl VmId {
    /// The VM `Host::new` starts.
    pub const FIRST: VmId = VmId(0);
}

/// Builds a [`Host`] with more than a plugin configuration.
#[derive(Debug, Clone)]
#[must_use]
pub struct HostBuilder {
    module: Module,
    plugin_config: Vec<u8>,
    vm_config: Vec<u8>,
    vm_id: String,
    plugin_name: String,
    root_id: String,
    memory_limit: Option<usize>,
    properties: Properties,
    upstreams: Option<BTreeSet<String>>,
    clear_route_cache: bool,
    log_level: LogLevel,
    shared: Option<crate::SharedData>,
    faults: FaultSwitch,
    clock_start: Option<SystemTime>,
}

impl HostBuilder {
    /// The bytes the plugin reads from `PLUGIN_CONFIGURATION` in `on_configure`.
    pub fn config(mut self, config: impl Into<Vec<u8>>) -> Self {
        self.plugin_config = config.into();
        self
    }
    /// The bytes the plugin reads from `VM_CONFIGURATION` in `on_vm_start`.
    pub fn vm_config(mut self, config: impl Into<Vec<u8>>) -> Self {
        self.vm_config = config.into();
        self
    }
    /// The VM id (namespaces shared data and metrics; property `plugin_vm_id`). Default `fleetgate`.
    pub fn vm_id(mut self, vm_id: &str) -> Self {
        self.vm_id = vm_id.to_owned();
        self
    }
    /// The plugin name (property `plugin_name`). Default `fleetgate`.
    pub fn plugin_name(mut self, name: &str) -> Self {
        self.plugin_name = name.to_owned();
        self
    }
    /// The root id (property `plugin_root_id`). Default empty, as in most Envoy configs.
    pub fn root_id(mut self, root_id: &str) -> Self {
        self.root_id = root_id.to_owned();
        self
    }
    /// Caps each VM's linear memory (default 128 MiB); `memory.grow` past it fails.
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = Some(bytes);
        self
    }
    /// A host-wide property every stream and root context reads (dotted path).
    pub fn property(mut self, path: &str, value: impl Into<Vec<u8>>) -> Self {
        self.properties
            .set(&crate::properties::dotted(path), value.into());
        self
    }
    /// Declares the Envoy clusters `dispatch_http_call` may name; others get `BAD_ARGUMENT`.
    /// Without this every upstream is accepted.
    pub fn upstreams(mut self, names: &[&str]) -> Self {
        self.upstreams = Some(names.iter().map(|name| (*name).to_owned()).collect());
        self
    }
    /// Mimics Envoy < 1.33: the foreign function `clear_route_cache` is unknown (`NOT_FOUND`).
    pub fn without_clear_route_cache(mut self) -> Self {
        self.clear_route_cache = false;
        self
    }
    /// The level `proxy_get_log_level` reports (default `Trace`: every line reaches the log).
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.log_level = level;
        self
    }

    /// Let the test arm faults for a guest rewritten by [`crate::faults::with_faulty_import`];
    /// arm before `build` to fail the start-up callbacks.
    pub fn faults(mut self, faults: FaultSwitch) -> Self {
        self.faults = faults;
        self
    }

    /// Share shared data and metrics with other hosts (e.g. worker threads of one gateway)
    /// instead of starting a store of its own.
    pub fn shared_data(mut self, shared: crate::SharedData) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Start the clock at `start` instead of 2026-01-01T00:00:00Z (a host that follows wall
    /// time: every host of a gateway then reads one time base, and no two runs read the same).
    pub fn clock_start(mut self, start: SystemTime) -> Self {
        self.clock_start = Some(start);
        self
    }

    /// Instantiates the first VM and runs root context creation, `on_vm_start` and
    /// `on_configure`. A refused configuration is not an error: see [`Host::configured`].
    pub fn build(self) -> anyhow::Result<Host> {
        let clock = Arc::new(match self.clock_start {
            Some(start) => SimClock::starting_at(nanos_since_epoch(start)),
            None => SimClock::default(),
        });
        let logs = Arc::new(LogBook::new());
        let callouts = Arc::new(CalloutQueue::new(Arc::clone(&clock)));
        callouts.set_known_upstreams(self.upstreams);
        let shared = match self.shared {
            Some(shared) => shared.0,
            None => Arc::new(SharedStore::new()),
        };
        let services = VmServices::new(logs.clone())
            .with_clock(clock.clone())
            .with_shared(shared.clone())
            .with_callouts(callouts.clone())
            .with_vm_id(self.vm_id.as_bytes().to_vec())
            .with_vm_configuration(self.vm_config)
            .with_log_level(self.log_level);
        // Debug-built hosts on a busy 2-core machine: a generous per-callback budget avoids
        // flaky epoch interruptions; a hung guest still fails within seconds.
        let mut limits = Limits::new().with_cpu_time(Duration::from_secs(20));
        if let Some(bytes) = self.memory_limit {
            limits = limits.with_memory_bytes(bytes);
        }
        let plugin = PluginConfig::new()
            .with_name(self.plugin_name.into_bytes())
            .with_root_id(self.root_id.into_bytes())
            .with_configuration(self.plugin_config);
        let mut inner = Inner {
            module: self.module,
            limits,
            services,
            plugin,
            vm_id: self.vm_id.into_bytes(),
            clock,
            logs,
            callouts,
            shared,
            properties: Arc::new(self.properties),
            foreign: ForeignFunctions {
                clear_route_cache: self.clear_route_cache,
            },
            faults: self.faults,
            vms: Vec::new(),
            streams: HashMap::new(),
            configured: false,
        };
        inner.configured = inner.start_vm()?;
        Ok(Host {
            inner: Rc::new(RefCell::new(inner)),
        })
    }
}

/// A Proxy-Wasm host running one module in one or more VMs. Not `Send`: one test drives it.
pub struct Host {
    pub(crate) inner: Rc<RefCell<Inner>>,
}

pub(crate) struct Vm {
    pub(crate) guest: Guest,
    pub(crate) root: ContextId,
    tick_period: Option<Duration>,
    next_tick: Option<Duration>,
}

pub(crate) struct Inner {
    module: Module,
    limits: Limits,
    services: VmServices,
    plugin: PluginConfig,
    vm_id: Vec<u8>,
    pub(crate) clock: Arc<SimClock>,
    logs: Arc<LogBook>,
    pub(crate) callouts: Arc<CalloutQueue>,
    shared: Arc<SharedStore>,
    pub(crate) properties: Arc<Properties>,
    pub(crate) foreign: ForeignFunctions,
    faults: FaultSwitch,
    pub(crate) vms: Vec<Vm>,
    /// Stream states between callback groups, keyed by VM index and context.
    pub(crate) streams: HashMap<(usize, ContextId), Exchange>,
    configured: bool,
}

impl Inner {
    pub(crate) fn root_exchange(&self) -> Exchange {
        Exchange::new(
            Arc::clone(&self.properties),
            self.foreign,
            self.faults.clone(),
        )
    }

    /// Instantiates a VM and starts its root context; answers whether it accepted its config.
    fn start_vm(&mut self) -> anyhow::Result<bool> {
        let mut guest = Guest::new(
            &self.module.runtime,
            &self.module.compiled,
            self.services.clone(),
            &self.limits,
        )
        .with_context(|| format!("instantiating {}", self.module.name()))?;
        let plugin = self.plugin.clone();
        let (started, _) = guest.with(
            self.root_exchange(),
            |scope| -> Result<(ContextId, bool), GuestError> {
                let root = scope.on_context_create(None)?;
                if !scope.on_vm_start(root)? {
                    return Ok((root, false));
                }
                Ok((root, scope.on_configure(root, plugin)?))
            },
        );
        let (root, accepted) = started.context("starting the root context")?;
        self.vms.push(Vm {
            guest,
            root,
            tick_period: None,
            next_tick: None,
        });
        self.sync_tick(self.vms.len() - 1);
        Ok(accepted)
    }

    pub(crate) fn vm_of(&self, guest: GuestId) -> Option<usize> {
        self.vms.iter().position(|vm| vm.guest.id() == guest)
    }

    /// Picks up a tick period the root set or changed during the last callbacks.
    pub(crate) fn sync_tick(&mut self, index: usize) {
        let now = self.clock.elapsed();
        let vm = &mut self.vms[index];
        let period = vm
            .guest
            .tick_period(vm.root)
            .filter(|period| !period.is_zero());
        if period != vm.tick_period {
            vm.tick_period = period;
            vm.next_tick = period.map(|period| now + period);
        }
    }

    fn fire_tick(&mut self, index: usize) -> anyhow::Result<()> {
        let exchange = self.root_exchange();
        let vm = &mut self.vms[index];
        let root = vm.root;
        let (result, _) = vm.guest.with(exchange, |scope| scope.on_tick(root));
        result.with_context(|| format!("on_tick on VM {index}"))?;
        let now = self.clock.elapsed();
        let vm = &mut self.vms[index];
        vm.next_tick = vm.tick_period.map(|period| now + period);
        self.sync_tick(index);
        Ok(())
    }

    pub(crate) fn deliver(
        &mut self,
        pending: Pending,
        response: HttpCallResponse<'_>,
    ) -> anyhow::Result<()> {
        let index = self
            .vm_of(pending.guest)
            .ok_or_else(|| anyhow!("http call {}: its VM is gone", pending.id))?;
        let key = (index, pending.context);
        let exchange = match self.streams.remove(&key) {
            Some(exchange) => exchange,
            None => self.root_exchange(),
        };
        let is_stream = self.vms[index]
            .guest
            .context_parent(pending.context)
            .is_some();
        let (result, exchange) = self.vms[index].guest.with(exchange, |scope| {
            scope.on_http_call_response(pending.context, pending.callout, response)
        });
        if is_stream {
            self.streams.insert(key, exchange);
        }
        result.with_context(|| format!("delivering http call {} to VM {index}", pending.id))?;
        self.sync_tick(index);
        Ok(())
    }
}

fn guest_error(error: anyhow::Error) -> ! {
    panic!("guest failed: {error:#}")
}

impl Host {
    /// Starts a host running `module` with `config` as plugin configuration (one VM).
    pub fn new(module: &Module, config: impl Into<Vec<u8>>) -> anyhow::Result<Host> {
        Host::builder(module).config(config).build()
    }

    /// A builder for VM id, properties, known upstreams, memory limit, and more.
    pub fn builder(module: &Module) -> HostBuilder {
        HostBuilder {
            module: module.clone(),
            plugin_config: Vec::new(),
            vm_config: Vec::new(),
            vm_id: "fleetgate".to_owned(),
            plugin_name: "fleetgate".to_owned(),
            root_id: String::new(),
            memory_limit: None,
            properties: Properties::default(),
            upstreams: None,
            clear_route_cache: true,
            log_level: LogLevel::Trace,
            shared: None,
            faults: FaultSwitch::default(),
            clock_start: None,
        }
    }

    /// Whether the current configuration was accepted (`on_vm_start` and `on_configure` true).
    pub fn configured(&self) -> bool {
        self.inner.borrow().configured
    }

    /// Starts another VM (Envoy worker) of the same module: its own memory and root context,
    /// the same shared data, metrics, clock, callout queue and log.
    pub fn add_vm(&self) -> anyhow::Result<VmId> {
        let mut inner = self.inner.borrow_mut();
        inner.start_vm()?;
        Ok(VmId(inner.vms.len() - 1))
    }

    /// How many VMs run.
    pub fn vm_count(&self) -> usize {
        self.inner.borrow().vms.len()
    }

    /// Delivers a new plugin configuration the way Envoy does on a config update: each VM gets a
    /// new root context and `on_configure`; if every VM accepts, the old roots are retired
    /// (`on_done`, `on_delete`, unless requests are still in flight on them); if any refuses, the
    /// new roots are discarded and the old configuration keeps serving. Answers whether it was
    /// accepted.
    pub fn configure(&self, config: impl Into<Vec<u8>>) -> bool {
        self.try_configure(config)
            .unwrap_or_else(|error| guest_error(error))
    }

    /// [`Host::configure`], answering guest failures as errors.
    pub fn try_configure(&self, config: impl Into<Vec<u8>>) -> anyhow::Result<bool> {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let plugin = inner.plugin.clone().with_configuration(config.into());
        let mut fresh = Vec::new();
        let mut accepted = true;
        for index in 0..inner.vms.len() {
            let exchange = inner.root_exchange();
            let plugin = plugin.clone();
            let (result, _) = inner.vms[index].guest.with(
                exchange,
                |scope| -> Result<(ContextId, bool), GuestError> {
                    let root = scope.on_context_create(None)?;
                    Ok((root, scope.on_configure(root, plugin)?))
                },
            );
            let (root, ok) = result.with_context(|| format!("configuring VM {index}"))?;
            fresh.push(root);
            accepted &= ok;
        }
        for (index, new_root) in fresh.into_iter().enumerate() {
            let vm = &mut inner.vms[index];
            let retired = if accepted {
                std::mem::replace(&mut vm.root, new_root)
            } else {
                new_root
            };
            if !vm.guest.has_stream_contexts(retired) {
                let exchange = inner.root_exchange();
                let vm = &mut inner.vms[index];
                let (result, _) = vm
                    .guest
                    .with(exchange, |scope| -> Result<Vec<_>, GuestError> {
                        scope.on_done(retired)?;
                        scope.on_delete(retired)
                    });
                let ended = result
                    .with_context(|| format!("retiring root context {retired} of VM {index}"))?;
                inner.callouts.forget(inner.vms[index].guest.id(), &ended);
            }
            inner.sync_tick(index);
        }
        if accepted {
            inner.plugin = plugin;
            inner.configured = true;
        }
        Ok(accepted)
    }

    /// Starts building a request to the first VM.
    pub fn request(&self) -> Request<'_> {
        Request::new(self)
    }

    /// Moves the simulated clock forward by `by`, firing, in time order, every tick that falls
    /// due and failing every HTTP callout whose timeout passes (as Envoy would).
    pub fn advance(&self, by: Duration) {
        self.try_advance(by)
            .unwrap_or_else(|error| guest_error(error));
    }

    /// [`Host::advance`], answering guest failures as errors.
    pub fn try_advance(&self, by: Duration) -> anyhow::Result<()> {
        let mut inner = self.inner.borrow_mut();
        let target = inner.clock.elapsed() + by;
        loop {
            let tick = inner
                .vms
                .iter()
                .enumerate()
                .filter_map(|(index, vm)| vm.next_tick.map(|at| (at, index)))
                .min();
            let deadline = inner.callouts.earliest_deadline();
            match (tick, deadline) {
                (Some((at, index)), deadline)
                    if at <= target && deadline.is_none_or(|(when, _)| at <= when) =>
                {
                    inner.clock.set_elapsed(at);
                    inner.fire_tick(index)?;
                }
                (_, Some((when, id))) if when <= target => {
                    inner.clock.set_elapsed(when);
                    if let Some(pending) = inner.callouts.take(id) {
                        inner.deliver(pending, HttpCallResponse::failed())?;
                    }
                }
                _ => break,
            }
        }
        inner.clock.set_elapsed(target);
        Ok(())
    }

    /// Fires `on_tick` now on every VM whose root set a tick period (without moving the clock).
    /// Answers how many VMs ticked.
    pub fn tick(&self) -> usize {
        self.try_tick().unwrap_or_else(|error| guest_error(error))
    }

    /// [`Host::tick`], answering guest failures as errors.
    pub fn try_tick(&self) -> anyhow::Result<usize> {
        let mut inner = self.inner.borrow_mut();
        let due: Vec<usize> = (0..inner.vms.len())
            .filter(|index| inner.vms[*index].tick_period.is_some())
            .collect();
        for index in &due {
            inner.fire_tick(*index)?;
        }
        Ok(due.len())
    }

    /// The tick period the root context of `vm` set, if any.
    pub fn tick_period(&self, vm: VmId) -> Option<Duration> {
        self.inner
            .borrow()
            .vms
            .get(vm.0)
            .and_then(|vm| vm.tick_period)
    }

    /// The simulated wall-clock time (starts at 2026-01-01T00:00:00Z, or the builder's
    /// [`HostBuilder::clock_start`]).
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.inner.borrow().clock.now_nanos())
    }

    /// HTTP callouts waiting for an answer, oldest first.
    pub fn pending_http_calls(&self) -> Vec<HttpCallRequest> {
        let inner = self.inner.borrow();
        inner
            .callouts
            .pending()
            .into_iter()
            .map(|pending| HttpCallRequest {
                vm: inner.vm_of(pending.guest).unwrap_or(usize::MAX),
                ..pending.request
            })
            .collect()
    }

    /// Answers callout `id` with `status` (sent as `:status`), extra headers and a body, running
    /// `on_http_call_response` in the context that made the call.
    pub fn complete_http_call(&self, id: u64, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        self.try_complete_http_call(id, status, headers, body)
            .unwrap_or_else(|error| guest_error(error));
    }

    /// [`Host::complete_http_call`], answering unknown ids and guest failures as errors.
    pub fn try_complete_http_call(
        &self,
        id: u64,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<()> {
        let mut inner = self.inner.borrow_mut();
        let pending = inner
            .callouts
            .take(id)
            .ok_or_else(|| anyhow!("no pending http call {id}"))?;
        let status = status.to_string();
        let mut pairs = vec![(b":status".as_slice().into(), status.as_bytes().into())];
        pairs.extend(
            headers
                .iter()
                .map(|(k, v)| (k.as_bytes().into(), v.as_bytes().into())),
        );
        inner.deliver(pending, HttpCallResponse::received(pairs).with_body(body))
    }

    /// Fails callout `id` (connection failure or timeout: the guest sees zero headers).
    pub fn fail_http_call(&self, id: u64) {
        self.try_fail_http_call(id)
            .unwrap_or_else(|error| guest_error(error));
    }

    /// [`Host::fail_http_call`], answering unknown ids and guest failures as errors.
    pub fn try_fail_http_call(&self, id: u64) -> anyhow::Result<()> {
        let mut inner = self.inner.borrow_mut();
        let pending = inner
            .callouts
            .take(id)
            .ok_or_else(|| anyhow!("no pending http call {id}"))?;
        inner.deliver(pending, HttpCallResponse::failed())
    }

    /// Every line the guests logged so far, in order.
    pub fn logs(&self) -> Vec<LogLine> {
        let inner = self.inner.borrow();
        inner.logs.with_lines(|lines| {
            lines
                .iter()
                .map(|line| LogLine {
                    vm: inner.vm_of(line.guest).unwrap_or(usize::MAX),
                    level: line.level,
                    message: line.message.clone(),
                })
                .collect()
        })
    }

    /// Whether any logged line at `level` or above contains `needle`.
    pub fn logged(&self, level: LogLevel, needle: &str) -> bool {
        self.logs()
            .iter()
            .any(|line| line.level >= level && line.message.contains(needle))
    }

    /// Forgets the captured logs.
    pub fn clear_logs(&self) {
        self.inner.borrow().logs.clear();
    }

    /// The value of a counter or gauge the guest defined, by name.
    pub fn metric(&self, name: &str) -> Option<u64> {
        let inner = self.inner.borrow();
        inner
            .shared
            .with_metric(&inner.vm_id, name, |metric| metric.value)
    }

    /// The observations recorded into a histogram, by name.
    pub fn histogram(&self, name: &str) -> Option<Vec<u64>> {
        let inner = self.inner.borrow();
        inner
            .shared
            .with_metric(&inner.vm_id, name, |metric| metric.observations.clone())
    }

    /// Every metric as (name, value), sorted by name (histograms report their count).
    pub fn metrics(&self) -> Vec<(String, u64)> {
        let inner = self.inner.borrow();
        inner.shared.metric_values(&inner.vm_id)
    }

    /// A shared-data key as the guests see it: (value, cas).
    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let inner = self.inner.borrow();
        inner.shared.get(&inner.vm_id, key.as_bytes())
    }

    /// Writes a shared-data key unconditionally (takes a new CAS), as a fixture.
    pub fn set_shared_data(&self, key: &str, value: &[u8]) {
        let inner = self.inner.borrow();
        inner.shared.put(&inner.vm_id, key.as_bytes(), value);
    }

    /// Sets a host-wide property (dotted path) for every later stream and root callback.
    pub fn set_property(&self, path: &str, value: impl Into<Vec<u8>>) {
        self.set_property_path(&crate::properties::dotted(path), value);
    }

    /// Sets a host-wide property by explicit segments.
    pub fn set_property_path<S: AsRef<[u8]>>(&self, path: &[S], value: impl Into<Vec<u8>>) {
        let mut inner = self.inner.borrow_mut();
        Arc::make_mut(&mut inner.properties).set(path, value.into());
    }

    /// Removes a host-wide property (the guest then reads `NOT_FOUND`).
    pub fn remove_property(&self, path: &str) {
        let mut inner = self.inner.borrow_mut();
        Arc::make_mut(&mut inner.properties).remove(&crate::properties::dotted(path));
    }

    /// Whether `clear_route_cache` is a known foreign function (Envoy >= 1.33) for later calls.
    pub fn set_clear_route_cache_supported(&self, supported: bool) {
        self.inner.borrow_mut().foreign.clear_route_cache = supported;
    }

    /// Whether the VM trapped (a Rust guest panicked); a poisoned VM refuses every callback.
    pub fn poisoned(&self, vm: VmId) -> bool {
        self.inner
            .borrow()
            .vms
            .get(vm.0)
            .is_some_and(|vm| vm.guest.is_poisoned())
    }

    pub(crate) fn check_vm(&self, vm: VmId) -> anyhow::Result<()> {
        if vm.0 >= self.vm_count() {
            bail!(
                "VM {} does not exist (the host runs {})",
                vm.0,
                self.vm_count()
            );
        }
        Ok(())
    }
}

/// `time` in nanoseconds since the Unix epoch (0 before it, saturating far after).
fn nanos_since_epoch(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}
