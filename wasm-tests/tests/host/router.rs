//! The minimal router guest (the benchmark yardstick) really routes: known hosts get the
//! upstream header, others pass untouched.

use fleetgate_wasm_tests::{Host, Module};

#[test]
fn the_minimal_router_sets_the_upstream_of_known_hosts_only() {
    let host = Host::new(
        &Module::router_wasip1(),
        "a.example.com=up-a\nb.example.com=up-b\n",
    )
    .expect("router starts");
    for (authority, want) in [
        ("a.example.com", Some("up-a")),
        ("b.example.com:8080", Some("up-b")),
        ("c.example.com", None),
    ] {
        let s = host.request().authority(authority).path("/x").send();
        assert_eq!(
            s.request_header("x-fleetgate-upstream").as_deref(),
            want,
            "{authority}"
        );
        s.respond(200).finish();
    }
}
