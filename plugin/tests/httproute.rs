//! Gateway API HTTPRoute semantics, natively: match precedence (from the spec), URL rewrites,
//! redirects, direct responses, header edits, and the validation of each.

use fleetgate_plugin::config::{self, Config, ConfigError};
use fleetgate_plugin::decide::{select, Decision, Local};
use fleetgate_plugin::effects::{on_request, on_response, LocalReply};
use fleetgate_plugin::health::PassiveState;
use fleetgate_plugin::request::SimpleRequest;
use fleetgate_plugin::route;
use serde_json::{json, Value};

/// A route named `name` on `shop.io` (unless `fields` say otherwise) to cluster `a`.
fn route(name: &str, fields: Value) -> Value {
    let mut r = json!({"name": name, "hosts": ["shop.io"],
        "backends": [{"cluster": "a", "upstream": format!("up-{name}")}]});
    for (k, v) in fields.as_object().expect("fields") {
        r[k] = v.clone();
    }
    r
}

fn doc(routes: Vec<Value>) -> Value {
    json!({"version": 1, "decision_header": "x-decision",
        "clusters": [{"id": "a"}], "routes": routes})
}

fn cfg(routes: Vec<Value>) -> Config {
    config::parse(doc(routes).to_string().as_bytes()).expect("valid config")
}

fn reject(routes: Vec<Value>) -> ConfigError {
    config::parse(doc(routes).to_string().as_bytes()).expect_err("config should be rejected")
}

fn decide(c: &Config, r: &SimpleRequest) -> Option<Decision> {
    let mut rng = fastrand::Rng::with_seed(7);
    select(c, r, |_| PassiveState::default(), 0, &mut rng)
}

/// The name of the route a request matches.
fn matched(c: &Config, r: &SimpleRequest) -> Option<String> {
    decide(c, r).map(|d| c.routes[d.route].name.clone())
}

fn get(host: &str, path: &str) -> SimpleRequest {
    SimpleRequest::new(host, path).with_header(":method", "GET")
}

fn prefix(p: &str) -> Value {
    json!([{"type": "Prefix", "path": p}])
}

fn exact(p: &str) -> Value {
    json!([{"type": "Exact", "path": p}])
}

fn header(name: &str, value: &str) -> Value {
    json!({"header": name, "match": {"exact": value}})
}

fn query(name: &str, value: &str) -> Value {
    json!({"query": name, "match": {"exact": value}})
}

/// Check (request, route it matches) pairs.
fn table(c: &Config, cases: &[(SimpleRequest, Option<&str>)]) {
    for (req, want) in cases {
        assert_eq!(matched(c, req).as_deref(), *want, "{req:?}");
    }
}

#[test]
fn exact_beats_prefix_and_the_longer_prefix_wins() {
    let c = cfg(vec![
        route("root", json!({"paths": prefix("/")})),
        route("api", json!({"paths": prefix("/api")})),
        route("api-v1", json!({"paths": prefix("/api/v1/")})),
        route("login", json!({"paths": exact("/api/v1/login")})),
    ]);
    table(
        &c,
        &[
            (get("shop.io", "/api/v1/login"), Some("login")),
            (get("shop.io", "/api/v1/login/x"), Some("api-v1")),
            (get("shop.io", "/api/v1"), Some("api-v1")),
            (get("shop.io", "/api/v2"), Some("api")),
            (get("shop.io", "/apiv1"), Some("root")),
        ],
    );
}

#[test]
fn at_one_path_a_method_beats_none_then_more_headers_then_more_query_tests() {
    let c = cfg(vec![
        route("plain", json!({})),
        route("one-query", json!({"when": [query("q", "1")]})),
        route(
            "two-queries",
            json!({"when": [query("q", "1"), query("r", "1")]}),
        ),
        route("one-header", json!({"when": [header("x-a", "1")]})),
        route(
            "two-headers",
            json!({"when": [header("x-a", "1"), header("x-b", "1")]}),
        ),
        route("get", json!({"method": "GET"})),
    ]);
    let post = |path: &str| SimpleRequest::new("shop.io", path).with_header(":method", "POST");
    table(
        &c,
        &[
            (
                get("shop.io", "/?q=1&r=1").with_header("x-a", "1"),
                Some("get"),
            ),
            (
                post("/?q=1&r=1")
                    .with_header("x-a", "1")
                    .with_header("x-b", "1"),
                Some("two-headers"),
            ),
            // One header test beats two query tests.
            (
                post("/?q=1&r=1").with_header("x-a", "1"),
                Some("one-header"),
            ),
            (post("/?q=1&r=1"), Some("two-queries")),
            (post("/?q=1"), Some("one-query")),
            (post("/?q=2"), Some("plain")),
        ],
    );
}

