//! The shared-data store and metrics of one host, shared by all its VMs the way Envoy workers
//! share them. Shared data follows proxy-wasm-cpp-host `shared_data.cc`: one global CAS counter,
//! every successful write takes the next value, `cas = 0` writes unconditionally, a non-zero CAS
//! that differs from the key's current one answers `CAS_MISMATCH` (a missing key is created
//! whatever the CAS). Metrics are readable by name from tests. Queues are delegated to the crate's
//! `InMemoryStore`.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};

use proxy_wasm_host::abi::v0_2_1::types::{MetricType, Status};
use proxy_wasm_host::abi::v0_2_1::{
    InMemoryStore, Invocation, MetricId, QueueId, SharedServices, SharedValue,
};

type Key = (Vec<u8>, Vec<u8>);

#[derive(Debug)]
struct Data {
    entries: BTreeMap<Key, (Vec<u8>, NonZeroU32)>,
    next_cas: NonZeroU32,
}

#[derive(Debug)]
pub(crate) struct Metric {
    pub(crate) name: String,
    pub(crate) kind: MetricType,
    pub(crate) value: u64,
    pub(crate) observations: Vec<u64>,
}

#[derive(Debug, Default)]
struct Metrics {
    by_name: BTreeMap<Key, MetricId>,
    entries: BTreeMap<MetricId, Metric>,
    next: u32,
}

/// Shared data with Envoy's CAS semantics, metrics with a read-back, queues from the crate.
#[derive(Debug)]
pub(crate) struct SharedStore {
    data: Mutex<Data>,
    metrics: Mutex<Metrics>,
    queues: InMemoryStore,
}

/// One shared-data store (and metrics) that hosts on different threads can share, as all the
/// worker threads of one Envoy process do: pass it to [`crate::HostBuilder::shared_data`].
#[derive(Debug, Clone)]
pub struct SharedData(pub(crate) std::sync::Arc<SharedStore>);

impl SharedData {
    pub fn new() -> Self {
        SharedData(std::sync::Arc::new(SharedStore::new()))
    }
}

impl Default for SharedData {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SharedStore {
    pub(crate) fn new() -> Self {
        Self {
            data: Mutex::new(Data {
                entries: BTreeMap::new(),
                next_cas: NonZeroU32::MIN,
            }),
            metrics: Mutex::default(),
            queues: InMemoryStore::new(),
        }
    }

    /// Reads a key the way a guest would (value and CAS).
    pub(crate) fn get(&self, vm_id: &[u8], key: &[u8]) -> Option<(Vec<u8>, u32)> {
        lock(&self.data)
            .entries
            .get(&(vm_id.to_vec(), key.to_vec()))
            .map(|(bytes, cas)| (bytes.clone(), cas.get()))
    }

    /// Writes a key unconditionally, as a test fixture.
    pub(crate) fn put(&self, vm_id: &[u8], key: &[u8], value: &[u8]) {
        let _ = self.write(vm_id, key, value, None);
    }

    fn write(
        &self,
        vm_id: &[u8],
        key: &[u8],
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), Status> {
        let mut data = lock(&self.data);
        let cas_now = data.next_cas;
        let entry = data.entries.entry((vm_id.to_vec(), key.to_vec()));
        match entry {
            std::collections::btree_map::Entry::Occupied(mut held) => {
                if cas.is_some_and(|given| given != held.get().1.get()) {
                    return Err(Status::CasMismatch);
                }
                held.insert((value.to_vec(), cas_now));
            }
            std::collections::btree_map::Entry::Vacant(free) => {
                free.insert((value.to_vec(), cas_now));
            }
        }
        data.next_cas = NonZeroU32::new(cas_now.get().wrapping_add(1)).unwrap_or(NonZeroU32::MIN);
        Ok(())
    }

    /// Reads a metric by name.
    pub(crate) fn with_metric<R>(
        &self,
        vm_id: &[u8],
        name: &str,
        read: impl FnOnce(&Metric) -> R,
    ) -> Option<R> {
        let metrics = lock(&self.metrics);
        let id = metrics
            .by_name
            .get(&(vm_id.to_vec(), name.as_bytes().to_vec()))?;
        metrics.entries.get(id).map(read)
    }

