//! An HTTP context: decide on the request headers, explain on the response headers, report
//! the outcome to passive health on log.

use std::cell::RefCell;
use std::rc::Rc;

use crate::config::Config;
use crate::decide::{self, Local, Target};
use crate::effects::{self, RequestEffects};
use crate::health::{self, Transition};
use crate::request::RequestView;

use super::abi::{CONTINUE, PAUSE};
use super::host::Map;
use super::{host, Vm};

/// The request as the host gave it: header pairs borrowed from the one answer buffer.
struct HostRequest<'a> {
    pairs: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> HostRequest<'a> {
    fn new(pairs: Vec<(&'a [u8], &'a [u8])>) -> Self {
        HostRequest { pairs }
    }
}

impl RequestView for HostRequest<'_> {
    fn authority(&self) -> &str {
        self.header(":authority").unwrap_or("")
    }
    fn path(&self) -> &str {
        self.header(":path").unwrap_or("")
    }
    /// First value; a value that is not UTF-8 is present but matches nothing the config can
    /// name, so it reads as U+FFFD.
    fn header(&self, name: &str) -> Option<&str> {
        let (_, v) = self.pairs.iter().find(|(k, _)| *k == name.as_bytes())?;
        Some(std::str::from_utf8(v).unwrap_or("\u{fffd}"))
    }
}

/// What a request was routed to, kept for the response and the passive-health report.
struct Routed {
    cfg: Rc<Config>,
    route: usize,
    target: Target,
}

pub(super) struct Http {
    vm: Rc<RefCell<Vm>>,
    routed: Option<Routed>,
}

impl Http {
    pub(super) fn new(vm: Rc<RefCell<Vm>>) -> Self {
        Http { vm, routed: None }
    }

    /// The decision for this request; the `proxy_action_t` to answer.
    fn decide(&mut self) -> u32 {
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            return CONTINUE;
        };
        let Some(cfg) = vm.config.clone() else {
            return CONTINUE;
        };
        // One hostcall for every header the decision may need, looked up in place.
        let raw = host::request_headers();
        let req = HostRequest::new(host::header_pairs(&raw));
        let sent: Vec<&str> = [&cfg.cluster_header, &cfg.mirror_header]
            .into_iter()
            .map(String::as_str)
            .filter(|h| req.header(h).is_some())
            .collect();
        let Some(m) = cfg.table.lookup(&req) else {
            return apply(effects::on_request(&cfg, None, &req, &sent));
        };
        let ri = m.route;
        let Vm {
            health,
            rng,
            metrics,
            ..
        } = &mut *vm;
        // A redirect or direct route needs no health nor time: no hostcalls for them.
        let route = &cfg.routes[ri];
        let now = match route.answers_locally() {
            true => 0,
            false => health.load(&cfg, route),
        };
        let health = &*health;
        let Some(d) = decide::select_in_route(&cfg, m, &req, |u| health.cached(u), now, rng) else {
            return CONTINUE;
        };
        let action = apply(effects::on_request(&cfg, Some(&d), &req, &sent));
        let Some(t) = d.target else {
            metrics.inc(match d.local {
                Some(Local::Redirect) => "fleetgate_redirects_total",
                Some(Local::Direct(_)) => "fleetgate_direct_responses_total",
                None => "fleetgate_unavailable_total",
            });
            return action;
        };
        if d.mirror.is_some() {
            metrics.inc("fleetgate_mirrored_total");
        }
        let cluster_id = cfg.clusters.get(t.cluster).map_or("", |c| c.id.as_str());
        metrics.inc_request(t.cluster, cluster_id, t.reason);
        if effects::is_failover(t.reason) {
            metrics.inc("fleetgate_failovers_total");
        }
        self.routed = Some(Routed {
            cfg: cfg.clone(),
            route: ri,
            target: t,
        });
        action
    }
}

