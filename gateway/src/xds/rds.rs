//! Pure translation of the RDS route configuration fleetgate emits into the gateway's
//! [`RouteTable`]: one virtual host for every domain, prefix `/` routes told apart by a
//! `:method` matcher, `cluster_header` routing, a mirror by `cluster_header`, and retry
//! policies whose retries move to another member (`previous_priorities`).

use std::time::Duration;

use envoy_types::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier;
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, RetryPolicy as EnvoyRetry, Route, RouteAction, RouteConfiguration,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;

use super::translate::{duration_or, PREVIOUS_PRIORITIES};
use crate::retry::{is_idempotent, RetryPolicy};
use crate::routes::{RouteRule, RouteTable};

/// Envoy's route timeout when none is set.
const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

/// The route table of `rc`, or what in it the gateway cannot do.
pub fn route_table(rc: &RouteConfiguration) -> Result<RouteTable, String> {
    let fail = |why: String| format!("route configuration {:?}: {why}", rc.name);
    let [vhost] = rc.virtual_hosts.as_slice() else {
        return Err(fail(format!(
            "{} virtual hosts (exactly one is supported)",
            rc.virtual_hosts.len()
        )));
    };
    if !vhost.domains.iter().any(|d| d == "*") {
        return Err(fail(format!(
            "virtual host domains {:?} (only \"*\" is supported: the plugin routes by host)",
            vhost.domains
        )));
    }
    let mut headers: Option<(String, Option<String>)> = None;
    let mut rules = Vec::new();
    for route in &vhost.routes {
        let (rule, route_headers) =
            rule(route).map_err(|why| fail(format!("route {:?}: {why}", route.name)))?;
        if headers.as_ref().is_some_and(|h| *h != route_headers) {
            return Err(fail(
                "routes read different cluster or mirror headers".into(),
            ));
        }
        headers = Some(route_headers);
        rules.push(rule);
    }
    let (cluster_header, mirror_header) = headers.ok_or_else(|| fail("no routes".into()))?;
    Ok(RouteTable {
        cluster_header,
        mirror_header,
        rules,
    })
}

/// One route and the (cluster, mirror) headers it reads.
fn rule(route: &Route) -> Result<(RouteRule, (String, Option<String>)), String> {
    let m = route.r#match.as_ref().ok_or("no match")?;
    if !matches!(&m.path_specifier, Some(PathSpecifier::Prefix(p)) if p == "/") {
        return Err("only the path prefix \"/\" is supported (the plugin routes by path)".into());
    }
    let methods = match m.headers.as_slice() {
        [] => None,
        [h] => Some(method_matcher(h)?),
        _ => return Err("more than one header matcher".into()),
    };
    let Some(Action::Route(action)) = &route.action else {
        return Err("only route actions are supported (no redirect or direct response)".into());
    };
    let Some(ClusterSpecifier::ClusterHeader(cluster_header)) = &action.cluster_specifier else {
        return Err(
            "no cluster_header: the gateway routes only by the header the plugin sets".into(),
        );
    };
    let mirror = mirror_header(action)?;
    let retry = retry_policy(action, methods.as_deref())?;
    let rule = RouteRule {
        name: route.name.clone(),
        methods,
        retry,
    };
    Ok((rule, (cluster_header.to_ascii_lowercase(), mirror)))
}

/// A `:method` matcher: an exact method or a regex alternation of methods (`GET|HEAD`).
fn method_matcher(h: &HeaderMatcher) -> Result<Vec<String>, String> {
    let unsupported = || {
        format!(
            "header matcher on {:?} is not supported (only :method, exact or A|B|C)",
            h.name
        )
    };
    if h.name != ":method" || h.invert_match {
        return Err(unsupported());
    }
    let Some(HeaderMatchSpecifier::StringMatch(sm)) = &h.header_match_specifier else {
        return Err(unsupported());
    };
    let alternatives = match &sm.match_pattern {
        Some(MatchPattern::Exact(m)) => m.clone(),
        Some(MatchPattern::SafeRegex(r)) => r.regex.clone(),
        _ => return Err(unsupported()),
    };
    let methods: Vec<String> = alternatives.split('|').map(str::to_owned).collect();
    if methods
        .iter()
        .any(|m| m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return Err(unsupported());
    }
    Ok(methods)
}

/// The mirror: at most one policy, by `cluster_header`, always sampled.
fn mirror_header(action: &RouteAction) -> Result<Option<String>, String> {
    match action.request_mirror_policies.as_slice() {
        [] => Ok(None),
        [m] if !m.cluster_header.is_empty()
            && m.cluster.is_empty()
            && m.runtime_fraction.is_none() =>
        {
            Ok(Some(m.cluster_header.to_ascii_lowercase()))
        }
        _ => Err(
            "only one mirror policy by cluster_header, without runtime_fraction, is supported"
                .into(),
        ),
    }
}

/// The retry policy: `connect-failure` always, `reset` with `gateway-error` (502-504) for
/// idempotent methods, each retry on another member.
fn retry_policy(action: &RouteAction, methods: Option<&[String]>) -> Result<RetryPolicy, String> {
    let route_timeout = duration_or(action.timeout.as_ref(), DEFAULT_ROUTE_TIMEOUT);
    let Some(p) = &action.retry_policy else {
        return Ok(RetryPolicy {
            num_retries: 0,
            per_try_timeout: route_timeout,
            retry_idempotent_on_errors: false,
        });
    };
    let on = retry_on(p)?;
    if p.num_retries.as_ref().is_none_or(|n| n.value > 0)
        && p.retry_priority
            .as_ref()
            .is_none_or(|r| r.name != PREVIOUS_PRIORITIES)
    {
        return Err(format!(
            "retries need retry_priority {PREVIOUS_PRIORITIES} (each retry on another member)"
        ));
    }
    let idempotent_only = methods.is_some_and(|m| m.iter().all(|m| is_idempotent(m)));
    if on && !idempotent_only {
        return Err(
            "retries on reset and 5xx are only supported on a GET|HEAD|OPTIONS route".into(),
        );
    }
    Ok(RetryPolicy {
        num_retries: p.num_retries.as_ref().map_or(1, |n| n.value),
        per_try_timeout: duration_or(p.per_try_timeout.as_ref(), route_timeout),
        retry_idempotent_on_errors: on,
    })
}

/// Whether `retry_on` adds resets and gateway errors to connect failures.
fn retry_on(p: &EnvoyRetry) -> Result<bool, String> {
    let on: Vec<&str> = p.retry_on.split(',').map(str::trim).collect();
    let known = [
        "connect-failure",
        "refused-stream",
        "reset",
        "gateway-error",
        "retriable-status-codes",
    ];
    if let Some(other) = on.iter().find(|c| !known.contains(c)) {
        return Err(format!(
            "retry_on {other:?} is not supported (only {})",
            known.join(",")
        ));
    }
    if !on.contains(&"connect-failure") {
        return Err("retry_on without connect-failure is not supported".into());
    }
    let errors = on.contains(&"reset") && on.contains(&"gateway-error");
    let partial = on.contains(&"reset") || on.contains(&"gateway-error");
    let codes_ok = p
        .retriable_status_codes
        .iter()
        .all(|c| (502..=504).contains(c));
    if errors != partial || !codes_ok || (on.contains(&"retriable-status-codes") && !errors) {
        return Err(
            "retry_on must add both reset and gateway-error, with status codes only in 502-504"
                .into(),
        );
    }
    Ok(errors)
}
