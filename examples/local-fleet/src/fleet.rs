//! A whole local fleet: member clusters, the control plane serving its config, and the local
//! gateway with the plugin pulling that config, wired as the Envoy example is (an aggregate
//! cluster per preferred member over the members' direct clusters).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use fleetgate_local_gateway::{Gateway, GatewayConfig, GatewayLog, RetryPolicy, Upstreams};
use fleetgate_wasm_tests::Module;

use crate::control::ControlPlane;
use crate::load::{self, LoadSpec};
use crate::member::Member;

/// The Envoy cluster name of the controller (the plugin's `config_source.upstream`).
pub const CONTROLLER_UPSTREAM: &str = "fleetgate-controller";

/// The aggregate cluster the plugin names for `member` (the controller's default template).
pub fn upstream_name(member: &str) -> String {
    format!("outbound|80|{member}|shop.default.svc.cluster.local")
}

/// The plain cluster of `member`'s endpoints.
pub fn direct_name(member: &str) -> String {
    format!("direct|80|{member}|shop.default.svc.cluster.local")
}

/// How to build a fleet.
pub struct FleetSpec {
    /// Member ids and replicas each.
    pub members: Vec<(String, usize)>,
    /// Scenario directory under `examples/fleet` (`active-active`, `active-standby`, ...).
    pub scenario: String,
    /// Failback (hold, ramp) seconds through annotations; `None` = the fixture's.
    pub failback: Option<(u32, u32)>,
    /// Service time of a member replica.
    pub service_delay: Duration,
    pub workers: usize,
    /// The filter (the plugin, or the noop filter for comparisons).
    pub module: Module,
    /// Whether the gateway has the config pull (`false`: static config, for the noop filter).
    pub pull_config: bool,
    pub poll_ms: u32,
    pub retry: RetryPolicy,
    pub log_sink: Option<std_mpsc::Sender<GatewayLog>>,
    /// Bearer token the controller requires and the plugin sends.
    pub token: Option<String>,
}

impl FleetSpec {
    /// `members` with 3 replicas each, active-active, the plugin, 2 workers.
    pub fn new(members: &[&str]) -> Self {
        FleetSpec {
            members: members.iter().map(|m| ((*m).to_owned(), 3)).collect(),
            scenario: "active-active".to_owned(),
            failback: None,
            service_delay: Duration::from_millis(2),
            workers: 2,
            module: Module::plugin_wasip1(),
            pull_config: true,
            poll_ms: 100,
            retry: RetryPolicy::default(),
            log_sink: None,
            token: None,
        }
    }
}

/// A running fleet.
pub struct Fleet {
    pub members: BTreeMap<String, Member>,
    pub control: ControlPlane,
    pub upstreams: Upstreams,
    pub gateway: Gateway,
}

/// The plugin's static configuration: no routes, members listed, pull from the controller.
pub fn static_config(members: &[&str], poll_ms: u32, token: Option<&str>) -> String {
    let clusters: Vec<serde_json::Value> = members
        .iter()
        .map(|m| serde_json::json!({"id": m}))
        .collect();
    let mut source = serde_json::json!({
        "upstream": CONTROLLER_UPSTREAM,
        "poll_ms": poll_ms,
        "wait_seconds": 20,
    });
    if let Some(token) = token {
        source["token"] = serde_json::json!(token);
    }
    serde_json::json!({
        "version": 1,
        "clusters": clusters,
        "routes": [],
        "config_source": source,
    })
    .to_string()
}

