//! A whole local fleet: member clusters, the control plane serving xDS and the long-poll
//! endpoint, and the local gateway as an ADS client of it: the gateway is given only the ADS
//! address and a node id, and learns its listener, routes, clusters (an aggregate per member
//! over the members' EDS clusters), endpoints and plugin from the controller.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use fleetgate_controller::derive::Contact;
use fleetgate_local_gateway::{GatewayLog, XdsGateway, XdsGatewayConfig};
use fleetgate_wasm_tests::Module;

use crate::control::{ControlPlane, PluginConfigPath};
use crate::load::{self, LoadSpec};
use crate::member::{Member, Mode};

/// The aggregate cluster the plugin names for `member` (the controller's default template).
pub fn upstream_name(member: &str) -> String {
    format!("outbound|80|{member}|shop.default.svc.cluster.local")
}

/// The EDS cluster of `member`'s endpoints.
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
    /// Passive health (first ejection, ramp) seconds; `None` = the plugin's defaults.
    pub passive_health: Option<(u32, u32)>,
    /// Service time of a member replica.
    pub service_delay: Duration,
    pub workers: usize,
    /// The filter's `.wasm` file (ECDS names it): the plugin, or the noop filter.
    pub wasm: PathBuf,
    /// Whether the plugin pulls the derived config from the long-poll endpoint (ECDS then
    /// carries a bootstrap config with `config_source`) instead of getting it by ECDS.
    pub pull_config: bool,
    pub poll_ms: u32,
    pub log_sink: Option<std_mpsc::Sender<GatewayLog>>,
    /// Bearer token the long-poll endpoint requires and the plugin sends.
    pub token: Option<String>,
}

/// The path of a module loaded from a file (its name).
pub fn wasm_path(module: &Module) -> PathBuf {
    PathBuf::from(module.name())
}

impl FleetSpec {
    /// `members` with 3 replicas each, active-active, the plugin by ECDS, 2 workers.
    pub fn new(members: &[&str]) -> Self {
        FleetSpec {
            members: members.iter().map(|m| ((*m).to_owned(), 3)).collect(),
            scenario: "active-active".to_owned(),
            failback: None,
            passive_health: None,
            service_delay: Duration::from_millis(2),
            workers: 2,
            wasm: wasm_path(&Module::plugin_wasip1()),
            pull_config: false,
            poll_ms: 100,
            log_sink: None,
            token: None,
        }
    }
}

/// A running fleet.
pub struct Fleet {
    pub members: BTreeMap<String, Member>,
    pub control: ControlPlane,
    pub gateway: XdsGateway,
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
        let endpoints: Vec<(&str, Vec<SocketAddr>)> = members
            .values()
            .map(|m: &Member| (m.id(), m.addrs()))
            .collect();
        let mut control = ControlPlane::new(&spec.scenario, &endpoints, spec.failback, &spec.wasm)?;
        if let Some((ejection, ramp)) = spec.passive_health {
            control = control.with_passive_health(ejection, ramp);
        }
        if let Some(token) = &spec.token {
            control = control.with_token(token);
        }
        if spec.pull_config {
            control = control.with_config_path(PluginConfigPath::LongPoll {
                poll_ms: spec.poll_ms,
            });
        }
        let ads = control.serve().await?;
        let mut config = XdsGatewayConfig::new(ads, "local-fleet-gateway");
        config.workers = spec.workers;
        config.log_sink = spec.log_sink;
        let gateway = tokio::task::spawn_blocking(move || XdsGateway::start(config)).await??;
        let fleet = Fleet {
            members,
            control,
            gateway,
        };
        // By ECDS the workers start with the config; a pulling plugin must fetch it first.
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
    /// (the controller pushes the emptied EDS cluster and the plugin's config), then the replicas stop after
    /// `drain`.
    pub async fn scale_to_zero(&self, id: &str, drain: Duration) -> anyhow::Result<()> {
        let member = self.member(id)?;
        self.control.set_ready(id, 0)?;
        tokio::time::sleep(drain).await;
        member.kill();
        Ok(())
    }

    /// Scales `id` back to all its replicas: they start, then join the EndpointSlices.
    pub fn scale_up(&self, id: &str) -> anyhow::Result<()> {
        let member = self.member(id)?;
        member.revive()?;
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

    /// A member outage the controller notices: `id`'s processes die, and `notice` later its
    /// EndpointSlices list no ready endpoint (its API server is still up).
    pub async fn lose(&self, id: &str, notice: Duration) -> anyhow::Result<()> {
        self.kill(id)?;
        tokio::time::sleep(notice).await;
        self.control.set_ready(id, 0)?;
        Ok(())
    }

    /// `id`'s API server becomes unreachable (`reachable = false`: the controller's watch has
    /// failed past its grace period, so it marks the member `unknown` and keeps its last
    /// endpoints) or reachable again. The member's processes are not touched.
    pub fn set_api_reachable(&self, id: &str, reachable: bool) -> anyhow::Result<()> {
        self.member(id)?;
        let contact = if reachable {
            Contact::Live
        } else {
            Contact::Lost
        };
        self.control.set_contact(id, contact)?;
        Ok(())
    }

    /// Switches how `id`'s replicas answer (slow, half broken, normal).
    pub fn set_mode(&self, id: &str, mode: Mode) -> anyhow::Result<()> {
        self.member(id)?.set_mode(mode);
        Ok(())
    }
}