    /// Every metric name and value (histograms report their observation count), sorted by name.
    pub(crate) fn metric_values(&self, vm_id: &[u8]) -> Vec<(String, u64)> {
        let metrics = lock(&self.metrics);
        let mut values: Vec<(String, u64)> = metrics
            .by_name
            .iter()
            .filter(|((vm, _), _)| vm == vm_id)
            .filter_map(|(_, id)| metrics.entries.get(id))
            .map(|metric| match metric.kind {
                MetricType::Histogram => (metric.name.clone(), metric.observations.len() as u64),
                _ => (metric.name.clone(), metric.value),
            })
            .collect();
        values.sort();
        values
    }
}

impl SharedServices for SharedStore {
    fn get_shared_data(
        &self,
        _: Invocation,
        vm_id: &[u8],
        key: &[u8],
    ) -> Result<SharedValue, Status> {
        lock(&self.data)
            .entries
            .get(&(vm_id.to_vec(), key.to_vec()))
            .map(|(bytes, cas)| SharedValue::new(bytes.clone(), *cas))
            .ok_or(Status::NotFound)
    }

    fn set_shared_data(
        &self,
        _: Invocation,
        vm_id: &[u8],
        key: &[u8],
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), Status> {
        self.write(vm_id, key, value, cas)
    }

    fn register_shared_queue(
        &self,
        call: Invocation,
        vm_id: &[u8],
        name: &[u8],
    ) -> Result<QueueId, Status> {
        self.queues.register_shared_queue(call, vm_id, name)
    }

    fn resolve_shared_queue(
        &self,
        call: Invocation,
        vm_id: &[u8],
        name: &[u8],
    ) -> Result<QueueId, Status> {
        self.queues.resolve_shared_queue(call, vm_id, name)
    }

    fn enqueue_shared_queue(
        &self,
        call: Invocation,
        queue: QueueId,
        value: &[u8],
    ) -> Result<(), Status> {
        self.queues.enqueue_shared_queue(call, queue, value)
    }

    fn dequeue_shared_queue(&self, call: Invocation, queue: QueueId) -> Result<Vec<u8>, Status> {
        self.queues.dequeue_shared_queue(call, queue)
    }

    fn define_metric(
        &self,
        _: Invocation,
        vm_id: &[u8],
        kind: MetricType,
        name: &[u8],
    ) -> Result<MetricId, Status> {
        let mut metrics = lock(&self.metrics);
        let key = (vm_id.to_vec(), name.to_vec());
        if let Some(id) = metrics.by_name.get(&key).copied() {
            return match metrics.entries.get(&id) {
                Some(held) if held.kind == kind => Ok(id),
                _ => Err(Status::BadArgument),
            };
        }
        metrics.next += 1;
        let id = MetricId::try_from(metrics.next).map_err(|_| Status::InternalFailure)?;
        metrics.by_name.insert(key, id);
        let name = String::from_utf8_lossy(name).into_owned();
        metrics.entries.insert(
            id,
            Metric {
                name,
                kind,
                value: 0,
                observations: Vec::new(),
            },
        );
        Ok(id)
    }

    fn record_metric(&self, _: Invocation, metric: MetricId, value: u64) -> Result<(), Status> {
        let mut metrics = lock(&self.metrics);
        let entry = metrics.entries.get_mut(&metric).ok_or(Status::NotFound)?;
        match entry.kind {
            MetricType::Histogram => entry.observations.push(value),
            _ => entry.value = value,
        }
        Ok(())
    }

    fn increment_metric(&self, _: Invocation, metric: MetricId, delta: i64) -> Result<(), Status> {
        let mut metrics = lock(&self.metrics);
        let entry = metrics.entries.get_mut(&metric).ok_or(Status::NotFound)?;
        match entry.kind {
            MetricType::Histogram => return Err(Status::BadArgument),
            MetricType::Counter if delta < 0 => return Err(Status::BadArgument),
            _ => {}
        }
        entry.value = entry
            .value
            .checked_add_signed(delta)
            .ok_or(Status::BadArgument)?;
        Ok(())
    }

    fn get_metric(&self, _: Invocation, metric: MetricId) -> Result<u64, Status> {
        let metrics = lock(&self.metrics);
        let entry = metrics.entries.get(&metric).ok_or(Status::NotFound)?;
        match entry.kind {
            MetricType::Histogram => Err(Status::BadArgument),
            _ => Ok(entry.value),
        }
    }
}
