//! Who serves which host and path: base Ingresses claim their (host, path, pathType), oldest
//! first (ingress-nginx: the newer Ingress loses only the clashing path), and canary Ingresses
//! pair with the base entry of the same key (Higress). A canary whose base is rejected is
//! reported orphaned, with the base's reason.

use std::collections::HashMap;
use std::sync::Arc;

use super::ingress::{Accepted, Entry, Parsed, RuleKey};
use super::{IngressKey, Problem, Severity};
use crate::annotations::IngressAnnotations;

/// A canary entry paired with a base path.
pub(crate) struct CanaryPlan<'a> {
    /// Index of the canary in the accepted Ingresses.
    pub at: usize,
    pub accepted: &'a Arc<Accepted>,
    /// Index of `entry` in the canary's entries.
    pub index: usize,
    pub ingress: &'a IngressKey,
    pub annos: &'a IngressAnnotations,
    pub entry: &'a Entry,
}

/// One path a base Ingress serves, with its canaries (oldest first).
pub(crate) struct PathPlan<'a> {
    /// Index of `entry` in the base's entries.
    pub index: usize,
    pub entry: &'a Entry,
    pub canaries: Vec<CanaryPlan<'a>>,
}

/// A base Ingress and the paths it won.
pub(crate) struct BasePlan<'a> {
    /// Index of the base in the accepted Ingresses.
    pub at: usize,
    pub accepted: &'a Arc<Accepted>,
    pub ingress: &'a IngressKey,
    pub annos: &'a IngressAnnotations,
    pub paths: Vec<PathPlan<'a>>,
}

/// Resolve claims and pairings; `accepted` is oldest first.
pub(crate) fn plan<'a>(
    accepted: &'a [Arc<Accepted>],
    problems: &mut Vec<Problem>,
) -> Vec<BasePlan<'a>> {
    let mut bases: Vec<BasePlan<'a>> = Vec::new();
    let mut owner: HashMap<RuleKey, (usize, usize)> = HashMap::new();
    let mut rejected: HashMap<RuleKey, &'a Parsed> = HashMap::new();
    for (at, acc) in accepted.iter().enumerate() {
        let p = &acc.parsed;
        let Some(annos) = &p.annos else {
            for e in &p.entries {
                rejected.entry(e.rule_key()).or_insert(p);
            }
            continue;
        };
        if annos.canary.is_some() {
            continue;
        }
        let bi = bases.len();
        let mut paths = Vec::new();
        for (index, e) in p.entries.iter().enumerate() {
            match owner.get(&e.rule_key()) {
                Some((b, _)) if *b == bi => problems.push(Problem::new(
                    &p.key,
                    Severity::Warning,
                    format!("{} appears twice; the first is served", e.describe()),
                )),
                Some((b, _)) => problems.push(Problem::new(
                    &p.key,
                    Severity::Warning,
                    format!(
                        "{} is already routed by the older Ingress {}; this path is not served",
                        e.describe(),
                        bases[*b].ingress
                    ),
                )),
                None => {
                    owner.insert(e.rule_key(), (bi, paths.len()));
                    paths.push(PathPlan {
                        index,
                        entry: e,
                        canaries: Vec::new(),
                    });
                }
            }
        }
        bases.push(BasePlan {
            at,
            accepted: acc,
            ingress: &p.key,
            annos,
            paths,
        });
    }
    for (at, acc) in accepted.iter().enumerate() {
        let p = &acc.parsed;
        let Some(annos) = p.annos.as_ref().filter(|a| a.canary.is_some()) else {
            continue;
        };
        for (index, e) in p.entries.iter().enumerate() {
            let rk = e.rule_key();
            if let Some(&(b, i)) = owner.get(&rk) {
                bases[b].paths[i].canaries.push(CanaryPlan {
                    at,
                    accepted: acc,
                    index,
                    ingress: &p.key,
                    annos,
                    entry: e,
                });
                continue;
            }
            let message = match rejected.get(&rk).filter(|r| r.key != p.key) {
                Some(base) => format!(
                    "orphaned: the base Ingress {} of {} is rejected ({}); canary not served",
                    base.key,
                    e.describe(),
                    base.rejected.as_deref().unwrap_or("invalid")
                ),
                None => format!("canary {} has no base Ingress; ignored", e.describe()),
            };
            problems.push(Problem::new(&p.key, Severity::Warning, message));
        }
    }
    bases
}

/// A base's plan kept between derivations, as indexes into the accepted Ingresses: (base,
/// per path (entry, per canary (canary, entry))).
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    at: usize,
    paths: Vec<(usize, Vec<(usize, usize)>)>,
}

impl BasePlan<'_> {
    pub fn keep(&self) -> Kept {
        let path = |p: &PathPlan<'_>| {
            (
                p.index,
                p.canaries.iter().map(|c| (c.at, c.index)).collect(),
            )
        };
        Kept {
            at: self.at,
            paths: self.paths.iter().map(path).collect(),
        }
    }
}

/// The plan `k` was kept from, over the same accepted Ingresses.
pub(crate) fn restore<'a>(k: &Kept, accepted: &'a [Arc<Accepted>]) -> Option<BasePlan<'a>> {
    let acc = accepted.get(k.at)?;
    let mut paths = Vec::with_capacity(k.paths.len());
    for (index, canaries) in &k.paths {
        let mut cs = Vec::with_capacity(canaries.len());
        for &(at, ci) in canaries {
            let c = accepted.get(at)?;
            cs.push(CanaryPlan {
                at,
                accepted: c,
                index: ci,
                ingress: &c.parsed.key,
                annos: c.parsed.annos.as_ref()?,
                entry: c.parsed.entries.get(ci)?,
            });
        }
        paths.push(PathPlan {
            index: *index,
            entry: acc.parsed.entries.get(*index)?,
            canaries: cs,
        });
    }
    Some(BasePlan {
        at: k.at,
        accepted: acc,
        ingress: &acc.parsed.key,
        annos: acc.parsed.annos.as_ref()?,
        paths,
    })
}
