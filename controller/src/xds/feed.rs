//! The xDS snapshot kept up to date off the derive loop. Each derivation is offered to a
//! builder task (the latest wins: offers made while a build runs replace each other, never
//! queue), built on a blocking thread and published. A derivation with the same plugin config
//! as the last build (a pod replaced, an address moved) only rebuilds the load assignments of
//! the Services that changed in each member since then. Invalid resources are never
//! published: the last good snapshot keeps serving (logged, counted).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};

use super::encode::build_snapshot;
use super::metrics::XdsMetrics;
use super::resources::{changed_endpoint_entries, DirectTarget, XdsOptions};
use super::snapshot::{publish, Snapshot};
use super::{XdsError, ENDPOINT};
use crate::derive::{Derived, MemberSnapshot};
use crate::endpoints::svc_hash;

/// One derivation and the members it was derived from.
pub struct Input {
    pub derived: Derived,
    pub members: Vec<MemberSnapshot>,
}

/// What the last published snapshot was built from.
pub struct Built {
    json: Bytes,
    /// Per member id, its index's cursor at the build (not the index: holding it would make
    /// the store copy it on its next change).
    cursors: BTreeMap<String, (u64, u64)>,
    direct: BTreeMap<String, DirectTarget>,
    /// Some mirror named no Service: a new Service may add clusters without a config change.
    unresolved_mirrors: bool,
    pub snapshot: Snapshot,
}

/// How to get from the last build to an input.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// Same config, no member index moved.
    Nothing,
    Full,
    /// Per member (position in the input): the hashes of the Services changed since the
    /// last build, or `None` when its change log does not reach back (all of its Services).
    Endpoints(Vec<(usize, Option<HashSet<u64>>)>),
}

/// Compare an input with the last build.
pub fn plan(last: Option<&Built>, input: &Input) -> Plan {
    let Some(last) = last else { return Plan::Full };
    let same_members = last.cursors.len() == input.members.len()
        && input
            .members
            .iter()
            .all(|m| last.cursors.contains_key(&m.id));
    if last.json != input.derived.json || !same_members {
        return Plan::Full;
    }
    let mut changed = Vec::new();
    for (i, m) in input.members.iter().enumerate() {
        let cursor = last.cursors[&m.id];
        if cursor != m.index.cursor() {
            let hashes = m.index.changed_since(cursor).map(|h| h.collect());
            changed.push((i, hashes));
        }
    }
    match changed.is_empty() {
        true => Plan::Nothing,
        false if last.unresolved_mirrors => Plan::Full,
        false => Plan::Endpoints(changed),
    }
}

/// What one step did.
#[derive(Debug)]
pub enum Outcome {
    Unchanged,
    Built(Duration),
    /// Endpoint-only: this many load assignments rebuilt.
    Updated(Duration, usize),
    Invalid(XdsError),
}

/// Bring the last build up to `input`. On error the last build is kept.
pub fn step(last: Option<Built>, input: Input, opts: &XdsOptions) -> (Option<Built>, Outcome) {
    let started = Instant::now();
    match plan(last.as_ref(), &input) {
        Plan::Nothing => (last, Outcome::Unchanged),
        Plan::Full => match full(&input, opts) {
            Ok(b) => (Some(b), Outcome::Built(started.elapsed())),
            Err(e) => (last, Outcome::Invalid(e)),
        },
        Plan::Endpoints(changed) => {
            let Some(mut b) = last else {
                return (None, Outcome::Unchanged);
            };
            let n = update(&mut b, &input, &changed);
            (Some(b), Outcome::Updated(started.elapsed(), n))
        }
    }
}

fn cursors(members: &[MemberSnapshot]) -> BTreeMap<String, (u64, u64)> {
    members
        .iter()
        .map(|m| (m.id.clone(), m.index.cursor()))
        .collect()
}

fn full(input: &Input, opts: &XdsOptions) -> Result<Built, XdsError> {
    let e = build_snapshot(&input.derived, &input.members, opts)?;
    Ok(Built {
        json: input.derived.json.clone(),
        cursors: cursors(&input.members),
        unresolved_mirrors: !e.unresolved_mirrors.is_empty(),
        snapshot: e.snapshot,
        direct: e.direct,
    })
}

/// Rebuild the changed members' load assignments of the changed Services. Returns how many.
fn update(b: &mut Built, input: &Input, changed: &[(usize, Option<HashSet<u64>>)]) -> usize {
    let mut entries = Vec::new();
    for (i, hashes) in changed {
        let member = &input.members[*i];
        entries.extend(changed_endpoint_entries(&b.direct, member, |svc| {
            hashes
                .as_ref()
                .is_none_or(|h| h.contains(&svc_hash(&svc.key())))
        }));
    }
    let n = entries.len();
    b.snapshot = b.snapshot.with(ENDPOINT, entries);
    b.cursors = cursors(&input.members);
    n
}

/// Where the derive loop offers derivations to the builder task.
#[derive(Clone, Default)]
pub struct Feed {
    slot: Arc<Mutex<Option<Input>>>,
    wake: Arc<Notify>,
}

