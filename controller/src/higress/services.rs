//! Per member x Service: a selector-less Service in the gateway's cluster and EndpointSlices
//! holding the member's endpoints (ready, unready and terminating, with their conditions, so
//! Envoy drains as the member does).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::objects::meta;
use super::{ClusterName, HigressObject, HigressOptions, SLICE_MANAGER};
use crate::derive::{
    render_template, Contact, Derived, IngressKey, MemberSnapshot, OriginKind, PortRef, SvcRef,
    SERVICE_NAME_LABEL,
};
use crate::endpoints::{AddressType, EndpointView, SliceView, SvcKey};

/// The EndpointSlice API's limit of endpoints per slice.
const MAX_SLICE_ENDPOINTS: usize = 1000;

/// One Service to generate: a member's view of a source Service.
#[derive(Debug)]
pub(super) struct Planned {
    member: String,
    source: SvcKey,
    /// Generated port number (the one in the upstream name) -> how the Ingress named it.
    ports: BTreeMap<u16, PortRef>,
    ingresses: BTreeSet<IngressKey>,
}

/// Generated Services by (namespace, name).
#[derive(Debug, Default)]
pub(super) struct Plan(BTreeMap<(String, String), Planned>);

impl Plan {
    /// Every generated Service port as (namespace, name, port).
    pub fn ports(&self) -> impl Iterator<Item = (String, String, u16)> + '_ {
        self.0.iter().flat_map(|((ns, name), p)| {
            p.ports.keys().map(|port| (ns.clone(), name.clone(), *port))
        })
    }
}

/// Which Services to generate: every Service a route uses, for every member, named by parsing
/// the upstream name the template gives (so plugin and Services share one naming).
pub(super) fn plan(
    derived: &Derived,
    members: &[&MemberSnapshot],
    opts: &HigressOptions,
    problems: &mut Vec<String>,
) -> Plan {
    let mut plan = Plan::default();
    for origin in derived.origins().filter(|o| o.kind == OriginKind::Ingress) {
        for svc in &origin.services {
            let Some(port) = svc.port_number(members) else {
                continue;
            };
            for m in members {
                let t = &opts.upstream_template;
                let upstream = render_template(t, port, &m.id, &svc.name, &svc.namespace);
                match ClusterName::parse(&upstream) {
                    Some(c) if c.namespace == svc.namespace => {
                        add(&mut plan, c, m, svc, &origin.base, problems);
                    }
                    _ => problems.push(format!(
                        "upstream {upstream:?} of {svc} is not a Higress Service cluster name in namespace {:?}; no Service generated",
                        svc.namespace
                    )),
                }
            }
        }
    }
    plan
}

fn add(
    plan: &mut Plan,
    c: ClusterName,
    m: &MemberSnapshot,
    svc: &SvcRef,
    base: &IngressKey,
    problems: &mut Vec<String>,
) {
    let p = plan
        .0
        .entry((c.namespace, c.service.clone()))
        .or_insert_with(|| Planned {
            member: m.id.clone(),
            source: svc.key(),
            ports: BTreeMap::new(),
            ingresses: BTreeSet::new(),
        });
    if p.member != m.id || p.source != svc.key() {
        problems.push(format!(
            "Service {} would hold both {}/{} of member {} and {svc} of member {}; kept the first",
            c.service, p.source.0, p.source.1, p.member, m.id
        ));
        return;
    }
    p.ports.entry(c.port).or_insert_with(|| svc.port.clone());
    p.ingresses.insert(base.clone());
}

/// A port of a generated Service.
struct GenPort {
    /// Also the port name of the generated slices.
    name: String,
    port: u16,
    /// The member's Service port name, which selects the member slices' target port.
    member_name: Option<String>,
    target: Option<u16>,
}

fn gen_ports(p: &Planned, m: &MemberSnapshot) -> Vec<GenPort> {
    let entry = m.index.service(&p.source);
    let slices = entry.map(|e| e.slices.as_slice()).unwrap_or_default();
    p.ports
        .iter()
        .map(|(port, pref)| {
            let member_name = m
                .index
                .service_port(&p.source, pref)
                .map(|sp| sp.name.to_string());
            let target = member_name
                .as_deref()
                .and_then(|n| slices.iter().find_map(|(_, s)| s.target_port(n).flatten()));
            let name = match member_name.as_deref() {
                Some(n) if !n.is_empty() => n.to_string(),
                _ if p.ports.len() == 1 => String::new(),
                _ => format!("port-{port}"),
            };
            GenPort {
                name,
                port: *port,
                member_name,
                target,
            }
        })
        .collect()
}

/// The generated Services and their slices.
pub(super) fn objects(
    plan: &Plan,
    members: &[&MemberSnapshot],
    problems: &mut Vec<String>,
) -> Vec<HigressObject> {
    let mut out = Vec::new();
    for ((ns, name), p) in &plan.0 {
        let Some(m) = members.iter().find(|m| m.id == p.member) else {
            problems.push(format!("Service {ns}/{name}: member {} is gone", p.member));
            continue;
        };
        let ports = gen_ports(p, m);
        out.push(HigressObject::Service(Box::new(service(
            ns, name, p, &ports,
        ))));
        out.extend(
            slices(ns, name, p, m, &ports).map(|s| HigressObject::EndpointSlice(Box::new(s))),
        );
    }
    out
}

