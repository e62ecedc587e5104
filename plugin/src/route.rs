//! Host and path matching, indexed so a lookup costs a few hash probes whatever the number of
//! routes.
//!
//! Precedence: an exact host beats a `*.` wildcard host (the longest suffix first), which beats
//! a rule with no host; the first host group with a matching route wins. Within a group an
//! `Exact` path comes first, then `Regex` paths (in list order), then the longest `Prefix`. `Prefix` matches element-wise: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not
//! `/foobar`; a trailing slash in the prefix is ignored. Several routes may claim one path:
//! they are tried as Gateway API orders them (see `Rank`), and the first whose method and
//! `when` tests pass wins; if none does, the next path key is tried.

use rustc_hash::FxHashMap as HashMap;

use crate::config::wire::{PathKind, PathV1, RouteV1, Wildcard};
use crate::config::{Condition, ConfigError, Source};
use crate::request::{matches, RequestView};

/// What a route asks of a request beyond its host and path.
#[derive(Debug, Clone, Default)]
pub struct RouteTests {
    /// Exact request method, if the route is limited to one.
    pub method: Option<String>,
    /// Every one must match.
    pub when: Vec<Condition>,
}

/// Gateway API order among routes claiming one path: a method first, then more header tests,
/// then more query tests (greater = tried first); a tie keeps list order.
type Rank = (bool, usize, usize);

impl RouteTests {
    fn rank(&self) -> Rank {
        let queries = self
            .when
            .iter()
            .filter(|c| matches!(c.source, Source::Query(_)))
            .count();
        (self.method.is_some(), self.when.len() - queries, queries)
    }

    fn pass<R: RequestView + ?Sized>(&self, req: &R) -> bool {
        self.method.as_deref().is_none_or(|m| req.method() == m)
            && self.when.iter().all(|c| matches(req, c))
    }
}

/// What a route claims, one key per (host, path) it serves: a route sharing a key with an
/// earlier one can never match there, and the table refuses it. Whoever merges routes from
/// several sources (the controller: Ingresses and HTTPRoutes) leaves out what an earlier
/// route already claims. Regex paths claim nothing (they are never refused).
pub fn claims(r: &RouteV1) -> Vec<String> {
    // Tests in any order are the same tests.
    let mut when: Vec<String> = (r.when.iter())
        .map(|c| serde_json::to_string(c).unwrap_or_default())
        .collect();
    when.sort();
    let tests = format!("{:?} {}", r.method, when.join(","));
    let root = [PathV1 {
        kind: PathKind::Prefix,
        path: "/".to_string(),
    }];
    let paths: &[PathV1] = if r.paths.is_empty() { &root } else { &r.paths };
    let any = [String::new()];
    let hosts: &[String] = if r.hosts.is_empty() { &any } else { &r.hosts };
    let mut out = Vec::new();
    for host in hosts {
        let host = host.to_ascii_lowercase();
        let deep = r.wildcard == Wildcard::Suffix && host.starts_with("*.");
        for p in paths {
            let path = match p.kind {
                PathKind::Exact => format!("= {}", p.path),
                PathKind::Prefix => format!("^ {}", p.path.trim_end_matches('/')),
                PathKind::Regex => continue,
            };
            out.push(format!("{host} {deep}\n{path}\n{tests}"));
        }
    }
    out
}

/// A matched route and the entry of its `paths` that matched (0 for a route without paths:
/// its implicit `Prefix /`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub route: usize,
    pub path: usize,
}

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    exact_hosts: HashMap<String, PathTable>,
    /// Keyed by the suffix after `*.` (`*.example.com` -> `example.com`); label and suffix
    /// wildcards of one pattern share a group.
    wildcard_hosts: HashMap<String, PathTable>,
    any_host: PathTable,
    /// Some wildcard matches more than one label: only then are shorter suffixes probed.
    deep_wildcards: bool,
    /// Per route.
    tests: Vec<RouteTests>,
}

/// One route's claim on a path key.
#[derive(Debug, Clone, Copy)]
struct Claim {
    route: u32,
    path: u32,
    /// A suffix wildcard: also matches hosts more than one label below its suffix.
    deep: bool,
    rank: Rank,
}

#[derive(Debug, Clone, Default)]
struct PathTable {
    exact: HashMap<String, Vec<Claim>>,
    /// Keyed by the prefix without its trailing slash (`/` -> ``).
    prefix: HashMap<String, Vec<Claim>>,
    /// In list order.
    regex: Vec<(regex_lite::Regex, Claim)>,
}

