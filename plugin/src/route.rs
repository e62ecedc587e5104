//! Host and path matching with Ingress semantics, indexed so a lookup costs a few hash probes
//! whatever the number of routes.
//!
//! Precedence: an exact host beats a `*.` wildcard host, which beats a rule with no host; the
//! first host group with a matching path wins. Within a group an `Exact` path beats any prefix,
//! and the longest `Prefix` wins. `Prefix` matches element-wise: `/foo` matches `/foo`, `/foo/`
//! and `/foo/bar`, not `/foobar`; a trailing slash in the prefix is ignored.

use rustc_hash::FxHashMap as HashMap;

use crate::config::wire::{PathKind, PathV1, RouteV1};
use crate::config::ConfigError;

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    exact_hosts: HashMap<String, PathTable>,
    /// Keyed by the suffix after `*.` (`*.example.com` -> `example.com`).
    wildcard_hosts: HashMap<String, PathTable>,
    any_host: PathTable,
}

#[derive(Debug, Clone, Default)]
struct PathTable {
    exact: HashMap<String, usize>,
    /// Keyed by the prefix without its trailing slash (`/` -> ``).
    prefix: HashMap<String, usize>,
}

impl PathTable {
    fn insert(&mut self, kind: PathKind, path: &str, route: usize) -> Option<usize> {
        match kind {
            PathKind::Exact => self.exact.insert(path.to_string(), route),
            PathKind::Prefix => self
                .prefix
                .insert(path.trim_end_matches('/').to_string(), route),
            // Refused by validation before a table is built.
            PathKind::Regex => None,
        }
    }

    fn lookup(&self, path: &str) -> Option<usize> {
        if let Some(&r) = self.exact.get(path) {
            return Some(r);
        }
        if self.prefix.is_empty() {
            return None;
        }
        // Walk the element boundaries from the longest candidate down to the root.
        let mut candidate = path.trim_end_matches('/');
        loop {
            if let Some(&r) = self.prefix.get(candidate) {
                return Some(r);
            }
            match candidate.rfind('/') {
                Some(i) => candidate = &candidate[..i],
                None => return None,
            }
        }
    }
}

impl RouteTable {
    /// Index the routes; a (host, path type, path) claimed by two routes is an error.
    pub fn build(routes: &[RouteV1]) -> Result<RouteTable, ConfigError> {
        let mut t = RouteTable::default();
        let root = [PathV1 {
            kind: PathKind::Prefix,
            path: "/".to_string(),
        }];
        for (i, r) in routes.iter().enumerate() {
            let paths: &[PathV1] = if r.paths.is_empty() { &root } else { &r.paths };
            for (j, p) in paths.iter().enumerate() {
                if !p.path.starts_with('/') {
                    return Err(ConfigError::new(
                        format!("routes[{i}].paths[{j}].path"),
                        format!("\"{}\" must start with '/'", p.path),
                    ));
                }
            }
            let any = [String::new()];
            let hosts: &[String] = if r.hosts.is_empty() { &any } else { &r.hosts };
            for (h, host) in hosts.iter().enumerate() {
                let group = if host.is_empty() {
                    &mut t.any_host
                } else {
                    let host = check_host(host).map_err(|reason| {
                        ConfigError::new(format!("routes[{i}].hosts[{h}]"), reason)
                    })?;
                    match host.strip_prefix("*.") {
                        Some(suffix) => t.wildcard_hosts.entry(suffix.to_string()).or_default(),
                        None => t.exact_hosts.entry(host).or_default(),
                    }
                };
                for (j, p) in paths.iter().enumerate() {
                    if let Some(prev) = group.insert(p.kind, &p.path, i) {
                        return Err(ConfigError::new(
                            format!("routes[{i}].paths[{j}]"),
                            format!(
                                "host \"{}\" path \"{}\" ({}) is already routed by routes[{prev}] (\"{}\")",
                                host,
                                p.path,
                                match p.kind {
                                    PathKind::Exact => "Exact",
                                    PathKind::Prefix => "Prefix",
                                    PathKind::Regex => "Regex",
                                },
                                routes[prev].name
                            ),
                        ));
                    }
                }
            }
        }
        Ok(t)
    }

