//! One Ingress of our class -> its (host, path, Service port) entries and annotations, with
//! every error kept at its smallest unit: an annotation error concerns the whole Ingress, a bad
//! path or backend only that path.

use std::collections::BTreeMap;

use fleetgate_plugin::config::PathKind;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use super::{Ctx, DeriveOptions, IngressKey, PortRef, Problem, Severity, SvcRef};
use crate::annotations::{self, IngressAnnotations};

/// Legacy class annotation.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// One (host, path) of an Ingress and the Service port it sends to.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub host: Option<String>,
    pub kind: PathKind,
    pub path: String,
    pub svc: SvcRef,
}

/// (host, path kind rank, path): the key Ingress rules claim and canaries pair on.
pub(crate) type RuleKey = (Option<String>, u8, String);

impl Entry {
    pub fn rule_key(&self) -> RuleKey {
        let rank = match self.kind {
            PathKind::Exact => 0,
            PathKind::Prefix => 1,
            PathKind::Regex => 2,
        };
        (self.host.clone(), rank, self.path.clone())
    }

    /// `host "shop.example.com" path "/" (Prefix)` for messages.
    pub fn describe(&self) -> String {
        format!(
            "host {:?} path {:?} ({:?})",
            self.host.as_deref().unwrap_or("*"),
            self.path,
            self.kind
        )
    }
}

/// An Ingress as the later stages use it.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub key: IngressKey,
    /// `None` when the Ingress is rejected (its entries are kept only to name the paths its
    /// canaries would have paired with).
    pub annos: Option<IngressAnnotations>,
    pub entries: Vec<Entry>,
    /// Why it is rejected.
    pub rejected: Option<String>,
}

/// One version of an Ingress as derive uses it, read once and remembered while the object is
/// unchanged.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    pub parsed: Parsed,
    /// What using this version as it is reports.
    pub problems: Vec<Problem>,
    /// Nothing wrong with this version (it may become the last good one).
    pub clean: bool,
    /// What is wrong with it, for the message when its last good version is served instead.
    pub errors: Vec<String>,
    pub generation: Option<i64>,
}

/// The outcome of reading one version of an Ingress.
#[derive(Debug, Clone)]
pub(crate) struct Parse {
    pub parsed: Parsed,
    pub generation: Option<i64>,
    annotation_error: Option<String>,
    path_errors: Vec<String>,
    unsupported: Vec<String>,
}

impl Parse {
    /// Nothing wrong with this version.
    pub fn is_clean(&self) -> bool {
        self.annotation_error.is_none()
            && self.path_errors.is_empty()
            && !self.parsed.entries.is_empty()
    }

    pub fn errors(&self) -> Vec<String> {
        let mut e: Vec<String> = self.annotation_error.iter().cloned().collect();
        e.extend(self.path_errors.iter().cloned());
        if e.is_empty() && self.parsed.entries.is_empty() {
            e.push(NO_PATHS.to_string());
        }
        e
    }

    /// Settle what this version means for derive.
    pub fn into_accepted(self) -> Accepted {
        let (clean, errors, generation) = (self.is_clean(), self.errors(), self.generation);
        let mut problems = Vec::new();
        let parsed = self.accept(&mut problems);
        Accepted {
            parsed,
            problems,
            clean,
            errors,
            generation,
        }
    }

    /// Use this version as it is: report its problems, reject it if it is unusable.
    fn accept(mut self, problems: &mut Vec<Problem>) -> Parsed {
        let key = self.parsed.key.clone();
        if !self.unsupported.is_empty() {
            problems.push(Problem::new(
                &key,
                Severity::Warning,
                format!(
                    "annotations not supported by fleetgate, ignored: {}",
                    self.unsupported.join(", ")
                ),
            ));
        }
        let reject = match (&self.annotation_error, self.parsed.entries.is_empty()) {
            (Some(e), _) => Some(e.clone()),
            (None, true) if self.path_errors.is_empty() => Some(NO_PATHS.to_string()),
            _ => None,
        };
        if let Some(why) = reject {
            problems.push(Problem::new(&key, Severity::Rejected, why.clone()));
            self.parsed.annos = None;
            self.parsed.rejected = Some(why);
        } else {
            for e in &self.path_errors {
                problems.push(Problem::new(
                    &key,
                    Severity::Warning,
                    format!("{e}; path not served"),
                ));
            }
        }
        self.parsed
    }
}

const NO_PATHS: &str = "Ingress has no rules with paths and no default backend";

/// Is this Ingress ours?
pub fn is_ours(ing: &Ingress, opts: &DeriveOptions) -> bool {
    let class = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| {
            ing.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
                .map(String::as_str)
        });
    match class {
        Some(c) => c == opts.ingress_class,
        None => opts.class_is_default,
    }
}

