//! xDS at fleet scale, figures printed (not asserted): 10,000 Ingresses x 20 members x 3
//! replicas -> the full snapshot (build + validate + encode, on every core: its CPU time is
//! all threads') and its size; the two ends of a SotW EDS push without the transport; one
//! EndpointSlice change (a pod replaced in place) -> the time until a subscribed
//! state-of-the-world client, then a delta client, has the new endpoints (p50/p99), and how
//! much of it was making and publishing the new snapshot; the process's peak RSS. The clients
//! use Envoy's default HTTP/2 windows (256 MiB). The machine is shared: compare runs made
//! back to back.
//!
//! `cargo bench -p fleetgate-controller --bench xds [-- INGRESSES MEMBERS]`
//! (`FLEETGATE_BENCH_CHANGES`: changes per client, default 100).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetgate_controller::derive::{DeriveOptions, Derived, Deriver, MemberSnapshot};
use fleetgate_controller::xds::pb::envoy::service::discovery::v3::DiscoveryResponse;
use fleetgate_controller::xds::wire::WireResponse;
use fleetgate_controller::xds::{self, AdsServer, Auth, Snapshot, XdsMetrics, CLUSTER, ENDPOINT};
use k8s_openapi::api::networking::v1::Ingress;
use prost::Message;
use tokio::sync::watch;

#[path = "../tests/synthetic/mod.rs"]
mod synthetic;
#[path = "../tests/xds_common/mod.rs"]
mod xds_common;
use synthetic::{ingress, members, slice, status_mib, Shape, REPLICAS};
use xds_common::client::{eds_names, Client};
use xds_common::delta_client::{Delta, QUIET};
use xds_common::{file_wasm, options};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Fleet {
    apps: usize,
    ingresses: Vec<Arc<Ingress>>,
    members: Vec<MemberSnapshot>,
    opts: DeriveOptions,
    xopts: xds::XdsOptions,
}

impl Fleet {
    fn new(apps: usize, count: usize) -> Fleet {
        Fleet {
            apps,
            ingresses: (0..apps).map(|i| Arc::new(ingress(i))).collect(),
            members: members(apps, count),
            opts: DeriveOptions::default(),
            xopts: options(file_wasm()),
        }
    }

    /// A fresh derivation (its lazily parsed config not yet built, as after a real derive).
    fn derive(&self) -> Derived {
        let d = Deriver::default().derive(&self.ingresses, &self.members, &self.opts);
        d.expect("derive")
    }

    /// Change number `k`: one app's first pod replaced in one member. Returns that member's
    /// index and the Service changed.
    fn replace_pod(&mut self, k: usize) -> (usize, (String, String)) {
        let (m, i) = (k % self.members.len(), (k * 7919) % self.apps);
        let shape = Shape {
            generation: k,
            ..Shape::default()
        };
        Arc::make_mut(&mut self.members[m].index).apply_slice(&slice(i, m, shape));
        (m, (format!("ns{}", i % 50), format!("app{i}")))
    }

    /// The snapshot after change `k`, by the incremental path (only its EDS entries rebuilt).
    fn changed(&mut self, k: usize, current: &Snapshot, direct: &Direct) -> Snapshot {
        let (m, svc) = self.replace_pod(k);
        let entries = xds::endpoint_entries(direct, &self.members[m], &[svc]);
        current.with(ENDPOINT, entries)
    }
}

type Direct = std::collections::BTreeMap<String, xds::DirectTarget>;

/// CPU time of this process (every thread: the build runs on all cores): the build's own
/// work, whatever else the machine runs.
fn process_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given, nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    ms(sorted[((sorted.len() as f64 - 1.0) * p).round() as usize])
}

/// The full snapshot, three times from fresh derivations: median time, the last snapshot and
/// its direct clusters.
fn full_snapshot(fleet: &Fleet) -> (Snapshot, Direct) {
    let (mut took, mut cpu) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..3 {
        let derived = fleet.derive();
        let (t, c) = (Instant::now(), process_cpu());
        let e = xds::build_snapshot(&derived, &fleet.members, &fleet.xopts).expect("valid");
        took.push(t.elapsed());
        cpu.push(process_cpu() - c);
        last = Some((e.snapshot, e.direct));
    }
    took.sort();
    cpu.sort();
    // The plugin config's parse is part of every full build (lazy in a fresh derivation).
    let derived = fleet.derive();
    let t = Instant::now();
    let routes = derived.config().routes.len();
    println!(
        "  of which the plugin config's parse ({routes} routes): {:.0} ms",
        ms(t.elapsed())
    );
    let (snapshot, direct) = last.expect("three runs");
    let count = |t| snapshot.get(t).map_or(0, |s| s.entries.len());
    println!(
        "full snapshot (build + validate + encode) of {} clusters, {} load assignments: \
         median {:.0} ms (min {:.0}, max {:.0}), CPU {:.0} ms; encoded {:.1} MiB",
        count(CLUSTER),
        count(ENDPOINT),
        ms(took[1]),
        ms(took[0]),
        ms(took[2]),
        ms(cpu[1]),
        snapshot.encoded_bytes() as f64 / (1 << 20) as f64
    );
    (snapshot, direct)
}