    /// The route for a request's `:authority` and `:path` (query and port are ignored).
    pub fn lookup(&self, authority: &str, path: &str) -> Option<usize> {
        let host = strip_port(authority);
        let host = host.strip_suffix('.').unwrap_or(host);
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        let path = path.split(['?', '#']).next().unwrap_or("");
        let path = if path.is_empty() { "/" } else { path };

        if let Some(r) = self.exact_hosts.get(host).and_then(|t| t.lookup(path)) {
            return Some(r);
        }
        // A wildcard covers exactly one label: `*.example.com` matches `a.example.com` only.
        if let Some((first, suffix)) = host.split_once('.') {
            if !first.is_empty() {
                if let Some(r) = self.wildcard_hosts.get(suffix).and_then(|t| t.lookup(path)) {
                    return Some(r);
                }
            }
        }
        self.any_host.lookup(path)
    }
}

fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        // IPv6 literal: [::1]:8080
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

/// The host lower-cased, or why it is not a host name.
fn check_host(host: &str) -> Result<String, String> {
    let bare = host.strip_prefix("*.").unwrap_or(host);
    let ok = !bare.is_empty()
        && bare.len() <= 253
        && !bare.contains('*')
        && bare
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
    if !ok {
        return Err(format!("\"{host}\" is not a host name or a `*.` wildcard"));
    }
    Ok(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::wire::*;

    fn route(name: &str, hosts: &[&str], paths: &[(PathKind, &str)]) -> RouteV1 {
        RouteV1 {
            name: name.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            paths: paths
                .iter()
                .map(|(k, p)| PathV1 {
                    kind: *k,
                    path: p.to_string(),
                })
                .collect(),
            mode: Mode::ActiveActive,
            order: vec![],
            min_healthy: 1,
            failback: FailbackV1::default(),
            backends: vec![],
            pins: vec![],
            route_by_header: None,
            canaries: vec![],
            canary_weight_total: None,
            fallback: None,
            mirror: None,
            sticky: None,
            when_unavailable: WhenUnavailable::Reject,
            wildcard: Wildcard::Label,
            method: None,
            when: vec![],
            request_headers: None,
            response_headers: None,
            rewrite: None,
            redirect: None,
            direct: None,
        }
    }

    fn table() -> RouteTable {
        use PathKind::*;
        RouteTable::build(&[
            route("root", &["shop.example.com"], &[(Prefix, "/")]),
            route("api", &["shop.example.com"], &[(Prefix, "/api/")]),
            route("api-v2", &["shop.example.com"], &[(Prefix, "/api/v2")]),
            route("exact", &["shop.example.com"], &[(Exact, "/api/v2")]),
            route("wild", &["*.example.com"], &[(Prefix, "/")]),
            route("any", &[], &[(Prefix, "/static")]),
        ])
        .expect("valid table")
    }

    #[test]
    fn ingress_precedence_is_most_specific_host_then_longest_path() {
        let t = table();
        let cases = [
            ("shop.example.com", "/", Some(0)),
            ("shop.example.com", "/apix", Some(0)),
            ("shop.example.com", "/api", Some(1)),
            ("shop.example.com", "/api/", Some(1)),
            ("shop.example.com", "/api/v1/x", Some(1)),
            ("shop.example.com", "/api/v2", Some(3)),
            ("shop.example.com", "/api/v2/", Some(2)),
            ("shop.example.com", "/api/v2/items?x=1", Some(2)),
            ("SHOP.example.com:8443", "/api", Some(1)),
            ("a.example.com", "/x", Some(4)),
            ("a.b.example.com", "/static/x", Some(5)),
            ("example.com", "/x", None),
            ("other.org", "/static", Some(5)),
            ("other.org", "/staticx", None),
            ("", "", None),
        ];
        for (host, path, want) in cases {
            assert_eq!(t.lookup(host, path), want, "{host} {path}");
        }
    }

    #[test]
    fn duplicate_host_and_path_is_rejected_with_both_routes_named() {
        use PathKind::*;
        let err = RouteTable::build(&[
            route("a", &["x.io"], &[(Prefix, "/p")]),
            route("b", &["x.io"], &[(Prefix, "/p/")]),
        ])
        .unwrap_err();
        assert_eq!(err.path, "routes[1].paths[0]");
        assert!(err.reason.contains("routes[0]"), "{}", err.reason);
    }

    #[test]
    fn bad_hosts_and_paths_are_rejected() {
        use PathKind::*;
        for (hosts, path) in [
            (&["a*.io"][..], "/"),
            (&["x..io"][..], "/"),
            (&["ok.io"][..], "nope"),
        ] {
            assert!(RouteTable::build(&[route("r", hosts, &[(Prefix, path)])]).is_err());
        }
    }
}