#[test]
fn equal_claims_keep_list_order() {
    let c = cfg(vec![
        route("first", json!({"when": [header("x-a", "1")]})),
        route("second", json!({"when": [header("x-b", "1")]})),
    ]);
    let both = get("shop.io", "/")
        .with_header("x-a", "1")
        .with_header("x-b", "1");
    table(
        &c,
        &[
            (both, Some("first")),
            (get("shop.io", "/").with_header("x-b", "1"), Some("second")),
            (get("shop.io", "/"), None),
        ],
    );
}

#[test]
fn when_every_test_at_a_path_fails_the_next_shorter_prefix_is_tried() {
    let c = cfg(vec![
        route("root", json!({"paths": prefix("/")})),
        route(
            "api-canary",
            json!({"paths": prefix("/api"), "when": [header("x-canary", "1")]}),
        ),
        route("api-get", json!({"paths": prefix("/api"), "method": "GET"})),
    ]);
    let put = SimpleRequest::new("shop.io", "/api/x").with_header(":method", "PUT");
    table(
        &c,
        &[
            (put.clone().with_header("x-canary", "1"), Some("api-canary")),
            (put, Some("root")),
            (get("shop.io", "/api/x"), Some("api-get")),
        ],
    );
}

#[test]
fn regex_paths_come_after_exact_paths_and_before_prefixes_in_list_order() {
    let c = cfg(vec![
        route(
            "v-any",
            json!({"paths": [{"type": "Regex", "path": "/api/v[0-9]+/.*"}]}),
        ),
        route(
            "v1",
            json!({"paths": [{"type": "Regex", "path": "/api/v1/.*"}]}),
        ),
        route("items", json!({"paths": prefix("/api/v1/items")})),
        route("all", json!({"paths": prefix("/")})),
        route("exact", json!({"paths": exact("/api/v1/items/3")})),
        route(
            "docs",
            json!({"paths": [{"type": "Regex", "path": "/docs"}]}),
        ),
    ]);
    table(
        &c,
        &[
            (get("shop.io", "/api/v1/items/3"), Some("exact")),
            // The first regex in list order, before the longer prefix and the catch-all.
            (get("shop.io", "/api/v1/items/4"), Some("v-any")),
            (get("shop.io", "/api/v1/users?x=1"), Some("v-any")),
            (get("shop.io", "/api/vx/users"), Some("all")),
            // A full match: `/docs` does not match `/docs/x`.
            (get("shop.io", "/docs"), Some("docs")),
            (get("shop.io", "/docs/x"), Some("all")),
        ],
    );
}

#[test]
fn suffix_wildcards_match_any_depth_the_longest_suffix_first_label_wildcards_one_label() {
    let wild = |name: &str, host: &str, mode: &str| {
        route(name, json!({"hosts": [host], "wildcard": mode}))
    };
    let c = cfg(vec![
        wild("deep", "*.example.com", "suffix"),
        wild("deeper", "*.eu.example.com", "suffix"),
        wild("label", "*.shop.org", "label"),
        route(
            "exact",
            json!({"hosts": ["a.eu.example.com"], "paths": exact("/only")}),
        ),
    ]);
    table(
        &c,
        &[
            (get("a.example.com", "/"), Some("deep")),
            (get("a.b.c.example.com", "/"), Some("deep")),
            (get("example.com", "/"), None),
            (get("x.eu.example.com", "/"), Some("deeper")),
            (get("a.b.eu.example.com", "/"), Some("deeper")),
            (get("a.eu.example.com", "/only"), Some("exact")),
            // Nothing of the exact host matches: on to the wildcards.
            (get("a.eu.example.com", "/other"), Some("deeper")),
            (get("a.shop.org", "/"), Some("label")),
            (get("a.b.shop.org", "/"), None),
        ],
    );
}