fn service(ns: &str, name: &str, p: &Planned, ports: &[GenPort]) -> Service {
    let ports = ports.iter().map(|gp| ServicePort {
        name: (!gp.name.is_empty()).then(|| gp.name.clone()),
        port: i32::from(gp.port),
        protocol: Some("TCP".to_string()),
        target_port: Some(IntOrString::Int(i32::from(gp.target.unwrap_or(gp.port)))),
        ..ServicePort::default()
    });
    Service {
        metadata: meta(ns, name, Some(&p.member), &p.ingresses),
        // No selector: the endpoints are the member's, written by us as EndpointSlices.
        spec: Some(ServiceSpec {
            ports: Some(ports.collect()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// A slice shape: address family and the (generated port name, target port) it carries.
type Shape = (AddressType, Vec<(String, u16)>);

/// The member's endpoints grouped by shape, each address once (first slice by name wins).
fn shapes(
    p: &Planned,
    m: &MemberSnapshot,
    ports: &[GenPort],
) -> BTreeMap<Shape, BTreeMap<String, EndpointView>> {
    let mut groups: BTreeMap<Shape, BTreeMap<String, EndpointView>> = BTreeMap::new();
    if m.contact == Contact::Never {
        return groups; // nothing known yet: no endpoints rather than wrong ones
    }
    let mut slices: Vec<&(Box<str>, SliceView)> = m
        .index
        .service(&p.source)
        .map(|e| e.slices.iter().collect())
        .unwrap_or_default();
    slices.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, s) in slices
        .into_iter()
        .filter(|(_, s)| s.address_type != AddressType::Fqdn)
    {
        let carried: Vec<(String, u16)> = ports
            .iter()
            .filter_map(|gp| {
                let t = s.target_port(gp.member_name.as_deref()?)??;
                Some((gp.name.clone(), t))
            })
            .collect();
        if carried.is_empty() {
            continue;
        }
        let group = groups.entry((s.address_type, carried)).or_default();
        for ep in s.endpoints.iter() {
            group
                .entry(ep.address.to_string())
                .or_insert_with(|| ep.clone());
        }
    }
    groups
}

fn slices<'a>(
    ns: &'a str,
    name: &'a str,
    p: &'a Planned,
    m: &MemberSnapshot,
    ports: &[GenPort],
) -> impl Iterator<Item = EndpointSlice> + 'a {
    let mut per_family: BTreeMap<AddressType, usize> = BTreeMap::new();
    let mut out = Vec::new();
    if let Some(gw) = m.gateway {
        out.push(gateway_slice(ns, name, p, m, ports, gw));
        return out.into_iter();
    }
    for ((family, carried), eps) in shapes(p, m, ports) {
        let eps: Vec<Endpoint> = eps.values().map(endpoint).collect();
        for chunk in eps.chunks(MAX_SLICE_ENDPOINTS) {
            let n = per_family.entry(family).or_default();
            *n += 1;
            let fam = family_name(family);
            let slice_name = match *n {
                1 => format!("{name}-{}", fam.to_lowercase()),
                n => format!("{name}-{}-{n}", fam.to_lowercase()),
            };
            out.push(slice(
                ns,
                name,
                &slice_name,
                p,
                fam,
                &carried,
                chunk.to_vec(),
            ));
        }
    }
    out.into_iter()
}

/// A member behind its own gateway (networks that are not flat): one endpoint, the gateway,
/// on every port, ready while any of the member's endpoints is; none when none is.
fn gateway_slice(
    ns: &str,
    name: &str,
    p: &Planned,
    m: &MemberSnapshot,
    ports: &[GenPort],
    gw: std::net::SocketAddr,
) -> EndpointSlice {
    let ready = shapes(p, m, ports)
        .values()
        .flat_map(|eps| eps.values())
        .any(|ep| ep.ready);
    let family = if gw.is_ipv4() { "IPv4" } else { "IPv6" };
    let carried: Vec<(String, u16)> = ports
        .iter()
        .map(|gp| (gp.name.clone(), gw.port()))
        .collect();
    let endpoint = Endpoint {
        addresses: vec![gw.ip().to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(true),
            serving: Some(true),
            terminating: Some(false),
        }),
        zone: m.zone.clone(),
        ..Endpoint::default()
    };
    let endpoints = if ready { vec![endpoint] } else { Vec::new() };
    let slice_name = format!("{name}-gateway");
    slice(ns, name, &slice_name, p, family, &carried, endpoints)
}

fn family_name(f: AddressType) -> &'static str {
    match f {
        AddressType::IPv4 => "IPv4",
        AddressType::IPv6 => "IPv6",
        AddressType::Fqdn => "FQDN",
    }
}

fn endpoint(ep: &EndpointView) -> Endpoint {
    Endpoint {
        addresses: vec![ep.address.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ep.ready),
            serving: Some(ep.serving),
            terminating: Some(ep.terminating),
        }),
        zone: ep.zone.as_deref().map(str::to_string),
        ..Endpoint::default()
    }
}

fn slice(
    ns: &str,
    service: &str,
    name: &str,
    p: &Planned,
    family: &str,
    carried: &[(String, u16)],
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let mut metadata = meta(ns, name, Some(&p.member), &p.ingresses);
    let labels = metadata.labels.get_or_insert_with(Default::default);
    labels.insert(SERVICE_NAME_LABEL.to_string(), service.to_string());
    labels.insert(
        "endpointslice.kubernetes.io/managed-by".to_string(),
        SLICE_MANAGER.to_string(),
    );
    let ports = carried.iter().map(|(port_name, target)| EndpointPort {
        name: Some(port_name.clone()),
        port: Some(i32::from(*target)),
        protocol: Some("TCP".to_string()),
        ..EndpointPort::default()
    });
    EndpointSlice {
        metadata,
        address_type: family.to_string(),
        endpoints,
        ports: Some(ports.collect()),
    }
}