impl Feed {
    /// Replace whatever is waiting with this derivation.
    pub fn offer(&self, derived: Derived, members: Vec<MemberSnapshot>) {
        let input = Input { derived, members };
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(input);
        self.wake.notify_one();
    }

    fn take(&self) -> Option<Input> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Start the builder task: it publishes to `tx` until the runtime ends.
pub fn spawn(
    opts: XdsOptions,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    metrics: XdsMetrics,
) -> Feed {
    let feed = Feed::default();
    let offers = feed.clone();
    tokio::spawn(async move {
        let mut last: Option<Built> = None;
        loop {
            offers.wake.notified().await;
            let Some(input) = offers.take() else { continue };
            let (prev, o) = (last.take(), opts.clone());
            match tokio::task::spawn_blocking(move || step(prev, input, &o)).await {
                Ok((built, outcome)) => {
                    report(&outcome, &metrics);
                    if let (Some(b), false) = (&built, matches!(outcome, Outcome::Unchanged)) {
                        publish(&tx, b.snapshot.clone());
                    }
                    last = built;
                }
                Err(e) => error!(err = %e, "xDS snapshot build panicked; keeping the last good"),
            }
        }
    });
    feed
}

fn report(outcome: &Outcome, metrics: &XdsMetrics) {
    match outcome {
        Outcome::Unchanged => {}
        Outcome::Built(took) => {
            metrics.build_seconds.observe(took.as_secs_f64());
            info!(took_ms = took.as_millis() as u64, "xDS snapshot built");
        }
        Outcome::Updated(took, n) => {
            metrics.update_seconds.observe(took.as_secs_f64());
            info!(
                load_assignments = n,
                took_us = took.as_micros() as u64,
                "xDS endpoints updated"
            );
        }
        Outcome::Invalid(e) => {
            metrics.invalid.inc();
            warn!(err = %e, "xDS resources invalid; keeping the last good snapshot");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::cli::{self, RenderArgs};
    use crate::derive::DeriveOptions;
    use crate::xds::WasmCode;

    fn fleet() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/fleet")
    }

    fn input(hz_b: &str) -> Input {
        let f = fleet();
        let args = RenderArgs {
            fleet: vec![f.join("clusters"), f.join("active-active")],
            members: vec![
                ("hz-a".into(), f.join("members/hz-a")),
                ("hz-b".into(), f.join("members").join(hz_b)),
            ],
            zones: vec![],
            options: DeriveOptions::default(),
        };
        let (derived, members) = cli::render_with_members(&args).unwrap();
        Input { derived, members }
    }

    fn opts() -> XdsOptions {
        let wasm = WasmCode::File("/plugin.wasm".into());
        XdsOptions::new(
            &DeriveOptions::default(),
            "0.0.0.0:8080".parse().unwrap(),
            wasm,
        )
    }

    /// Move hz-b's first pod to another address (the same ready count, so the same plugin
    /// config).
    fn replace_pod(input: &mut Input) -> usize {
        let dump = cli::load_dir(&fleet().join("members/hz-b")).unwrap();
        let mut slice = dump.endpoint_slices[0].clone();
        slice.endpoints[0].addresses = vec!["10.2.9.99".into()];
        let at = input.members.iter().position(|m| m.id == "hz-b").unwrap();
        Arc::make_mut(&mut input.members[at].index).apply_slice(&slice);
        at
    }

    fn again(input: &Input) -> Input {
        Input {
            derived: input.derived.clone(),
            members: input.members.clone(),
        }
    }

    #[test]
    fn the_same_derivation_again_is_nothing_to_do() {
        let first = input("hz-b");
        assert_eq!(plan(None, &first), Plan::Full);
        let b = full(&first, &opts()).unwrap();
        assert_eq!(plan(Some(&b), &again(&first)), Plan::Nothing);
    }

    #[test]
    fn a_pod_replaced_rebuilds_only_that_services_endpoints_in_that_member() {
        let mut next = input("hz-b");
        let b = full(&next, &opts()).unwrap();
        let hz_b = replace_pod(&mut next);
        let shop = svc_hash(&("default".to_string(), "shop".to_string()));
        let want = Plan::Endpoints(vec![(hz_b, Some(HashSet::from([shop])))]);
        assert_eq!(plan(Some(&b), &next), want);
        let rebuilt = full(&next, &opts()).unwrap().snapshot;
        let (after, outcome) = step(Some(b), again(&next), &opts());
        assert!(matches!(outcome, Outcome::Updated(_, 1)), "{outcome:?}");
        assert_eq!(
            after.unwrap().snapshot,
            rebuilt,
            "as a full build would have it"
        );
    }

    #[test]
    fn a_plugin_config_change_is_a_full_build_and_an_invalid_one_keeps_the_last() {
        let b = full(&input("hz-b"), &opts()).unwrap();
        let scaled = input("hz-b-scaled-to-zero");
        assert_eq!(plan(Some(&b), &scaled), Plan::Full);
        let mut broken = opts();
        broken.upstream_template = "other|{cluster}".into();
        let kept = b.snapshot.clone();
        let (after, outcome) = step(Some(b), scaled, &broken);
        assert!(matches!(outcome, Outcome::Invalid(_)), "{outcome:?}");
        assert_eq!(after.unwrap().snapshot, kept);
    }
}
