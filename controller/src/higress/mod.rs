//! Higress wiring generated from the derived config (`--higress`).
//!
//! Higress routes generated from Ingresses point at one fixed cluster and only know Services in
//! the gateway's own cluster. So for every member x Service the plugin can choose, the gateway's
//! cluster needs a selector-less Service holding that member's endpoints, and a route matching
//! the plugin's header value for it. [`generate`] derives those objects, purely, from the same
//! [`Derived`] config the plugin gets; [`apply`] writes them with server-side apply and deletes
//! what an earlier generation wrote and this one no longer contains.
//!
//! Upstream naming is one setting: the upstream template renders the plugin's upstream names,
//! and the generated Services' names are *parsed back* from those names
//! ([`ClusterName::parse`]), so the two cannot disagree.

pub mod apply;
mod flags;
mod ingresses;
mod names;
mod objects;
mod services;

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use serde::Serialize;

use crate::derive::{Derived, MemberSnapshot};
pub use flags::HigressFlags;
pub use names::ClusterName;

/// The upstream template `--higress` uses unless one is set: Higress's cluster name of the
/// Service `<service>-<member>` in the source Service's namespace.
pub const HIGRESS_UPSTREAM_TEMPLATE: &str =
    "outbound|{port}||{service}-{cluster}.{namespace}.svc.cluster.local";
/// Owner label of every generated object (what garbage collection lists by).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "fleetgate-controller";
/// The fleet Ingress an object was generated for (`<namespace>.<name>`, or a hash if too long).
pub const SOURCE_LABEL: &str = "fleetgate.io/source-ingress";
/// Every fleet Ingress an object serves, `namespace/name` comma-separated.
pub const SOURCES_ANNOTATION: &str = "fleetgate.io/source-ingresses";
/// The member cluster whose endpoints a Service or EndpointSlice holds.
pub const MEMBER_LABEL: &str = "fleetgate.io/member";
/// `endpointslice.kubernetes.io/managed-by` of our slices (the EndpointSlice controller leaves
/// slices of other managers alone).
pub const SLICE_MANAGER: &str = "fleetgate.io/controller";

/// A Service port in the gateway's cluster that Envoy must have as a cluster although it may
/// be no route's backend (the controller's config endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortRef {
    pub namespace: String,
    pub name: String,
    pub port: u16,
}

/// Settings of the generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HigressOptions {
    /// IngressClass of the generated Ingresses (Higress's).
    pub ingress_class: String,
    /// The upstream template the config was derived with (checked by [`check_template`]).
    pub upstream_template: String,
    /// Namespaces the controller may write in (and garbage-collects); objects elsewhere are
    /// reported and not generated.
    pub namespaces: BTreeSet<String>,
    /// The controller's Service (`config_source.upstream`), kept in Envoy by a route-less-safe
    /// Ingress (Higress's `onlyPushRouteCluster`).
    pub controller_service: Option<ServicePortRef>,
}

impl Default for HigressOptions {
    fn default() -> Self {
        HigressOptions {
            ingress_class: "higress".to_string(),
            upstream_template: HIGRESS_UPSTREAM_TEMPLATE.to_string(),
            namespaces: BTreeSet::from(["default".to_string()]),
            controller_service: Some(ServicePortRef {
                namespace: "fleetgate-system".to_string(),
                name: "fleetgate-controller".to_string(),
                port: 8080,
            }),
        }
    }
}

/// One generated object (boxed: the objects differ in size and move around in vectors).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum HigressObject {
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    Ingress(Box<Ingress>),
}

impl HigressObject {
    pub fn kind(&self) -> &'static str {
        match self {
            HigressObject::Service(_) => "Service",
            HigressObject::EndpointSlice(_) => "EndpointSlice",
            HigressObject::Ingress(_) => "Ingress",
        }
    }

    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            HigressObject::Service(o) => &o.metadata,
            HigressObject::EndpointSlice(o) => &o.metadata,
            HigressObject::Ingress(o) => &o.metadata,
        }
    }

    pub fn namespace(&self) -> &str {
        self.meta().namespace.as_deref().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    /// `Kind namespace/name`.
    pub fn id(&self) -> String {
        format!("{} {}/{}", self.kind(), self.namespace(), self.name())
    }
}

/// The objects of one generation, and what could not be generated.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// Sorted: Services, EndpointSlices, Ingresses, each by namespace and name.
    pub objects: Vec<HigressObject>,
    pub problems: Vec<String>,
}

impl Generated {
    /// All objects as one multi-document YAML (golden files, `--dry-run` output).
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        let docs: Result<Vec<String>, _> = self.objects.iter().map(serde_yaml::to_string).collect();
        Ok(docs?.join("---\n"))
    }
}

/// Check that a template yields Higress cluster names of a per-member Service in the source
/// Service's namespace (otherwise generated Services and plugin upstreams would disagree).
pub fn check_template(template: &str) -> Result<(), String> {
    let name = |member: &str| {
        let s = crate::derive::render_template(template, 80, member, "svc", "ns");
        ClusterName::parse(&s).ok_or_else(|| {
            format!("upstream template {template:?} gives {s:?}, not a Higress Service cluster name outbound|<port>||<service>.<namespace>.svc.cluster.local")
        })
    };
    let (a, b) = (name("m1")?, name("m2")?);
    if a.namespace != "ns" || a.port != 80 {
        return Err(format!(
            "upstream template {template:?} must keep {{namespace}} and {{port}}"
        ));
    }
    if a.service == b.service {
        return Err(format!(
            "upstream template {template:?} gives every member the same Service: it must use {{cluster}}"
        ));
    }
    Ok(())
}

/// Generate the gateway-cluster objects for a derived config: per member x Service the
/// selector-less Service and its EndpointSlices, per route and upstream a header-matching
/// Ingress plus one plain catch-all Ingress per route, and keep-cluster Ingresses for the
/// controller's Service and mirror targets.
pub fn generate(derived: &Derived, members: &[MemberSnapshot], opts: &HigressOptions) -> Generated {
    let mut members: Vec<&MemberSnapshot> = members.iter().collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    members.dedup_by(|a, b| a.id == b.id);
    let mut problems = Vec::new();
    let plan = services::plan(derived, &members, opts, &mut problems);
    let mut objects = services::objects(&plan, &members, &mut problems);
    let known: BTreeSet<(String, String, u16)> = plan.ports().collect();
    objects.extend(ingresses::routes(derived, &known, opts, &mut problems));
    objects.extend(ingresses::keepers(derived, opts));
    objects::finish(objects, opts, &mut problems)
}
