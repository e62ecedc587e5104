//! Scale figures for xDS, printed (not asserted): 10,000 Ingresses x 20 members x 3 replicas ->
//! full snapshot build time and size; one EndpointSlice change -> time until a subscribed
//! client has the new endpoints (p50/p99 over 50 changes).
//!
//! cargo test -p fleetgate-controller --profile fast --test xds_bench -- --ignored --nocapture
//! (`XDS_BENCH_INGRESSES`, `XDS_BENCH_MEMBERS` scale it down.)

mod synthetic;
mod xds_common;

use synthetic::{ingress, service};

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetgate_controller::derive::{self, Contact, DeriveOptions, MemberSnapshot};
use fleetgate_controller::endpoints::MemberIndex;
use fleetgate_controller::xds::{self, AdsServer, Auth, Snapshot, XdsMetrics, CLUSTER, ENDPOINT};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;
use tokio::sync::watch;
use xds_common::client::{eds_names, Client};
use xds_common::delta_client::Delta;
use xds_common::{file_wasm, options};

const REPLICAS: usize = 3;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The slice of app `i` in member `m`; `generation` moves the first pod (a pod replaced).
fn slice(i: usize, m: usize, generation: usize) -> EndpointSlice {
    let endpoints: Vec<_> = (0..REPLICAS)
        .map(|j| {
            let last = if j == 0 {
                (i + generation) % 250
            } else {
                i % 250
            };
            json!({"addresses": [format!("10.{m}.{}.{}", (i / 250 + j * 40) % 250, last)],
                   "conditions": {"ready": true}, "zone": format!("zone-{m}"),
                   "targetRef": {"kind": "Pod", "namespace": format!("ns{}", i % 50),
                                 "name": format!("app{i}-{j}-{generation}")}})
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": format!("app{i}-x"), "namespace": format!("ns{}", i % 50),
                     "labels": {"kubernetes.io/service-name": format!("app{i}")}},
        "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9102}],
        "endpoints": endpoints
    }))
    .unwrap()
}

