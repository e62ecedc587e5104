//! Controller scale: full derivation, one EndpointSlice change and one object edit at 1,000
//! and 10,000 Ingresses x 3 and x 20 members, and the same apps as HTTPRoutes x 20 members
//! (each member: a two-port Service and one EndpointSlice of 3 ready endpoints per app), with
//! the peak memory of each size.
//!
//! `cargo bench -p fleetgate-controller --bench derive` (each size runs in a child process so
//! its peak RSS is its own; `-- SIZE MEMBERS [httproute]` runs one size in this process).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetgate_controller::derive::{
    DeriveOptions, Derived, Deriver, GatewayInputs, MemberSnapshot,
};
use fleetgate_controller::endpoints::{MemberIndex, Relist};
use fleetgate_controller::gateway_api::Objects;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;

#[path = "../tests/synthetic/mod.rs"]
mod synthetic;
use synthetic::{gateway_api, http_route, ingress, members, slice, status_mib, Shape};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// Resident now, after giving freed memory back (so it is what is kept, not what was churned).
fn rss_mib() -> f64 {
    // SAFETY: malloc_trim only releases free heap memory; no pointer is affected.
    unsafe {
        libc::malloc_trim(0);
    }
    status_mib("VmRSS:")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The fleet's routes as Ingresses or as HTTPRoutes (app `i` either way).
#[derive(Clone, Copy, PartialEq)]
enum Api {
    Ingress,
    HttpRoute,
}

/// The objects a derivation reads, and app `i` edited (version `k`, a new min-healthy).
struct Fleet {
    ingresses: Vec<Arc<Ingress>>,
    objects: Objects,
}

impl Fleet {
    fn new(api: Api, n: usize) -> Fleet {
        match api {
            Api::Ingress => Fleet {
                ingresses: (0..n).map(|i| Arc::new(ingress(i))).collect(),
                objects: Objects::default(),
            },
            Api::HttpRoute => Fleet {
                ingresses: Vec::new(),
                objects: gateway_api((0..n).map(|i| http_route(i, 1)).collect()),
            },
        }
    }

    fn derive(&self, api: Api, deriver: &mut Deriver, members: &[MemberSnapshot]) -> Derived {
        let opts = DeriveOptions::default();
        let labels = BTreeMap::new();
        let gateway = (api == Api::HttpRoute).then_some(GatewayInputs {
            objects: &self.objects,
            namespaces: &labels,
            address: None,
        });
        (deriver.derive_with(&self.ingresses, gateway, members, &opts)).expect("derive")
    }

    fn edit(&mut self, api: Api, i: usize, k: usize) {
        let annotations = Some(
            [("fleetgate.io/min-healthy".to_string(), (k + 2).to_string())]
                .into_iter()
                .collect(),
        );
        match api {
            Api::Ingress => {
                let mut ing = ingress(i);
                ing.metadata.annotations = annotations;
                self.ingresses[i] = Arc::new(ing);
            }
            Api::HttpRoute => {
                let mut r = http_route(i, k + 2);
                r.metadata.annotations = annotations;
                self.objects.http_routes[i] = r;
            }
        }
    }
}

/// One size: full derive (median of 3 fresh derivers), then one slice change -> new revision
/// (median of 5, each a different app losing a ready endpoint in member 0), then one app's
/// object edited (median of 5).
fn one(n: usize, count: usize, api: Api) {
    let mut fleet = Fleet::new(api, n);
    let before = rss_mib();
    let mut members = members(n, count);
    let indexes = rss_mib() - before;
    let mut full = Vec::new();
    let mut deriver = Deriver::default();
    let mut last = String::new();
    for _ in 0..3 {
        deriver = Deriver::default();
        let t = Instant::now();
        let d = fleet.derive(api, &mut deriver, &members);
        full.push(t.elapsed());
        assert_eq!(d.route_count(), n, "every app is routed");
        last = d.revision;
    }
    // More changes (FLEETGATE_BENCH_CHANGES) make a profile of the change path.
    let changes = std::env::var("FLEETGATE_BENCH_CHANGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let mut change = Vec::new();
    for k in 0..changes {
        let i = (k * 7919) % n;
        let shape = Shape {
            ready: 2,
            generation: 0,
        };
        Arc::make_mut(&mut members[0].index).apply_slice(&slice(i, 0, shape));
        let t = Instant::now();
        let d = fleet.derive(api, &mut deriver, &members);
        change.push(t.elapsed());
        assert_ne!(
            d.revision, last,
            "a ready-count change must change the revision"
        );
        last = d.revision;
    }
    // One object edited (a new version, as the watch delivers it): the slow path, reusing
    // every other object's reading and routes.
    let mut edits = Vec::new();
    for k in 0..5 {
        fleet.edit(api, (k * 104_729) % n, k);
        let t = Instant::now();
        let d = fleet.derive(api, &mut deriver, &members);
        edits.push(t.elapsed());
        assert_ne!(d.revision, last, "an edit must change the revision");
        last = d.revision;
    }
    full.sort();
    change.sort();
    edits.sort();
    let what = match api {
        Api::Ingress => "Ingresses ",
        Api::HttpRoute => "HTTPRoutes",
    };
    println!(
        "{n:>6} {what} x {count:>2} members: full derive {:>6.1} ms, one EndpointSlice change {:>5.1} ms, one object edit {:>5.1} ms, member indexes {:>4.0} MiB, resident {:>4.0} MiB, peak RSS {:>4.0} MiB",
        ms(full[1]),
        ms(change[change.len() / 2]),
        ms(edits[2]),
        indexes,
        rss_mib(),
        peak_rss_mib()
    );
}

/// Bad input at scale: bounded time, the rest keeps working.
fn bad_input() {
    let opts = DeriveOptions::default();
    let members3 = members(1, 3);
    // 10,000 Ingresses all claiming one host and path: the oldest wins, the rest are warned.
    let same: Vec<Arc<Ingress>> = (0..10_000)
        .map(|i| {
            let mut ing = ingress(0);
            ing.metadata.name = Some(format!("claim{i}"));
            Arc::new(ing)
        })
        .collect();
    let t = Instant::now();
    let d = Deriver::default()
        .derive(&same, &members3, &opts)
        .expect("derive");
    println!(
        "bad input: 10,000 Ingresses claiming one host/path: {:.1} ms, {} route, {} problems",
        ms(t.elapsed()),
        d.route_count(),
        d.problems.len()
    );
    // One Ingress with 1,000 paths.
    let mut wide = ingress(0);
    let spec = wide.spec.as_mut().expect("spec");
    let rule = &mut spec.rules.as_mut().expect("rules")[0];
    let paths = &mut rule.http.as_mut().expect("http").paths;
    let template = paths[0].clone();
    *paths = (0..1_000)
        .map(|i| {
            let mut p = template.clone();
            p.path = Some(format!("/p{i}"));
            p
        })
        .collect();
    let t = Instant::now();
    let d = Deriver::default()
        .derive(&[Arc::new(wide)], &members3, &opts)
        .expect("derive");
    println!(
        "bad input: one Ingress with 1,000 paths: {:.1} ms, {} route with {} paths",
        ms(t.elapsed()),
        d.route_count(),
        d.config()
            .routes
            .iter()
            .map(|r| r.paths.len())
            .sum::<usize>()
    );
    // A member sending 100,000 EndpointSlices (one Service each).
    let t = Instant::now();
    let slices: Vec<EndpointSlice> = (0..100_000)
        .map(|i| slice(i, 0, Shape::default()))
        .collect();
    let mut index = MemberIndex::default();
    index.replace_slices(Relist::of_slices(&slices));
    drop(slices);
    let built = t.elapsed();
    let mut big = members(1, 1);
    big[0].index = Arc::new(index);
    let t = Instant::now();
    let d = Deriver::default()
        .derive(&[Arc::new(ingress(0))], &big, &opts)
        .expect("derive");
    println!(
        "bad input: a member with 100,000 EndpointSlices: read and indexed in {:.0} ms, derive {:.1} ms ({} route), peak RSS {:.0} MiB",
        ms(built),
        ms(t.elapsed()),
        d.route_count(),
        peak_rss_mib()
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.as_slice() {
        [bad] if bad == "bad" => return bad_input(),
        [n, m] => {
            return one(
                n.parse().expect("SIZE"),
                m.parse().expect("MEMBERS"),
                Api::Ingress,
            )
        }
        [n, m, api] if api == "httproute" => {
            return one(
                n.parse().expect("SIZE"),
                m.parse().expect("MEMBERS"),
                Api::HttpRoute,
            )
        }
        [] => {}
        other => panic!("usage: derive [SIZE MEMBERS [httproute] | bad]; got {other:?}"),
    }
    let exe = std::env::current_exe().expect("exe");
    let sizes = [(1_000, 3), (1_000, 20), (10_000, 3), (10_000, 20)];
    let runs = (sizes
        .iter()
        .map(|(n, m)| vec![n.to_string(), m.to_string()]))
    .chain([vec!["1000".into(), "20".into(), "httproute".into()]])
    .chain([vec!["10000".into(), "20".into(), "httproute".into()]]);
    for args in runs {
        let status = Command::new(&exe).args(&args).status().expect("child");
        assert!(status.success(), "{args:?}: {status}");
    }
    let status = Command::new(&exe).arg("bad").status().expect("child");
    assert!(status.success(), "bad input: {status}");
}