/// Apply request effects; the action to answer (pause only behind a local reply the host took,
/// else the stream would hang).
fn apply(fx: RequestEffects) -> u32 {
    edit(
        Map::Request,
        &fx.set_headers,
        &fx.add_headers,
        &fx.remove_headers,
    );
    if fx.clear_route_cache {
        host::clear_route_cache();
    }
    match fx.local_reply {
        Some(r) => {
            let headers: Vec<(&str, &str)> = r
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            if host::send_local_response(r.status, &headers, &r.body) {
                PAUSE
            } else {
                CONTINUE
            }
        }
        None => CONTINUE,
    }
}

/// Header changes to one map, in effect order: set, add, remove.
fn edit(map: Map, set: &[(String, String)], add: &[(String, String)], remove: &[String]) {
    for (k, v) in set {
        host::set_header(map, k, v);
    }
    for (k, v) in add {
        host::add_header(map, k, v);
    }
    for k in remove {
        host::remove_header(map, k);
    }
}

/// The callbacks [`abi`] routes to an HTTP context.
impl Http {
    pub(super) fn flush_host_errors(&self) {
        if let Ok(mut vm) = self.vm.try_borrow_mut() {
            vm.metrics.flush_host_errors();
        }
    }

    pub(super) fn on_request_headers(&mut self) -> u32 {
        self.decide()
    }

    pub(super) fn on_response_headers(&mut self) -> u32 {
        if let Some(r) = &self.routed {
            let fx = effects::on_response(&r.cfg, r.route, &r.target);
            edit(
                Map::Response,
                &fx.set_headers,
                &fx.add_headers,
                &fx.remove_headers,
            );
        }
        CONTINUE
    }

    pub(super) fn on_log(&mut self) {
        let Some(r) = self.routed.take() else { return };
        if !r.cfg.passive.enabled {
            return;
        }
        let (upstream_id, cluster) = (r.target.upstream, r.target.cluster);
        let upstream = r.cfg.upstream_name(upstream_id);
        let code = host::int_property(&[&["response", "code"]]);
        let flags = host::int_property(&[&["response", "flags"]]);
        if code.is_none() && flags.is_none() {
            return;
        }
        // A retried request (to another cluster through an aggregate cluster) means the first
        // attempt, on the cluster we chose, failed; asked only if the response looks fine.
        let failed = health::is_failure(code, flags, r.cfg.passive.count_5xx)
            || host::int_property(&[&["upstream", "request_attempt_count"]]).is_some_and(|n| n > 1);
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            return;
        };
        if !failed && vm.health.known_healthy(upstream_id) {
            return;
        }
        // If Envoy sent the request somewhere else (a route without our cluster header), the
        // outcome says nothing about our upstream. Asked only off the fast path: hostcalls cost.
        if let Some(used) = host::string_property(&[&["xds", "cluster_name"], &["cluster_name"]]) {
            if used != upstream {
                return;
            }
        }
        let now = host::now_ms();
        let t = vm
            .health
            .observe(&r.cfg, upstream_id, failed, now, &r.cfg.passive);
        let cluster_id = r.cfg.clusters.get(cluster).map_or("", |c| c.id.as_str());
        match t {
            Transition::Ejected { for_ms } => {
                host::log(
                    host::LOG_WARN,
                    &format!(
                        "fleetgate: ejected upstream {upstream} (cluster {cluster_id}) for {} ms after consecutive failures",
                        for_ms
                    ),
                );
                vm.metrics
                    .inc(&format!("fleetgate_ejections_total.cluster.{cluster_id}"));
            }
            Transition::Recovered => {
                host::log(
                    host::LOG_INFO,
                    &format!("fleetgate: upstream {upstream} (cluster {cluster_id}) recovered"),
                );
                vm.metrics
                    .inc(&format!("fleetgate_recoveries_total.cluster.{cluster_id}"));
            }
            Transition::None | Transition::Updated => {}
        }
    }
}
