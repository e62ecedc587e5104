//! Hostile requests never trap: thousands of headers, huge values, non-UTF-8 bytes, missing
//! pseudo-headers, absent properties.

use fleetgate_wasm_tests::{Target, VmId};
use serde_json::json;

use super::*;

fn cfg() -> Value {
    config(
        &["hz-a", "hz-b"],
        json!({"route_by_header": "x-c", "sticky": {"cookie": "fg"},
               "pins": [{"when": {"cookie": "site", "match": {"regex": "(a|b)+c"}}, "cluster": "hz-b"}],
               "canaries": [{"name": "v2", "when": [{"query": "v", "match": "present"}],
                              "backends": [{"cluster": "hz-a", "upstream": "v2"}]}]}),
    )
}

#[test]
fn ten_thousand_headers_and_a_one_mib_value_are_routed() {
    for target in Target::ALL {
        let h = host_on(target, &cfg());
        let mut r = h.request().authority(HOST_NAME).path("/");
        for i in 0..10_000 {
            r = r.header(&format!("x-h-{i}"), "v");
        }
        let big = "a".repeat(1 << 20);
        let s = r
            .header("cookie", &format!("site={big}c"))
            .header("x-c", &big)
            .send();
        assert_eq!(
            s.request_header(UPSTREAM_HEADER),
            Some(up("hz-b")),
            "{target:?}"
        );
        s.respond(200).finish();
        assert!(!h.poisoned(VmId::FIRST));
    }
}

#[test]
fn non_utf8_and_odd_values_get_a_decision() {
    let h = host(&cfg());
    let odd: Vec<&str> = vec![
        "\u{fffd}\u{0}\u{7f}",
        "fg=; =; ;;;",
        "=",
        ";",
        "site",
        "\"quoted\"",
        "x-c",
    ];
    for v in odd {
        let s = get(&h, "/?v&&=&v=%ff", &[("cookie", v), ("x-c", v)]);
        assert!(s.request_header(UPSTREAM_HEADER).is_some(), "{v:?}");
        s.respond(200).finish();
    }
    // Raw non-UTF-8 bytes through the host's byte-level header API.
    let s = h
        .request()
        .authority("shop.example.com")
        .path("/")
        .header_bytes("x-c", &[0xff, 0xfe, b'h', b'z'])
        .header_bytes("cookie", &[0xc3, 0x28, b'=', 0xa0])
        .send();
    assert!(s.request_header(UPSTREAM_HEADER).is_some());
    s.respond(200).finish();
    assert!(!h.poisoned(VmId::FIRST));
}

#[test]
fn missing_pseudo_headers_and_absent_properties_pass_through() {
    let h = host(&cfg());
    // No :authority and no :path at all.
    let s = h.request().without_pseudo_headers().send();
    assert_eq!(s.request_header(UPSTREAM_HEADER), None);
    s.finish();
    // Authority only, path empty, odd authorities.
    for authority in [
        "",
        ":",
        "[::1]:80",
        "shop.example.com:99999999999",
        "SHOP.EXAMPLE.COM.",
    ] {
        let s = h.request().authority(authority).path("").send();
        s.respond(200).finish();
    }
    // A response with no code property at all (stream reset before any response).
    let s = get(&h, "/", &[]);
    s.finish();
    assert!(!h.poisoned(VmId::FIRST));
}
