//! Gateway API HTTPRoute features on the real `.wasm`: method, header and query matches,
//! redirects, URL rewrites, header edits, direct responses and a canary with a direct response.

use fleetgate_wasm_tests::Stream;
use serde_json::json;

use super::*;

/// A route on `shop.example.com` to cluster `c` (its own upstream); `fields` add to it.
fn route(name: &str, c: &str, fields: Value) -> Value {
    let mut r = json!({"name": name, "hosts": [HOST_NAME],
        "backends": [{"cluster": c, "upstream": up(c)}]});
    for (k, v) in fields.as_object().expect("route fields") {
        r[k] = v.clone();
    }
    r
}

fn gateway(routes: Vec<Value>) -> Host {
    host(
        &json!({"version": 1, "random_seed": 42, "decision_header": "x-fleetgate-decision",
        "clusters": [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}], "routes": routes}),
    )
}

fn send(h: &Host, method: &str, path: &str, headers: &[(&str, &str)]) -> Stream {
    let mut r = h.request().method(method).authority(HOST_NAME).path(path);
    for (k, v) in headers {
        r = r.header(k, v);
    }
    r.send()
}

fn cluster(s: &Stream) -> Option<String> {
    s.request_header(UPSTREAM_HEADER).map(|u| cluster_of(&u))
}

#[test]
fn method_header_and_query_matches_pick_the_route_in_gateway_api_order() {
    let h = gateway(vec![
        route(
            "plain",
            "a",
            json!({"paths": [{"type": "Prefix", "path": "/api"}]}),
        ),
        route(
            "query",
            "b",
            json!({"paths": [{"type": "Prefix", "path": "/api"}],
            "when": [{"query": "v", "match": {"exact": "2"}}]}),
        ),
        route(
            "header",
            "c",
            json!({"paths": [{"type": "Prefix", "path": "/api"}],
            "when": [{"header": "x-tier", "match": {"regex": "gold|platinum"}}]}),
        ),
        route(
            "post",
            "d",
            json!({"paths": [{"type": "Prefix", "path": "/api"}], "method": "POST"}),
        ),
    ]);
    for (method, path, headers, want) in [
        ("GET", "/api/x", &[][..], "a"),
        ("GET", "/api/x?v=2", &[][..], "b"),
        ("GET", "/api/x?v=2", &[("x-tier", "gold")][..], "c"),
        ("POST", "/api/x?v=2", &[("x-tier", "gold")][..], "d"),
        ("PUT", "/api/x", &[("x-tier", "silver")][..], "a"),
    ] {
        let s = send(&h, method, path, headers);
        assert_eq!(
            cluster(&s).as_deref(),
            Some(want),
            "{method} {path} {headers:?}"
        );
        s.respond(200).finish();
    }
}

#[test]
fn a_redirect_is_answered_by_the_plugin_with_location_and_status() {
    let h = gateway(vec![route(
        "to-https",
        "a",
        json!({"backends": [],
        "redirect": {"scheme": "https", "path": {"prefix": "/shop"}, "status": 301}}),
    )]);
    let s = h
        .request()
        .scheme("http")
        .authority("shop.example.com:80")
        .path("/cart?item=7")
        .send();
    let reply = s.local_response().expect("a local redirect");
    assert_eq!(reply.status, 301);
    assert_eq!(
        reply.header("location"),
        Some("https://shop.example.com/shop/cart?item=7")
    );
    assert!(reply.body.is_empty());
    assert_eq!(
        reply.header("x-fleetgate-decision"),
        Some("reason=redirect; route=to-https")
    );
    assert_eq!(s.request_header(UPSTREAM_HEADER), None);
    s.finish();
    assert_eq!(h.metric("fleetgate_redirects_total"), Some(1));
}

#[test]
fn a_url_rewrite_and_header_edits_change_what_is_forwarded_and_returned() {
    let h = gateway(vec![route(
        "legacy",
        "b",
        json!({
            "paths": [{"type": "Prefix", "path": "/old/"}],
            "rewrite": {"hostname": "backend.internal", "path": {"prefix": "/v2"}},
            "request_headers": {"set": [{"name": "X-Env", "value": "prod"}],
                "add": [{"name": "x-tag", "value": "gw"}], "remove": ["x-debug"]},
            "response_headers": {"set": [{"name": "cache-control", "value": "no-store"}],
                "add": [{"name": "x-served", "value": "fleet"}], "remove": ["server"]}
        }),
    )]);
    let s = send(
        &h,
        "GET",
        "/old/items/3?full=1",
        &[("x-tag", "client"), ("x-debug", "1"), ("x-env", "dev")],
    );
    assert_eq!(
        s.request_header(":path").as_deref(),
        Some("/v2/items/3?full=1")
    );
    assert_eq!(
        s.request_header(":authority").as_deref(),
        Some("backend.internal")
    );
    assert_eq!(cluster(&s).as_deref(), Some("b"));
    let forwarded = s.request_headers();
    assert_eq!(forwarded.get_all("x-env"), vec!["prod"]);
    assert_eq!(forwarded.get_all("x-tag"), vec!["client", "gw"]);
    assert_eq!(forwarded.get_all("x-debug"), Vec::<String>::new());
    s.respond(200)
        .header("server", "upstream")
        .header("cache-control", "max-age=60")
        .header("x-served", "app")
        .finish();
    let returned = s.response_headers();
    assert_eq!(returned.get_all("cache-control"), vec!["no-store"]);
    assert_eq!(returned.get_all("x-served"), vec!["app", "fleet"]);
    assert_eq!(returned.get_all("server"), Vec::<String>::new());
    assert_eq!(
        s.response_header("x-fleetgate-decision").as_deref(),
        Some("cluster=b; reason=weight; route=legacy")
    );
}

#[test]
fn a_direct_route_answers_500_and_a_direct_canary_answers_its_share() {
    let h = gateway(vec![
        route(
            "unresolved",
            "a",
            json!({"paths": [{"type": "Prefix", "path": "/broken"}],
            "backends": [], "direct": {"status": 500, "body": "no backend\n"}}),
        ),
        route(
            "split",
            "a",
            json!({"paths": [{"type": "Prefix", "path": "/split"}],
            "canaries": [{"name": "missing", "weight": 30, "backends": [],
                          "direct": {"status": 500}}]}),
        ),
    ]);
    let s = send(&h, "GET", "/broken", &[]);
    let reply = s.local_response().expect("a direct response");
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (500, &b"no backend\n"[..])
    );
    assert_eq!(
        reply.header("x-fleetgate-decision"),
        Some("reason=direct; route=unresolved")
    );
    s.finish();

    let (mut direct, mut routed) = (0, 0);
    for _ in 0..400 {
        let s = send(&h, "GET", "/split", &[]);
        match s.local_response() {
            Some(r) => {
                assert_eq!(r.status, 500);
                direct += 1;
                s.finish();
            }
            None => {
                assert_eq!(cluster(&s).as_deref(), Some("a"));
                routed += 1;
                s.respond(200).finish();
            }
        }
    }
    assert!(
        (80..160).contains(&direct),
        "{direct} of 400 answered directly (30% expected)"
    );
    assert_eq!(direct + routed, 400);
    assert_eq!(
        h.metric("fleetgate_direct_responses_total"),
        Some(direct + 1)
    );
}