impl Fleet {
    /// Starts members, control plane and gateway; returns once the plugin routes with the
    /// controller's config (or fails after 10 s).
    pub async fn start(spec: FleetSpec) -> anyhow::Result<Fleet> {
        let mut members = BTreeMap::new();
        for (id, replicas) in &spec.members {
            members.insert(
                id.clone(),
                Member::start(id, *replicas, spec.service_delay).await?,
            );
        }
        let ready: Vec<(&str, u32)> = spec
            .members
            .iter()
            .map(|(id, n)| (id.as_str(), u32::try_from(*n).unwrap_or(u32::MAX)))
            .collect();
        let mut control = ControlPlane::new(&spec.scenario, &ready, spec.failback)?;
        if let Some(token) = &spec.token {
            control = control.with_token(token);
        }
        let control_addr = control.serve().await?;

        let upstreams = Upstreams::new();
        upstreams.set_cluster(CONTROLLER_UPSTREAM, vec![control_addr]);
        let ids: Vec<&str> = spec.members.iter().map(|(id, _)| id.as_str()).collect();
        for member in members.values() {
            upstreams.set_cluster(&direct_name(member.id()), member.addrs());
        }
        for id in &ids {
            // [this member, the others in order], as the example's aggregate clusters.
            let mut order: Vec<String> = vec![direct_name(id)];
            order.extend(ids.iter().filter(|o| *o != id).map(|o| direct_name(o)));
            let order: Vec<&str> = order.iter().map(String::as_str).collect();
            upstreams.set_aggregate(&upstream_name(id), &order);
        }
        let plugin_config = if spec.pull_config {
            static_config(&ids, spec.poll_ms, spec.token.as_deref())
        } else {
            control
                .config_json()
                .ok_or_else(|| anyhow!("no config derived"))?
        };
        let mut config = GatewayConfig::new(spec.module, plugin_config, upstreams.clone());
        config.workers = spec.workers;
        config.retry = spec.retry;
        config.log_sink = spec.log_sink;
        let gateway = tokio::task::spawn_blocking(move || Gateway::start(config)).await??;
        let fleet = Fleet {
            members,
            control,
            upstreams,
            gateway,
        };
        if spec.pull_config {
            fleet.wait_routed(Duration::from_secs(10)).await?;
            // The probe may have met only the worker that pulled; the others adopt the config
            // from shared data on their next tick (one poll period).
            tokio::time::sleep(Duration::from_millis(2 * u64::from(spec.poll_ms) + 50)).await;
        }
        Ok(fleet)
    }

    /// The gateway's address.
    pub fn addr(&self) -> SocketAddr {
        self.gateway.addr()
    }

    /// Waits until a GET is routed by the plugin (decision header present) on every worker.
    pub async fn wait_routed(&self, within: Duration) -> anyhow::Result<()> {
        let client = load::client();
        let spec = LoadSpec::get(1, Duration::ZERO);
        let deadline = Instant::now() + within;
        let mut streak = 0;
        while streak < 8 {
            if Instant::now() > deadline {
                bail!("the plugin did not pick up the controller's config within {within:?}");
            }
            let sample = load::send_one(&client, self.addr(), &spec, Instant::now()).await;
            if sample.ok() && sample.decided.is_some() {
                streak += 1;
            } else {
                streak = 0;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    fn member(&self, id: &str) -> anyhow::Result<&Member> {
        self.members
            .get(id)
            .ok_or_else(|| anyhow!("no member {id}"))
    }

    /// Scales `id` to zero the way Kubernetes does: its endpoints leave the EndpointSlices
    /// (the gateway's EDS and the controller see it at once), then the replicas stop after
    /// `drain`.
    pub async fn scale_to_zero(&self, id: &str, drain: Duration) -> anyhow::Result<()> {
        let member = self.member(id)?;
        self.upstreams.set_cluster(&direct_name(id), Vec::new());
        self.control.set_ready(id, 0)?;
        tokio::time::sleep(drain).await;
        member.kill();
        Ok(())
    }

    /// Scales `id` back to all its replicas: they start, then join the EndpointSlices.
    pub fn scale_up(&self, id: &str) -> anyhow::Result<()> {
        let member = self.member(id)?;
        member.revive()?;
        self.upstreams.set_cluster(&direct_name(id), member.addrs());
        self.control
            .set_ready(id, u32::try_from(member.running()).unwrap_or(u32::MAX))?;
        Ok(())
    }

    /// Kills `id`'s processes outright; no control-plane change (its API server went with it,
    /// so the controller keeps its last view).
    pub fn kill(&self, id: &str) -> anyhow::Result<()> {
        self.member(id)?.kill();
        Ok(())
    }

    /// Restarts `id`'s processes on their old endpoints.
    pub fn revive(&self, id: &str) -> anyhow::Result<()> {
        self.member(id)?.revive()
    }
}
