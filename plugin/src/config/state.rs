//! The state document: what changes often (cluster states, ready endpoints per backend) apart
//! from the routes, which change rarely. It names the routes revision it was derived for and
//! lists the ready counts by position, route by route in config order and, within a route,
//! backend by backend in [`crate::config::Route::services`] order (base, canaries, fallback).
//! Positions keep it small and quick to apply (no names to look up at 10,000 routes); the
//! routes revision and the per-route counts make a document for other routes a clear error.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::validate::Config;
use super::wire::ClusterState;
use super::ConfigError;

/// The state document, schema v1 (see CONFIG.md, "The state document").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateV1 {
    /// Must be 1.
    pub version: u32,
    /// This state's own revision (the ETag of `/v1/state`).
    pub revision: String,
    /// The routes revision it applies to (the ETag of the routes pull).
    pub routes_revision: String,
    /// Every member cluster of the routes, by id.
    pub clusters: BTreeMap<String, ClusterState>,
    /// Ready endpoints per route and backend; `null` = not counted.
    pub ready: Ready,
}

/// `[[3,2,1],[2,null]]` read into one flat list, so a document of 10,000 routes costs two
/// allocations, not one per route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    values: Vec<Option<u32>>,
    /// Where each route's counts end in `values`.
    ends: Vec<usize>,
}

impl Ready {
    /// From per-route lists (the controller builds it this way).
    pub fn from_routes<I, R>(routes: I) -> Ready
    where
        I: IntoIterator<Item = R>,
        R: IntoIterator<Item = Option<u32>>,
    {
        let mut r = Ready::default();
        for route in routes {
            r.values.extend(route);
            r.ends.push(r.values.len());
        }
        r
    }

    pub fn routes(&self) -> usize {
        self.ends.len()
    }

    /// The counts of route `i`.
    pub fn route(&self, i: usize) -> &[Option<u32>] {
        let start = i.checked_sub(1).map_or(0, |p| self.ends[p]);
        self.values.get(start..self.ends[i]).unwrap_or(&[])
    }
}

impl Serialize for Ready {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((0..self.routes()).map(|i| self.route(i)))
    }
}

impl<'de> Deserialize<'de> for Ready {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ready, D::Error> {
        d.deserialize_seq(ReadyVisitor)
    }
}

struct ReadyVisitor;

impl<'de> Visitor<'de> for ReadyVisitor {
    type Value = Ready;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of ready counts per route")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ready, A::Error> {
        let mut r = Ready::default();
        while seq.next_element_seed(RouteCounts(&mut r.values))?.is_some() {
            if r.ends.len() == super::MAX_ROUTES {
                return Err(de::Error::custom(format!(
                    "more than {} routes",
                    super::MAX_ROUTES
                )));
            }
            r.ends.push(r.values.len());
        }
        Ok(r)
    }
}

/// One route's counts, appended to the flat list.
struct RouteCounts<'a>(&'a mut Vec<Option<u32>>);

impl<'de> de::DeserializeSeed<'de> for RouteCounts<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RouteCounts<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of ready counts (or null) per backend")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<Option<u32>>()? {
            self.0.push(v);
        }
        Ok(())
    }
}

/// Parse a state document (shape only; [`Config::with_state`] checks it against the routes).
pub fn parse_state(json: &[u8]) -> Result<StateV1, ConfigError> {
    super::parse_json(json)
}

impl Config {
    /// This config with `s` as its state: the routes are shared, not rebuilt. A document for
    /// other routes (another routes revision, an unknown or missing cluster, a route or backend
    /// count that differs) is an error naming what differs; `self` is untouched either way.
    /// Failback timers are not set here ([`crate::failback::carry_state`] does).
    pub fn with_state(&self, s: &StateV1) -> Result<Config, ConfigError> {
        if s.version != 1 {
            return Err(ConfigError::new(
                "version",
                format!(
                    "unsupported state version {} (this plugin reads version 1)",
                    s.version
                ),
            ));
        }
        if self.routes_revision.as_deref() != Some(s.routes_revision.as_str()) {
            let runs = self.routes_revision.as_deref().unwrap_or("none yet");
            return Err(ConfigError::new(
                "routes_revision",
                format!(
                    "the state is for routes revision \"{}\", this plugin runs routes revision \"{runs}\"",
                    s.routes_revision
                ),
            ));
        }
        let mut next = self.clone();
        next.state_revision = Some(s.revision.clone());
        self.set_clusters(&mut next, s)?;
        self.set_ready(&mut next, &s.ready)?;
        Ok(next)
    }

    fn set_clusters(&self, next: &mut Config, s: &StateV1) -> Result<(), ConfigError> {
        if let Some(id) = s
            .clusters
            .keys()
            .find(|id| self.cluster_index(id).is_none())
        {
            return Err(ConfigError::new(
                format!("clusters.{id}"),
                format!("unknown cluster \"{id}\" (not in the routes' clusters)"),
            ));
        }
        for c in &mut next.clusters {
            c.state = *s.clusters.get(&c.id).ok_or_else(|| {
                ConfigError::new("clusters", format!("cluster \"{}\" is missing", c.id))
            })?;
        }
        Ok(())
    }

    fn set_ready(&self, next: &mut Config, ready: &Ready) -> Result<(), ConfigError> {
        if ready.routes() != self.routes.len() {
            return Err(ConfigError::new(
                "ready",
                format!(
                    "{} routes, the routes revision has {}",
                    ready.routes(),
                    self.routes.len()
                ),
            ));
        }
        for (i, r) in self.routes.iter().enumerate() {
            let counts = ready.route(i);
            let n = r.backends().count();
            if counts.len() != n {
                return Err(ConfigError::new(
                    format!("ready[{i}]"),
                    format!(
                        "route \"{}\" has {n} backends (base, canaries, fallback), the state gives {}",
                        r.name,
                        counts.len()
                    ),
                ));
            }
            for (b, &count) in r.backends().zip(counts) {
                if let Some(slot) = next.backends.get_mut(b.slot) {
                    slot.ready = count;
                }
            }
        }
        Ok(())
    }

    /// The state of this config as a document (the controller serves it; tests build them).
    pub fn state(&self, revision: &str) -> StateV1 {
        StateV1 {
            version: 1,
            revision: revision.to_string(),
            routes_revision: self.routes_revision.clone().unwrap_or_default(),
            clusters: self
                .clusters
                .iter()
                .map(|c| (c.id.clone(), c.state))
                .collect(),
            ready: Ready::from_routes(
                self.routes
                    .iter()
                    .map(|r| r.backends().map(|b| self.ready(b))),
            ),
        }
    }
}
