//! The state document: what changes often (cluster states, ready endpoints per backend) apart
//! from the routes, which change rarely. It names the routes revision it was derived for and
//! lists the ready counts by position, route by route in config order and, within a route,
//! backend by backend in [`crate::config::Route::services`] order (base, canaries, fallback).
//! Positions keep it small and quick to apply (no names to look up at 10,000 routes); the
//! routes revision and the per-route counts make a document for other routes a clear error.
//! The counts are one string ([`Ready`]), which the VM reads ten times faster than arrays.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ready::Ready;
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
    /// Ready endpoints per route and backend ([`Ready`]: `"3,2,-;2,2"`).
    pub ready: Ready,
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
        // A route's backends are consecutive slots: where each route ends is all to check.
        let mut ends = vec![0; self.routes.len()];
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(e) = ends.get_mut(s.route as usize) {
                *e = i + 1;
            }
        }
        if let Some(i) = (0..ends.len()).find(|&i| ends[i] != ready.ends[i]) {
            let n = ends[i] - i.checked_sub(1).map_or(0, |p| ends[p]);
            let name = self.routes.get(i).map_or("", |r| r.name.as_str());
            return Err(ConfigError::new(
                format!("ready[{i}]"),
                format!(
                    "route \"{name}\" has {n} backends (base, canaries, fallback), the state gives {}",
                    ready.route(i).len()
                ),
            ));
        }
        for (s, &count) in next.backends.iter_mut().zip(&ready.values) {
            s.ready = count;
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