pub(crate) fn key_of(ing: &Ingress) -> IngressKey {
    IngressKey {
        namespace: ing
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        name: ing.metadata.name.clone().unwrap_or_default(),
    }
}

/// Read one version of an Ingress of our class.
pub(crate) fn parse(ing: &Ingress, ctx: &Ctx<'_>) -> Parse {
    let key = key_of(ing);
    let empty = BTreeMap::new();
    let map = ing.metadata.annotations.as_ref().unwrap_or(&empty);
    let annos = annotations::parse(&key.namespace, map).map_err(|e| e.to_string());
    let annotation_error = match &annos {
        Ok(a) => members_known(a, ctx)
            .and_then(|()| match a.canary {
                Some(_) => Ok(()),
                None => super::routes::policy(a, ctx).map(|_| ()),
            })
            .err(),
        Err(e) => Some(e.clone()),
    };
    let (entries, path_errors) = entries(ing, &key.namespace);
    Parse {
        parsed: Parsed {
            key,
            annos: annos.ok(),
            entries,
            rejected: None,
        },
        generation: ing.metadata.generation,
        annotation_error,
        path_errors,
        unsupported: annotations::unsupported(map),
    }
}

/// Annotations that name clusters must name members.
fn members_known(a: &IngressAnnotations, ctx: &Ctx<'_>) -> Result<(), String> {
    let named = a
        .cluster_weights
        .iter()
        .flatten()
        .map(|(c, _)| ("fleetgate.io/cluster-weights", c))
        .chain(
            a.cluster_order
                .iter()
                .flatten()
                .map(|c| ("fleetgate.io/cluster-order", c)),
        )
        .chain(a.cluster.iter().map(|c| ("fleetgate.io/cluster", c)));
    for (what, id) in named {
        if !ctx.member_ids.contains(id.as_str()) {
            return Err(format!(
                "{what} names cluster {id:?}, which is not a member"
            ));
        }
    }
    Ok(())
}

/// Every (host, path) with its backend; a path that cannot be used is an error of its own.
fn entries(ing: &Ingress, namespace: &str) -> (Vec<Entry>, Vec<String>) {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let Some(spec) = ing.spec.as_ref() else {
        return (entries, vec!["Ingress has no spec".to_string()]);
    };
    if let Some(db) = &spec.default_backend {
        match svc_ref(db, namespace) {
            Ok(svc) => entries.push(Entry {
                host: None,
                kind: PathKind::Prefix,
                path: "/".to_string(),
                svc,
            }),
            Err(m) => errors.push(format!("spec.defaultBackend: {m}")),
        }
    }
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        let host = rule
            .host
            .as_ref()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty());
        let Some(http) = &rule.http else { continue };
        for (j, p) in http.paths.iter().enumerate() {
            let at = format!("spec.rules[{i}].http.paths[{j}]");
            match path_entry(p, host.clone(), namespace) {
                Ok(e) => entries.push(e),
                Err(m) => errors.push(format!("{at}{m}")),
            }
        }
    }
    (entries, errors)
}

fn path_entry(
    p: &k8s_openapi::api::networking::v1::HTTPIngressPath,
    host: Option<String>,
    namespace: &str,
) -> Result<Entry, String> {
    let kind = match p.path_type.as_str() {
        "Exact" => PathKind::Exact,
        "Prefix" | "ImplementationSpecific" => PathKind::Prefix,
        other => return Err(format!(".pathType {other:?} is not supported")),
    };
    let path = p.path.clone().unwrap_or_else(|| "/".to_string());
    if !path.starts_with('/') {
        return Err(format!(".path {path:?} must start with '/'"));
    }
    let svc = svc_ref(&p.backend, namespace).map_err(|m| format!(".backend: {m}"))?;
    Ok(Entry {
        host,
        kind,
        path,
        svc,
    })
}

fn svc_ref(b: &IngressBackend, namespace: &str) -> Result<SvcRef, String> {
    let Some(s) = &b.service else {
        return Err("only service backends are supported (not resource)".to_string());
    };
    let port = match &s.port {
        Some(p) => match (&p.number, &p.name) {
            (Some(n), _) => PortRef::Number(
                u16::try_from(*n)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("port {n} is out of range"))?,
            ),
            (None, Some(name)) if !name.is_empty() => PortRef::Name(name.clone()),
            _ => return Err("service port has neither number nor name".to_string()),
        },
        None => return Err("service has no port".to_string()),
    };
    Ok(SvcRef {
        namespace: namespace.to_string(),
        name: s.name.clone(),
        port,
    })
}
