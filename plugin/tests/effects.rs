//! What a decision does to the request and the response, natively: the 503 reply, the routing
//! headers, the sticky cookie and the decision header the filter applies as they are.

use fleetgate_plugin::config::{self, Config};
use fleetgate_plugin::decide::{select, Decision};
use fleetgate_plugin::effects::{on_request, on_response, LocalReply, RequestEffects};
use fleetgate_plugin::health::PassiveState;
use fleetgate_plugin::request::SimpleRequest;
use serde_json::{json, Value};

fn cfg(route: Value) -> Config {
    let mut r = json!({"name": "default/shop", "hosts": ["shop.example.com"],
        "backends": [{"cluster": "a", "upstream": "up-a"}]});
    for (k, v) in route.as_object().unwrap() {
        r[k] = v.clone();
    }
    let doc = json!({"version": 1, "decision_header": "x-decision",
        "clusters": [{"id": "a"}], "routes": [r]});
    config::parse(doc.to_string().as_bytes()).unwrap()
}

fn decide(c: &Config, r: &SimpleRequest) -> Decision {
    let mut rng = fastrand::Rng::with_seed(1);
    select(c, r, |_| PassiveState::default(), 0, &mut rng).expect("route")
}

fn root() -> SimpleRequest {
    SimpleRequest::new("shop.example.com", "/")
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, s)| (k.to_string(), s.to_string()))
        .collect()
}

#[test]
fn a_routed_request_gets_the_upstream_header_and_loses_a_spoofed_mirror() {
    let c = cfg(json!({}));
    let d = decide(&c, &SimpleRequest::new("shop.example.com", "/"));
    let fx = on_request(&c, Some(&d), &root(), &[]);
    assert!(
        fx.remove_headers.is_empty(),
        "nothing sent, nothing to remove"
    );
    let sent = ["x-fleetgate-upstream", "x-fleetgate-mirror"];
    assert_eq!(
        on_request(&c, Some(&d), &root(), &sent),
        RequestEffects {
            set_headers: pairs(&[("x-fleetgate-upstream", "up-a")]),
            add_headers: vec![],
            remove_headers: vec!["x-fleetgate-mirror".into()],
            local_reply: None,
            clear_route_cache: true,
        }
    );
    let c = cfg(json!({"mirror": {"upstream": "shadow", "percent": 100}}));
    let d = decide(&c, &SimpleRequest::new("shop.example.com", "/"));
    let fx = on_request(&c, Some(&d), &root(), &sent);
    assert_eq!(
        fx.set_headers,
        pairs(&[
            ("x-fleetgate-upstream", "up-a"),
            ("x-fleetgate-mirror", "shadow")
        ])
    );
    assert!(fx.remove_headers.is_empty());
}

#[test]
fn nothing_usable_answers_a_plain_503_naming_the_route() {
    let c = cfg(json!({"backends": [{"cluster": "a", "upstream": "up-a", "ready": 0}]}));
    let d = decide(&c, &SimpleRequest::new("shop.example.com", "/"));
    let fx = on_request(&c, Some(&d), &root(), &[]);
    assert_eq!(
        fx.local_reply,
        Some(LocalReply {
            status: 503,
            headers: pairs(&[
                ("content-type", "text/plain"),
                ("x-decision", "reason=unavailable; route=default/shop")
            ]),
            body: "fleetgate: no healthy cluster for route default/shop\n".into(),
        })
    );
    assert!(fx.set_headers.is_empty() && !fx.clear_route_cache);
}

#[test]
fn requests_of_no_route_only_lose_the_routing_headers_they_sent() {
    let c = cfg(json!({}));
    assert_eq!(
        on_request(&c, None, &root(), &[]),
        RequestEffects::default()
    );
    let fx = on_request(&c, None, &root(), &["x-fleetgate-upstream"]);
    assert_eq!(fx.remove_headers, vec!["x-fleetgate-upstream".to_string()]);
    assert!(fx.clear_route_cache && fx.set_headers.is_empty());
}

#[test]
fn the_response_explains_the_decision_and_sets_the_sticky_cookie() {
    let c = cfg(json!({"sticky": {"cookie": "fg", "max_age_seconds": 60}}));
    let d = decide(&c, &SimpleRequest::new("shop.example.com", "/"));
    let t = d.target.clone().unwrap();
    assert_eq!(
        on_response(&c, d.route, &t).add_headers,
        pairs(&[
            ("x-decision", "cluster=a; reason=weight; route=default/shop"),
            ("set-cookie", "fg=a; Path=/; Max-Age=60; HttpOnly"),
        ])
    );
    // A client already on its cluster gets no new cookie.
    let r = SimpleRequest::new("shop.example.com", "/").with_header("cookie", "fg=a");
    let d = decide(&c, &r);
    let headers = on_response(&c, d.route, d.target.as_ref().unwrap()).add_headers;
    assert_eq!(
        headers,
        pairs(&[("x-decision", "cluster=a; reason=sticky; route=default/shop")])
    );
}