#[test]
fn only_a_claim_that_can_never_win_is_a_duplicate() {
    let err = reject(vec![
        route(
            "a",
            json!({"method": "GET", "when": [header("x", "1"), query("q", "1")]}),
        ),
        route(
            "b",
            json!({"method": "GET", "when": [query("q", "1"), header("x", "1")]}),
        ),
    ]);
    assert_eq!(err.path, "routes[1].paths[0]");
    assert!(
        err.reason.contains("already routed by routes[0]"),
        "{}",
        err.reason
    );
    // The wildcard mode of an exact host changes nothing.
    let err = reject(vec![
        route("a", json!({})),
        route("b", json!({"wildcard": "suffix"})),
    ]);
    assert_eq!(err.path, "routes[1].paths[0]");
    // Same path, but a different method, test or wildcard kind: both stay reachable.
    for (a, b) in [
        (json!({"method": "GET"}), json!({"method": "POST"})),
        (
            json!({"when": [header("x", "1")]}),
            json!({"when": [header("x", "2")]}),
        ),
        (json!({}), json!({"method": "GET"})),
        (
            json!({"hosts": ["*.shop.io"]}),
            json!({"hosts": ["*.shop.io"], "wildcard": "suffix"}),
        ),
    ] {
        cfg(vec![route("a", a), route("b", b)]);
    }
}

/// `route::claims` says exactly what the table refuses: two routes share a claim if and only
/// if the second is refused as a duplicate.
#[test]
fn claims_are_shared_exactly_when_the_table_refuses_a_duplicate() {
    let pairs = [
        (json!({}), json!({}), true),
        (json!({}), json!({"wildcard": "suffix"}), true),
        (
            json!({"paths": prefix("/a/")}),
            json!({"paths": prefix("/a")}),
            true,
        ),
        (
            json!({"paths": exact("/a")}),
            json!({"paths": prefix("/a")}),
            false,
        ),
        (json!({"hosts": ["Shop.io"]}), json!({}), true),
        (json!({"hosts": []}), json!({"hosts": []}), true),
        (json!({"method": "GET"}), json!({"method": "POST"}), false),
        (
            json!({"when": [header("x", "1"), query("q", "1")]}),
            json!({"when": [query("q", "1"), header("x", "1")]}),
            true,
        ),
        (json!({"when": [header("x", "1")]}), json!({}), false),
        (
            json!({"hosts": ["*.shop.io"]}),
            json!({"hosts": ["*.shop.io"], "wildcard": "suffix"}),
            false,
        ),
        (
            json!({"hosts": ["*.shop.io"], "wildcard": "suffix"}),
            json!({"hosts": ["*.shop.io"], "wildcard": "suffix"}),
            true,
        ),
        (
            json!({"paths": [{"type": "Regex", "path": "/a.*"}]}),
            json!({"paths": [{"type": "Regex", "path": "/a.*"}]}),
            false,
        ),
    ];
    for (a, b, refused) in pairs {
        let (ra, rb) = (route("a", a.clone()), route("b", b.clone()));
        let wire = |v: &Value| -> config::RouteV1 { serde_json::from_value(v.clone()).unwrap() };
        let (ca, cb) = (route::claims(&wire(&ra)), route::claims(&wire(&rb)));
        let shared = ca.iter().any(|k| cb.contains(k));
        let doc = doc(vec![ra, rb]).to_string();
        let is_refused = config::parse(doc.as_bytes()).is_err();
        assert_eq!((shared, is_refused), (refused, refused), "{a} then {b}");
    }
}

fn fx_of(c: &Config, req: &SimpleRequest) -> fleetgate_plugin::effects::RequestEffects {
    let d = decide(c, req).expect("a route");
    on_request(c, Some(&d), req, &[])
}

