//! fleetgate's data plane: a Proxy-Wasm HTTP filter that picks a member cluster per request.
//!
//! Everything but [`filter`] is plain Rust without hostcalls, compiled natively too: the
//! controller's `explain` runs the same engine, and it is unit-tested natively.
//!
//! - [`config`]: schema v1 (wire types) and validation into an indexed [`config::Config`],
//!   and the state document applied to its routes ([`config::StateV1`]);
//! - [`route`]: host/path/method/header matching with Ingress and Gateway API precedence;
//! - [`request`]: the request view, cookies and query parameters;
//! - [`split`]: weighted choice and Higress canary normalisation;
//! - [`health`]: passive health (ejection, probation, recovery) per upstream;
//! - [`failover`]: availability of backends now, failback hold-down and ramp;
//! - [`failback`]: failback timers carried across config changes and plugin instances;
//! - [`decide`]: the decision for one request;
//! - [`effects`]: what a decision does to the request and response, as data the filter applies;
//! - [`rewrite`], [`redirect`]: Gateway API path rewrites and redirect `Location`s.

pub mod config;
pub mod decide;
pub mod effects;
pub mod failback;
pub mod failover;
pub mod health;
pub mod redirect;
pub mod request;
pub mod rewrite;
pub mod route;
pub mod split;

#[cfg(target_arch = "wasm32")]
mod filter;
