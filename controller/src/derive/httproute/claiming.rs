//! The claims pass over the HTTPRoutes, done only from the first route whose claims differ
//! from the last pass's: what a route may claim depends only on what the Ingress routes and
//! the routes before it claim, so up to that point every route keeps the hosts it kept.

use std::sync::Arc;

use foldhash::HashSet;

use super::BuiltBase;

/// What the last pass met: the Ingress routes, then per HTTPRoute in precedence order a hash
/// of its key and claims (empty when a route came twice: its hosts are not one per place).
#[derive(Default)]
pub(super) struct Sequence {
    ingress: Vec<Arc<BuiltBase>>,
    routes: Vec<u64>,
}

/// A claims pass in progress.
pub(super) struct Pass<'a> {
    last: &'a Sequence,
    ingress: &'a [Arc<BuiltBase>],
    next: Vec<u64>,
    /// The Ingress routes are not the last pass's.
    moved: bool,
    /// Some route came twice.
    twice: bool,
    /// What the Ingress routes and the routes met so far claim, once the pass differs from
    /// the last one (`None` before).
    pub claimed: Option<HashSet<String>>,
}

impl<'a> Pass<'a> {
    pub fn new(last: &'a Sequence, ingress: &'a [Arc<BuiltBase>]) -> Self {
        let same = last.ingress.len() == ingress.len()
            && (last.ingress.iter().zip(ingress)).all(|(a, b)| Arc::ptr_eq(a, b));
        Pass {
            last,
            ingress,
            next: Vec::new(),
            moved: !same,
            twice: false,
            claimed: None,
        }
    }

    /// The next route claims `claims` (a hash of its key and claims; `again`: it came before
    /// in this pass). Until it differs from the last pass, nothing is claimed anew; from
    /// then on `earlier` (the claims of the routes met so far) is what is already claimed.
    pub fn next<'e>(&mut self, claims: u64, again: bool, earlier: impl Iterator<Item = &'e str>) {
        let at = self.next.len();
        self.next.push(claims);
        self.twice |= again;
        // A route met again while the pass is still the same was met twice in the last pass
        // too, which then left no sequence: `again` needs no test here.
        let same = !self.moved && self.last.routes.get(at) == Some(&claims);
        if self.claimed.is_none() && !same {
            let mut claimed = ingress_claims(self.ingress);
            claimed.extend(earlier.map(str::to_string));
            self.claimed = Some(claimed);
        }
    }

    /// What the next pass compares with.
    pub fn finish(self) -> Sequence {
        Sequence {
            ingress: self.ingress.to_vec(),
            routes: if self.twice { Vec::new() } else { self.next },
        }
    }
}

fn ingress_claims(ingress: &[Arc<BuiltBase>]) -> HashSet<String> {
    (ingress.iter().flat_map(|b| &b.routes))
        .flat_map(|r| r.claims.iter().cloned())
        .collect()
}