fn set_of(fx: &fleetgate_plugin::effects::RequestEffects, name: &str) -> Option<String> {
    fx.set_headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

#[test]
fn url_rewrites_replace_the_host_and_the_matched_prefix_keeping_the_query() {
    let c = cfg(vec![
        route(
            "strip",
            json!({"paths": [{"type": "Prefix", "path": "/old"}, {"type": "Prefix", "path": "/legacy/"}],
            "rewrite": {"hostname": "Backend.Internal", "path": {"prefix": "/new"}}}),
        ),
        route(
            "full",
            json!({"paths": exact("/home"), "rewrite": {"path": {"full": "/index.html"}}}),
        ),
        route(
            "root",
            json!({"paths": prefix("/"), "rewrite": {"path": {"prefix": "/app"}}}),
        ),
    ]);
    for (path, want) in [
        ("/old/a?x=1", "/new/a?x=1"),
        ("/old", "/new"),
        ("/legacy/b/c", "/new/b/c"),
        ("/home?x=1", "/index.html?x=1"),
        ("/shop/cart", "/app/shop/cart"),
    ] {
        let fx = fx_of(&c, &get("shop.io:8080", path));
        assert_eq!(set_of(&fx, ":path").as_deref(), Some(want), "{path}");
    }
    let fx = fx_of(&c, &get("shop.io:8080", "/old"));
    assert_eq!(
        set_of(&fx, ":authority").as_deref(),
        Some("backend.internal")
    );
    let fx = fx_of(&c, &get("shop.io", "/home"));
    assert_eq!(set_of(&fx, ":authority"), None, "no hostname rewrite");
}

#[test]
fn a_redirect_answers_locally_with_the_location_and_status_and_needs_no_backend() {
    let c = cfg(vec![
        route(
            "https",
            json!({"backends": [], "paths": prefix("/"),
            "redirect": {"scheme": "https", "status": 301}}),
        ),
        route(
            "moved",
            json!({"backends": [], "paths": prefix("/old"),
            "redirect": {"hostname": "new.io", "port": 8443, "path": {"prefix": "/new"}, "status": 308},
            "request_headers": {"set": [{"name": "x-never", "value": "1"}]}}),
        ),
    ]);
    let req = get("shop.io:80", "/cart?id=1").with_header(":scheme", "http");
    let d = decide(&c, &req).unwrap();
    assert_eq!((d.target.clone(), d.local), (None, Some(Local::Redirect)));
    let fx = on_request(&c, Some(&d), &req, &["x-fleetgate-upstream"]);
    assert_eq!(
        fx.local_reply,
        Some(LocalReply {
            status: 301,
            headers: vec![
                ("location".into(), "https://shop.io/cart?id=1".into()),
                ("x-decision".into(), "reason=redirect; route=https".into()),
            ],
            body: String::new(),
        })
    );
    let fx = fx_of(&c, &get("shop.io", "/old/page?q=2"));
    let reply = fx.local_reply.expect("a redirect");
    assert_eq!(reply.status, 308);
    assert_eq!(reply.headers[0].1, "http://new.io:8443/new/page?q=2");
    assert!(
        fx.set_headers.is_empty(),
        "request edits are not for local replies"
    );
}

#[test]
fn direct_responses_of_a_route_and_of_a_canary_share() {
    let c = cfg(vec![
        route(
            "broken",
            json!({"backends": [], "paths": prefix("/broken"),
            "direct": {"status": 500, "body": "backend not found\n"}}),
        ),
        route(
            "half",
            json!({"paths": prefix("/half"),
            "canaries": [{"name": "gone", "weight": 50, "backends": [], "direct": {"status": 500}}]}),
        ),
    ]);
    let fx = fx_of(&c, &get("shop.io", "/broken"));
    assert_eq!(
        fx.local_reply,
        Some(LocalReply {
            status: 500,
            headers: vec![
                ("content-type".into(), "text/plain".into()),
                ("x-decision".into(), "reason=direct; route=broken".into()),
            ],
            body: "backend not found\n".into(),
        })
    );
    let mut rng = fastrand::Rng::with_seed(3);
    let (mut direct, mut routed) = (0, 0);
    for _ in 0..1000 {
        let d = select(
            &c,
            &get("shop.io", "/half"),
            |_| PassiveState::default(),
            0,
            &mut rng,
        )
        .unwrap();
        match d.local {
            Some(Local::Direct(Some(0))) => direct += 1,
            None if d.target.is_some() => routed += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        (400..600).contains(&direct) && direct + routed == 1000,
        "{direct} of 1000"
    );
}

#[test]
fn header_edits_apply_set_then_add_then_remove_to_routed_requests_and_responses() {
    let edit = json!({"set": [{"name": "X-Env", "value": "prod"}, {"name": "x-gone", "value": "1"}],
        "add": [{"name": "x-tag", "value": "b"}], "remove": ["x-gone", "x-debug"]});
    let c = cfg(vec![route(
        "r",
        json!({"request_headers": edit, "response_headers": edit}),
    )]);
    let req = get("shop.io", "/");
    let fx = fx_of(&c, &req);
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, s)| (k.to_string(), s.to_string()))
            .collect()
    };
    assert_eq!(
        fx.set_headers,
        pairs(&[
            ("x-fleetgate-upstream", "up-r"),
            ("x-env", "prod"),
            ("x-gone", "1")
        ])
    );
    assert_eq!(fx.add_headers, pairs(&[("x-tag", "b")]));
    assert_eq!(
        fx.remove_headers,
        vec!["x-gone".to_string(), "x-debug".to_string()]
    );
    let d = decide(&c, &req).unwrap();
    let rx = on_response(&c, d.route, d.target.as_ref().unwrap());
    assert_eq!(rx.set_headers, pairs(&[("x-env", "prod"), ("x-gone", "1")]));
    assert_eq!(
        rx.add_headers,
        pairs(&[
            ("x-tag", "b"),
            ("x-decision", "cluster=a; reason=weight; route=r")
        ])
    );
    assert_eq!(
        rx.remove_headers,
        vec!["x-gone".to_string(), "x-debug".to_string()]
    );
}