/// A request as the table matches it: path without query, and how many labels the host is
/// below the wildcard suffix being probed.
struct Probe<'a, R: ?Sized> {
    req: &'a R,
    path: &'a str,
    depth: usize,
    tests: &'a [RouteTests],
}

impl<R: RequestView + ?Sized> Probe<'_, R> {
    fn accepts(&self, c: &Claim) -> bool {
        (self.depth <= 1 || c.deep)
            && self
                .tests
                .get(c.route as usize)
                .is_some_and(|t| t.pass(self.req))
    }

    fn first(&self, claims: &[Claim]) -> Option<Match> {
        claims.iter().find(|c| self.accepts(c)).map(Claim::matched)
    }
}

impl Claim {
    fn matched(&self) -> Match {
        Match {
            route: self.route as usize,
            path: self.path as usize,
        }
    }
}

impl PathTable {
    fn lookup<R: RequestView + ?Sized>(&self, p: &Probe<'_, R>) -> Option<Match> {
        if let Some(m) = self.exact.get(p.path).and_then(|c| p.first(c)) {
            return Some(m);
        }
        // Regular expressions before prefixes (Envoy Gateway's order; the spec leaves it to
        // implementations): after them, a catch-all `Prefix /` would leave them unreachable.
        let regex = (self.regex.iter()).find(|(re, c)| p.accepts(c) && re.is_match(p.path));
        if let Some((_, c)) = regex {
            return Some(c.matched());
        }
        if !self.prefix.is_empty() {
            // Walk the element boundaries from the longest candidate down to the root.
            let mut candidate = p.path.trim_end_matches('/');
            loop {
                if let Some(m) = self.prefix.get(candidate).and_then(|c| p.first(c)) {
                    return Some(m);
                }
                match candidate.rfind('/') {
                    Some(i) => candidate = &candidate[..i],
                    None => break,
                }
            }
        }
        None
    }
}

/// Where a claim is filed.
enum Key {
    Exact(String),
    Prefix(String),
    Regex(regex_lite::Regex),
}

impl RouteTable {
    /// Index the routes, `tests[i]` being route i's. Two routes claiming one (host, path type,
    /// path) are tried in `Rank` order; a claim that can never win (same wildcard kind,
    /// method and tests as an earlier one) is an error.
    pub fn build(routes: &[RouteV1], tests: Vec<RouteTests>) -> Result<RouteTable, ConfigError> {
        let mut t = RouteTable::default();
        let root = [PathV1 {
            kind: PathKind::Prefix,
            path: "/".to_string(),
        }];
        for (i, r) in routes.iter().enumerate() {
            let paths: &[PathV1] = if r.paths.is_empty() { &root } else { &r.paths };
            let keys = paths
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    key_of(p)
                        .map_err(|e| ConfigError::new(format!("routes[{i}].paths[{j}].path"), e))
                })
                .collect::<Result<Vec<Key>, _>>()?;
            let rank = tests.get(i).map(RouteTests::rank).unwrap_or_default();
            let suffix_mode = r.wildcard == Wildcard::Suffix;
            let any = [String::new()];
            let hosts: &[String] = if r.hosts.is_empty() { &any } else { &r.hosts };
            for (h, host) in hosts.iter().enumerate() {
                // Only a wildcard host matches deeper; elsewhere the mode means nothing.
                let deep = suffix_mode && host.starts_with("*.");
                let group = t.group(host, deep).map_err(|reason| {
                    ConfigError::new(format!("routes[{i}].hosts[{h}]"), reason)
                })?;
                for (j, key) in keys.iter().enumerate() {
                    let claim = Claim {
                        route: i as u32,
                        path: j as u32,
                        deep,
                        rank,
                    };
                    group
                        .insert(key, claim, routes)
                        .map_err(|prev| duplicate(routes, i, j, host, &paths[j], prev))?;
                }
            }
        }
        t.tests = tests;
        Ok(t)
    }

    /// The path table of a route host (`""` = any host), or why it is not a host.
    fn group(&mut self, host: &str, deep: bool) -> Result<&mut PathTable, String> {
        if host.is_empty() {
            return Ok(&mut self.any_host);
        }
        let host = check_host(host)?;
        Ok(match host.strip_prefix("*.") {
            Some(suffix) => {
                self.deep_wildcards |= deep;
                self.wildcard_hosts.entry(suffix.to_string()).or_default()
            }
            None => self.exact_hosts.entry(host).or_default(),
        })
    }
}

