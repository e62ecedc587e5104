//! Writing a generation: server-side apply of every object (field manager
//! `fleetgate-controller`), then garbage collection: objects with our owner label that the
//! generation no longer contains are deleted (routes first, Services last, so no route points
//! at a deleted Service).
//!
//! Every namespace is checked before the first write: a missing namespace fails the whole
//! apply with nothing written. After that an object the API refuses is reported and the others
//! are still written.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

use super::{generate, HigressObject, HigressOptions, MANAGED_BY, MANAGED_BY_LABEL};
use crate::derive::{Derived, MemberSnapshot};
use crate::handoff::FIELD_MANAGER;

/// Why nothing was written.
#[derive(Debug, Error)]
pub enum ApplyError {
    #[error("namespace {0:?} does not exist in the gateway's cluster: nothing of the Higress wiring was applied (create it, or drop it from --higress-namespaces)")]
    MissingNamespace(String),
    #[error(
        "cannot read namespace {namespace:?}: {source}; nothing of the Higress wiring was applied"
    )]
    Namespace {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("the API refused {0} Higress wiring object(s) or list(s); the others were applied")]
    Refused(usize),
}

/// What one apply did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub applied: usize,
    /// `Kind namespace/name` of deleted objects.
    pub deleted: Vec<String>,
    /// Objects (or lists) the API refused, with its reason.
    pub failed: Vec<String>,
}

/// Apply `objects` and delete our objects in `namespaces` that are not among them.
pub async fn apply(
    client: Client,
    objects: &[HigressObject],
    namespaces: &BTreeSet<String>,
) -> Result<ApplyReport, ApplyError> {
    check_namespaces(&client, namespaces).await?;
    let mut report = ApplyReport::default();
    for o in objects {
        let result = match o {
            HigressObject::Service(s) => apply_one(&client, &**s).await,
            HigressObject::EndpointSlice(s) => apply_one(&client, &**s).await,
            HigressObject::Ingress(i) => apply_one(&client, &**i).await,
        };
        match result {
            Ok(()) => report.applied += 1,
            Err(e) => report.failed.push(format!("apply {}: {e}", o.id())),
        }
    }
    let keep: BTreeSet<String> = objects.iter().map(HigressObject::id).collect();
    for ns in namespaces {
        collect::<Ingress>(&client, ns, "Ingress", &keep, &mut report).await;
        collect::<EndpointSlice>(&client, ns, "EndpointSlice", &keep, &mut report).await;
        collect::<Service>(&client, ns, "Service", &keep, &mut report).await;
    }
    Ok(report)
}

async fn check_namespaces(
    client: &Client,
    namespaces: &BTreeSet<String>,
) -> Result<(), ApplyError> {
    let api: Api<Namespace> = Api::all(client.clone());
    for ns in namespaces {
        match api.get_opt(ns).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(ApplyError::MissingNamespace(ns.clone())),
            Err(source) => {
                return Err(ApplyError::Namespace {
                    namespace: ns.clone(),
                    source,
                })
            }
        }
    }
    Ok(())
}

async fn apply_one<K>(client: &Client, o: &K) -> Result<(), kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), o.namespace().as_deref().unwrap_or_default());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&o.name_any(), &pp, &Patch::Apply(o)).await?;
    Ok(())
}

/// Delete the objects of one kind in `ns` that carry our owner label and are not kept.
async fn collect<K>(
    client: &Client,
    ns: &str,
    kind: &str,
    keep: &BTreeSet<String>,
    report: &mut ApplyReport,
) where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let list = match api.list_metadata(&lp).await {
        Ok(l) => l,
        Err(e) => {
            report.failed.push(format!("list {kind} in {ns}: {e}"));
            return;
        }
    };
    for item in list.items {
        let name = item.metadata.name.unwrap_or_default();
        let id = format!("{kind} {ns}/{name}");
        if keep.contains(&id) {
            continue;
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => report.deleted.push(id),
            // Already gone is what we wanted.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => report.failed.push(format!("delete {id}: {e}")),
        }
    }
}

/// How long an applied generation is trusted: after that the next derivation writes it again,
/// repairing objects someone edited or deleted.
const RESYNC: std::time::Duration = std::time::Duration::from_secs(600);

/// Generate and apply on every derivation, writing only when the objects changed (or when
/// asked, e.g. on becoming leader, or after [`RESYNC`]); a generation that failed in part is
/// retried next time.
#[derive(Debug)]
pub struct Publisher {
    opts: HigressOptions,
    last: Option<(Vec<HigressObject>, std::time::Instant)>,
}

impl Publisher {
    pub fn new(opts: HigressOptions) -> Self {
        Publisher { opts, last: None }
    }

    fn is_current(&self, objects: &[HigressObject]) -> bool {
        self.last
            .as_ref()
            .is_some_and(|(o, at)| o == objects && at.elapsed() < RESYNC)
    }

    pub async fn step(
        &mut self,
        client: Client,
        derived: &Derived,
        members: &[MemberSnapshot],
        force: bool,
    ) -> Result<(), ApplyError> {
        let generated = generate(derived, members, &self.opts);
        if !force && self.is_current(&generated.objects) {
            return Ok(());
        }
        for p in &generated.problems {
            tracing::warn!("higress: {p}");
        }
        self.last = None;
        let report = apply(client, &generated.objects, &self.opts.namespaces).await?;
        for f in &report.failed {
            tracing::warn!("higress: {f}");
        }
        tracing::info!(
            applied = report.applied,
            deleted = report.deleted.len(),
            "Higress wiring applied"
        );
        if !report.failed.is_empty() {
            return Err(ApplyError::Refused(report.failed.len()));
        }
        self.last = Some((generated.objects, std::time::Instant::now()));
        Ok(())
    }
}