fn member(m: usize, apps: usize) -> MemberSnapshot {
    let services: Vec<Service> = (0..apps).map(service).collect();
    let slices: Vec<EndpointSlice> = (0..apps).map(|i| slice(i, m, 0)).collect();
    MemberSnapshot {
        id: format!("m{m:02}"),
        zone: Some(format!("zone-{m}")),
        contact: Contact::Live,
        index: Arc::new(MemberIndex::from_objects(&services, &slices)),
    }
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture, preferably --profile fast"]
async fn xds_snapshot_and_endpoint_change_latency_at_fleet_scale() {
    let apps = env("XDS_BENCH_INGRESSES", 10_000);
    let n_members = env("XDS_BENCH_MEMBERS", 20);
    let changes = env("XDS_BENCH_CHANGES", 50);
    let ingresses: Vec<Ingress> = (0..apps).map(ingress).collect();
    let mut members: Vec<MemberSnapshot> = (0..n_members).map(|m| member(m, apps)).collect();
    let opts = DeriveOptions::default();
    let xopts = options(file_wasm());

    let t = Instant::now();
    let derived = derive::derive_config(&ingresses, &members, &opts).unwrap();
    let derive_took = t.elapsed();
    let rss_before = rss_mib();
    let t = Instant::now();
    let resources = xds::build(&derived, &members, &xopts).unwrap();
    let build_took = t.elapsed();
    let t = Instant::now();
    xds::validate::validate(&resources, derived.config()).unwrap();
    let validate_took = t.elapsed();
    let t = Instant::now();
    let snapshot = Snapshot::new(&resources);
    let encode_took = t.elapsed();
    let (clusters, cla) = (resources.clusters.len(), resources.endpoints.len());
    drop(resources);
    println!(
        "{apps} Ingresses x {n_members} members x {REPLICAS} replicas: derive {derive_took:?}; \
         xDS build {build_took:?} (of which validation {validate_took:?}) + encode/version \
         {encode_took:?} = {:?}; \
         {clusters} clusters, {cla} load assignments; snapshot {:.1} MiB encoded, \
         RSS +{:.0} MiB while built (resources and snapshot)",
        build_took + encode_took,
        snapshot.encoded_bytes() as f64 / (1 << 20) as f64,
        rss_mib() - rss_before,
    );

    let (tx, rx) = watch::channel(Some(Arc::new(snapshot)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(AdsServer::new(rx, Auth::default(), XdsMetrics::default()).serve(listener));
    let mut c = Client::connect(&addr, "bench").await;
    c.request(CLUSTER, &[], None).await;
    let cds = c.expect(CLUSTER).await;
    let names = eds_names(&cds);
    c.ack(&cds, &[]).await;
    c.request(ENDPOINT, &names, None).await;
    let mut eds = c.expect(ENDPOINT).await;
    c.ack(&eds, &names).await;

    // Pods replaced in place (ready counts, so the plugin config, unchanged): only the
    // affected load assignments are rebuilt; one full rebuild for comparison.
    let direct = xds::build(&derived, &members, &xopts).unwrap().direct;
    let mut current = tx.borrow().clone().unwrap();
    let mut total = Vec::new();
    let mut rebuild = Vec::new();
    for generation in 1..=changes + 1 {
        let (m, i) = (generation % n_members, (generation * 7919) % apps);
        // (The store updates its index in place; this clone is the benchmark's, not timed.)
        let mut index = (*members[m].index).clone();
        index.apply_slice(&slice(i, m, generation));
        members[m].index = Arc::new(index);
        let t = Instant::now();
        let next = if generation > changes {
            Snapshot::new(&xds::build(&derived, &members, &xopts).unwrap())
        } else {
            let key = (format!("ns{}", i % 50), format!("app{i}"));
            current.with(
                ENDPOINT,
                xds::endpoint_entries(&direct, &members[m], &[key]),
            )
        };
        current = Arc::new(next.clone());
        assert!(xds::publish(&tx, next));
        let built = t.elapsed();
        let next = c.expect(ENDPOINT).await;
        let took = t.elapsed();
        assert_ne!(next.version_info, eds.version_info);
        eds = next;
        c.ack(&eds, &names).await;
        if generation > changes {
            println!("with a full rebuild instead: {took:?} (rebuild + publish {built:?})");
        } else {
            rebuild.push(built);
            total.push(took);
        }
    }
    rebuild.sort();
    total.sort();
    println!(
        "one EndpointSlice change -> EDS at the client ({changes} changes; SotW re-sends all {} \
         load assignments, {:.1} MiB): p50 {:?} p99 {:?}, of which incremental rebuild + \
         publish p50 {:?} p99 {:?}",
        names.len(),
        prost::Message::encoded_len(&eds) as f64 / (1 << 20) as f64,
        percentile(&total, 0.5),
        percentile(&total, 0.99),
        percentile(&rebuild, 0.5),
        percentile(&rebuild, 0.99),
    );
    // The same kind of change seen by a delta (incremental) client: one resource on the wire.
    // (The SotW client goes first, so that its pushes do not compete for the CPU.)
    drop(c);
    let mut d = Delta::connect(&addr).await;
    let initial = Duration::from_secs(120);
    d.subscribe(CLUSTER, &[]).await;
    let r = d.expect_within(CLUSTER, initial).await;
    d.answer(&r, None).await;
    d.subscribe(ENDPOINT, &["*"]).await;
    let r = d.expect_within(ENDPOINT, initial).await;
    d.answer(&r, None).await;
    let mut delta = Vec::new();
    for generation in changes + 2..=2 * changes + 1 {
        let (m, i) = (generation % n_members, (generation * 7919) % apps);
        let mut index = (*members[m].index).clone();
        index.apply_slice(&slice(i, m, generation));
        members[m].index = Arc::new(index);
        let t = Instant::now();
        let key = (format!("ns{}", i % 50), format!("app{i}"));
        let next = current.with(
            ENDPOINT,
            xds::endpoint_entries(&direct, &members[m], &[key]),
        );
        current = Arc::new(next.clone());
        xds::publish(&tx, next);
        let r = d.expect(ENDPOINT).await;
        delta.push(t.elapsed());
        assert_eq!(r.resources.len(), 1);
        d.answer(&r, None).await;
    }
    delta.sort();
    println!(
        "the same change at a delta ADS client (1 load assignment sent): p50 {:?} p99 {:?}",
        percentile(&delta, 0.5),
        percentile(&delta, 0.99)
    );
}
