//! What every generated object shares: owner metadata, and the final checks (namespace allowed,
//! valid and unique name) that drop a bad object without touching the others.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::names::{is_object_name, is_service_name, label_value};
use super::{
    Generated, HigressObject, HigressOptions, MANAGED_BY, MANAGED_BY_LABEL, MEMBER_LABEL,
    SOURCES_ANNOTATION, SOURCE_LABEL,
};
use crate::derive::IngressKey;

/// Metadata of a generated object: owner labels, the member (if any) and the fleet Ingresses
/// it serves (the first, in order, as a label; all as an annotation).
pub(super) fn meta(
    namespace: &str,
    name: &str,
    member: Option<&str>,
    sources: &BTreeSet<IngressKey>,
) -> ObjectMeta {
    let mut labels = BTreeMap::from([(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string())]);
    if let Some(m) = member {
        labels.insert(MEMBER_LABEL.to_string(), label_value(m));
    }
    let mut annotations = BTreeMap::new();
    if let Some(first) = sources.first() {
        let value = label_value(&format!("{}.{}", first.namespace, first.name));
        labels.insert(SOURCE_LABEL.to_string(), value);
        let all: Vec<String> = sources.iter().map(ToString::to_string).collect();
        annotations.insert(SOURCES_ANNOTATION.to_string(), all.join(","));
    }
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        ..ObjectMeta::default()
    }
}

/// Why an object cannot be written, if it cannot.
fn refusal(o: &HigressObject, opts: &HigressOptions) -> Option<String> {
    if !opts.namespaces.contains(o.namespace()) {
        return Some(format!(
            "{}: namespace {:?} is not one the controller may write in (--higress-namespaces)",
            o.id(),
            o.namespace()
        ));
    }
    let valid = match o {
        HigressObject::Service(_) => is_service_name(o.name()),
        _ => is_object_name(o.name()),
    };
    (!valid).then(|| format!("{}: not a valid {} name", o.id(), o.kind()))
}

/// Drop refused and duplicate objects (each reported), sort the rest, dedup problems.
pub(super) fn finish(
    objects: Vec<HigressObject>,
    opts: &HigressOptions,
    problems: &mut Vec<String>,
) -> Generated {
    let mut seen = BTreeSet::new();
    let mut kept = Vec::with_capacity(objects.len());
    for o in objects {
        if let Some(why) = refusal(&o, opts) {
            problems.push(why);
        } else if !seen.insert(o.id()) {
            problems.push(format!("{}: generated twice; the first is kept", o.id()));
        } else {
            kept.push(o);
        }
    }
    let rank = |o: &HigressObject| match o {
        HigressObject::Service(_) => 0,
        HigressObject::EndpointSlice(_) => 1,
        HigressObject::Ingress(_) => 2,
    };
    kept.sort_by(|a, b| {
        (rank(a), a.namespace(), a.name()).cmp(&(rank(b), b.namespace(), b.name()))
    });
    let mut problems: Vec<String> = std::mem::take(problems);
    problems.sort();
    problems.dedup();
    Generated {
        objects: kept,
        problems,
    }
}
