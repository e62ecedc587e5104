//! The noop filter loads and serves requests on both targets; the request/response story works.

use fleetgate_wasm_tests::{Action, Host, Module, Target};

#[test]
fn noop_filter_loads_and_serves_a_request_on_both_targets() {
    for target in Target::ALL {
        let module = Module::noop(target);
        let host = Host::new(&module, "{}").unwrap();
        assert!(host.configured(), "{target:?}");

        let d = host
            .request()
            .authority("shop.example.com")
            .path("/api")
            .header("X-User", "a")
            .send();
        assert_eq!(d.action(), Action::Continue);
        assert!(!d.paused());
        assert_eq!(
            d.request_header("x-user").as_deref(),
            Some("a"),
            "names are lower-cased like Envoy"
        );
        assert_eq!(
            d.request_header(":authority").as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(d.local_response(), None);

        d.respond(200).flags(0x1).finish();
        assert!(d.finished());
        assert_eq!(d.response_header(":status").as_deref(), Some("200"));
    }
}

#[test]
fn wasip1_build_uses_proxy_on_memory_allocate_and_unknown_build_uses_malloc() {
    let wasi = Module::noop(Target::Wasip1);
    let bare = Module::noop(Target::Unknown);
    assert!(wasi.has_export("proxy_on_memory_allocate"));
    assert!(bare.has_export("malloc"));
}

#[test]
fn several_vms_each_serve_requests() {
    let host = Host::new(&Module::noop_wasip1(), "{}").unwrap();
    let vm2 = host.add_vm().unwrap();
    assert_eq!(host.vm_count(), 2);
    let d = host.request().vm(vm2).send();
    assert_eq!(d.vm(), vm2);
    d.respond(503).finish();
}

#[test]
fn a_finished_stream_cannot_be_answered_twice() {
    let host = Host::new(&Module::noop_unknown(), "").unwrap();
    let d = host.request().body("hello").send();
    assert_eq!(d.body_action(), Some(Action::Continue));
    d.respond(200).body("world").finish();
    assert!(d.respond(200).try_finish().is_err());
}

#[test]
fn the_plugin_module_builds_for_both_targets() {
    // Until the plugin has content it is an empty cdylib; it must at least compile to wasm.
    for target in Target::ALL {
        let module = Module::plugin(target);
        assert!(module.compile_time().as_nanos() > 0);
    }
}