#[test]
fn bad_filters_and_tests_are_rejected_naming_the_field() {
    let no_backends = |fields: Value| {
        let mut r = route("r", fields);
        r["backends"] = json!([]);
        r
    };
    let cases = [
        (
            no_backends(json!({})),
            "routes[0].backends",
            "at least one backend",
        ),
        (
            route(
                "r",
                json!({"canaries": [{"name": "c", "weight": 5, "backends": []}]}),
            ),
            "routes[0].canaries[0].backends",
            "at least one backend",
        ),
        (
            no_backends(json!({"redirect": {"status": 200}})),
            "routes[0].redirect.status",
            "not a redirect status",
        ),
        (
            no_backends(json!({"redirect": {"scheme": "ftp"}})),
            "routes[0].redirect.scheme",
            "not http or https",
        ),
        (
            no_backends(json!({"direct": {"status": 99}})),
            "routes[0].direct.status",
            "200-599",
        ),
        (
            route(
                "r",
                json!({"paths": exact("/x"), "rewrite": {"path": {"prefix": "/y"}}}),
            ),
            "routes[0].rewrite.path.prefix",
            "must be Prefix",
        ),
        (
            route("r", json!({"rewrite": {"path": {"full": "y?z"}}})),
            "routes[0].rewrite.path.full",
            "must start with '/'",
        ),
        (
            route("r", json!({"rewrite": {"hostname": "*.x.io"}})),
            "routes[0].rewrite.hostname",
            "not a host name",
        ),
        (
            route(
                "r",
                json!({"rewrite": {"hostname": "x.io"}, "redirect": {}}),
            ),
            "routes[0].rewrite",
            "not both",
        ),
        (
            route(
                "r",
                json!({"request_headers": {"add": [{"name": "bad name", "value": "1"}]}}),
            ),
            "routes[0].request_headers.add[0].name",
            "not a valid header name",
        ),
        (
            route(
                "r",
                json!({"request_headers": {"remove": ["X-Fleetgate-Upstream"]}}),
            ),
            "routes[0].request_headers.remove[0]",
            "set by the plugin itself",
        ),
        (
            route(
                "r",
                json!({"response_headers": {"set": [{"name": "x", "value": "a\r\nb"}]}}),
            ),
            "routes[0].response_headers.set[0].value",
            "CR, LF",
        ),
        (
            route("r", json!({"paths": [{"type": "Regex", "path": "/(a"}]})),
            "routes[0].paths[0].path",
            "invalid regex",
        ),
        (
            route("r", json!({"method": "GET /"})),
            "routes[0].method",
            "not an HTTP method",
        ),
        (
            route(
                "r",
                json!({"when": [{"header": "x", "match": {"regex": "("}}]}),
            ),
            "routes[0].when[0].match.regex",
            "invalid regex",
        ),
    ];
    for (r, path, reason) in cases {
        let err = reject(vec![r.clone()]);
        assert_eq!(err.path, path, "{r}: {err}");
        assert!(err.reason.contains(reason), "{r}: {err}");
    }
}

#[test]
fn config_md_gateway_api_example_is_accepted_and_routes_as_described() {
    let md = include_str!("../CONFIG.md");
    let at = md.find("### Gateway API fields").expect("the section");
    let start = at + md[at..].find("```json").expect("its example") + 7;
    let end = start + md[start..].find("```").expect("closed block");
    let c = config::parse(&md.as_bytes()[start..end]).unwrap_or_else(|e| panic!("{e}"));
    let gold = get("a.b.shop.example.com", "/api/v1/items?beta").with_header("x-tier", "gold");
    assert_eq!(matched(&c, &gold).as_deref(), Some("shop/store-api"));
    let docs = get("a.b.shop.example.com", "/docs/v2/intro");
    assert_eq!(matched(&c, &docs).as_deref(), Some("shop/docs"));
    let d = decide(&c, &get("shop.example.com", "/")).unwrap();
    assert_eq!(d.local, Some(Local::Redirect));
}