/// The two ends of a SotW EDS push without the transport: the server writing the response
/// from the snapshot's encoded resources (what its codec does), and a prost client decoding
/// it into a `DiscoveryResponse` (what the bench's client does; Envoy would then decode each
/// load assignment too). Medians of five.
fn push_parts(snapshot: &Snapshot) {
    let eds = Arc::clone(snapshot.get(ENDPOINT).expect("EDS"));
    let response = WireResponse::new(ENDPOINT, eds, None, "1".into());
    let (mut write, mut decode, mut len) = (Vec::new(), Vec::new(), 0);
    for _ in 0..5 {
        let t = Instant::now();
        let mut buf = Vec::with_capacity(response.encoded_len());
        response.encode(&mut buf);
        write.push(t.elapsed());
        let t = Instant::now();
        let typed = DiscoveryResponse::decode(buf.as_slice()).expect("decodes");
        decode.push(t.elapsed());
        len = buf.len();
        drop(typed);
    }
    write.sort();
    decode.sort();
    println!(
        "a SotW EDS push of {} resources, {:.1} MiB: the server writes it in {:.1} ms, \
         a prost client decodes it in {:.1} ms",
        response.len(),
        len as f64 / (1 << 20) as f64,
        ms(write[2]),
        ms(decode[2])
    );
}

struct Changes {
    fleet: Fleet,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    direct: Direct,
    next: usize,
}

impl Changes {
    /// Publish the next change; returns when it was started.
    fn publish(&mut self) -> Instant {
        self.next += 1;
        let current = self.tx.borrow().clone().expect("a snapshot");
        let t = Instant::now();
        let next = self.fleet.changed(self.next, &current, &self.direct);
        assert!(xds::publish(&self.tx, next), "a changed EDS version");
        t
    }
}

/// A state-of-the-world client subscribed to clusters and (by name) their endpoints: each
/// change's time until its EDS response is decoded.
async fn sotw(addr: &str, changes: &mut Changes, n: usize) -> Vec<Duration> {
    let mut c = Client::connect(addr, "bench-sotw").await;
    c.request(CLUSTER, &[], None).await;
    let cds = c.expect(CLUSTER).await;
    let names = eds_names(&cds);
    c.ack(&cds, &[]).await;
    c.request(ENDPOINT, &names, None).await;
    let eds = c.expect(ENDPOINT).await;
    c.ack(&eds, &names).await;
    let (mut took, mut published) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = changes.publish();
        published.push(t.elapsed());
        let eds = c.expect(ENDPOINT).await;
        took.push(t.elapsed());
        assert_eq!(
            eds.resources.len(),
            names.len(),
            "SotW sends the whole type"
        );
        c.ack(&eds, &names).await;
    }
    assert!(c.recv(QUIET).await.is_none(), "only EDS was pushed");
    published.sort();
    let p50 = percentile(&published, 0.5);
    println!("  of which the new snapshot's making and publishing: p50 {p50:.1} ms");
    took
}

/// A delta client subscribed to every cluster and load assignment: each change's time until
/// its one resource arrives.
async fn delta(addr: &str, changes: &mut Changes, n: usize) -> Vec<Duration> {
    let mut d = Delta::connect(addr).await;
    let initial = Duration::from_secs(120);
    for type_url in [CLUSTER, ENDPOINT] {
        d.subscribe(type_url, &["*"]).await;
        let r = d.expect_within(type_url, initial).await;
        d.answer(&r, None).await;
    }
    let mut took = Vec::new();
    for _ in 0..n {
        let t = changes.publish();
        let r = d.expect(ENDPOINT).await;
        took.push(t.elapsed());
        assert_eq!(r.resources.len(), 1, "one load assignment changed");
        d.answer(&r, None).await;
    }
    assert!(d.recv(QUIET).await.is_none(), "only EDS was pushed");
    took
}

fn report(what: &str, mut took: Vec<Duration>) {
    took.sort();
    println!(
        "one EndpointSlice change -> {what}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} changes)",
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        ms(took[took.len() - 1]),
        took.len()
    );
}

async fn latency(fleet: Fleet, snapshot: Snapshot, direct: Direct, n: usize) {
    let (tx, rx) = watch::channel(Some(Arc::new(snapshot)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(AdsServer::new(rx, Auth::default(), XdsMetrics::default()).serve(listener));
    let mut changes = Changes {
        fleet,
        tx,
        direct,
        next: 0,
    };
    // One client at a time, so that the two do not compete for the CPU.
    report("SotW client", sotw(&addr, &mut changes, n).await);
    report("delta client", delta(&addr, &mut changes, n).await);
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse().expect("usage: xds [INGRESSES MEMBERS]"))
        .collect();
    let (apps, count) = match args.as_slice() {
        [n, m] => (*n, *m),
        _ => (10_000, 20),
    };
    let changes = std::env::var("FLEETGATE_BENCH_CHANGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split(' ').next().unwrap_or("?").to_string();
    println!("{apps} Ingresses x {count} members x {REPLICAS} replicas (load average {load})");
    let fleet = Fleet::new(apps, count);
    let before = status_mib("VmRSS:");
    let (snapshot, direct) = full_snapshot(&fleet);
    push_parts(&snapshot);
    println!(
        "resident: {:.0} MiB before the snapshots (fleet, indexes), {:.0} MiB now",
        before,
        status_mib("VmRSS:")
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(latency(fleet, snapshot, direct, changes));
    println!("peak RSS {:.0} MiB", status_mib("VmHWM:"));
}
