//! fleetgate controller: watches Ingresses in the fleet (hub) cluster and EndpointSlices in each
//! member cluster, and derives the fleetgate plugin's JSON config (schema v1).
//!
//! - [`annotations`]: Higress/MSE/nginx compatibility and `fleetgate.io/*` annotations;
//! - [`derive`]: `(Ingresses, members) -> ConfigV1`, pure, with memory so a change costs what
//!   it touches (incremental) and an invalid edit keeps its last good version;
//! - [`endpoints`]: a member's Services and EndpointSlices reduced to what routing needs, ports
//!   resolved as Kubernetes resolves them;
//! - [`settings`]: plugin-wide settings from flags and the IngressClass parameters ConfigMap;
//! - [`members`]: member clusters (Argo CD cluster Secrets, members file) and their clients;
//! - [`watch`]: kube-runtime watchers feeding the [`store`];
//! - [`health`]: member control-plane contact (live / unknown after a grace period);
//! - [`handoff`]: the long-poll config endpoint, the file and the Higress WasmPlugin;
//! - [`higress`]: `--higress`: the per-member Services, EndpointSlices and Ingresses Higress needs;
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`;
//! - [`leader`]: Lease-based leader election;
//! - [`run`]: the `run` command wiring it all;
//! - [`cli`]: the offline `render` and `explain` commands.

pub mod admin;
pub mod annotations;
pub mod cli;
pub mod derive;
pub mod endpoints;
pub mod gateway_api;
pub mod handoff;
pub mod hashing;
pub mod health;
pub mod higress;
pub mod leader;
pub mod members;
pub mod run;
pub mod serve;
pub mod settings;
pub mod store;
pub mod watch;
pub mod xds;