impl PathTable {
    /// File a claim; `Err(route)` = an earlier route makes the same claim.
    fn insert(&mut self, key: &Key, claim: Claim, routes: &[RouteV1]) -> Result<(), usize> {
        let claims = match key {
            Key::Exact(p) => self.exact.entry(p.clone()).or_default(),
            Key::Prefix(p) => self.prefix.entry(p.clone()).or_default(),
            Key::Regex(re) => {
                self.regex.push((re.clone(), claim));
                return Ok(());
            }
        };
        if let Some(prev) = claims.iter().find(|c| same_claim(routes, c, &claim)) {
            return Err(prev.route as usize);
        }
        // Claims arrive in list order: after every one of equal or higher rank.
        let at = claims
            .iter()
            .position(|c| c.rank < claim.rank)
            .unwrap_or(claims.len());
        claims.insert(at, claim);
        Ok(())
    }
}

fn key_of(p: &PathV1) -> Result<Key, String> {
    if p.kind != PathKind::Regex && !p.path.starts_with('/') {
        return Err(format!("\"{}\" must start with '/'", p.path));
    }
    Ok(match p.kind {
        PathKind::Exact => Key::Exact(p.path.clone()),
        PathKind::Prefix => Key::Prefix(p.path.trim_end_matches('/').to_string()),
        PathKind::Regex => Key::Regex(crate::config::validate::checked_regex(&p.path)?),
    })
}

/// Would claim `b` only ever be reached when `a` (earlier) already matched?
fn same_claim(routes: &[RouteV1], a: &Claim, b: &Claim) -> bool {
    let (Some(ra), Some(rb)) = (routes.get(a.route as usize), routes.get(b.route as usize)) else {
        return false;
    };
    let same_when = ra.when.len() == rb.when.len() && ra.when.iter().all(|c| rb.when.contains(c));
    a.deep == b.deep && ra.method == rb.method && same_when
}

fn duplicate(
    routes: &[RouteV1],
    i: usize,
    j: usize,
    host: &str,
    p: &PathV1,
    prev: usize,
) -> ConfigError {
    let kind = match p.kind {
        PathKind::Exact => "Exact",
        PathKind::Prefix => "Prefix",
        PathKind::Regex => "Regex",
    };
    let name = routes.get(prev).map_or("", |r| r.name.as_str());
    ConfigError::new(
        format!("routes[{i}].paths[{j}]"),
        format!("host \"{host}\" path \"{}\" ({kind}) is already routed by routes[{prev}] (\"{name}\") with the same method and tests", p.path),
    )
}

impl RouteTable {
    /// The route for a request: its `:authority` (port ignored), `:path` (query ignored), and,
    /// only for routes that test them, its method, headers and query.
    pub fn lookup<R: RequestView + ?Sized>(&self, req: &R) -> Option<Match> {
        let host = strip_port(req.authority());
        let host = host.strip_suffix('.').unwrap_or(host);
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        let path = req.path().split(['?', '#']).next().unwrap_or("");
        let mut probe = Probe {
            req,
            path: if path.is_empty() { "/" } else { path },
            depth: 1,
            tests: &self.tests,
        };
        if let Some(m) = self.exact_hosts.get(host).and_then(|t| t.lookup(&probe)) {
            return Some(m);
        }
        // Wildcards, longest suffix first: a label wildcard covers one label, a suffix
        // wildcard any number (`*.example.com` and `a.b.example.com`).
        let mut rest = host;
        while let Some((first, suffix)) = rest.split_once('.') {
            if first.is_empty() {
                break;
            }
            if let Some(m) = self
                .wildcard_hosts
                .get(suffix)
                .and_then(|t| t.lookup(&probe))
            {
                return Some(m);
            }
            if !self.deep_wildcards {
                break;
            }
            rest = suffix;
            probe.depth += 1;
        }
        probe.depth = 1;
        self.any_host.lookup(&probe)
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
pub(crate) fn check_host(host: &str) -> Result<String, String> {
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
    use crate::request::SimpleRequest;

    fn build(routes: &[RouteV1]) -> Result<RouteTable, ConfigError> {
        RouteTable::build(routes, vec![RouteTests::default(); routes.len()])
    }

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
        build(&[
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
            assert_eq!(
                t.lookup(&SimpleRequest::new(host, path)).map(|m| m.route),
                want,
                "{host} {path}"
            );
        }
    }

    #[test]
    fn duplicate_host_and_path_is_rejected_with_both_routes_named() {
        use PathKind::*;
        let err = build(&[
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
            assert!(build(&[route("r", hosts, &[(Prefix, path)])]).is_err());
        }
    }
}
