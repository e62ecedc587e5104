//! The printed Envoy bootstrap: strictly valid against Envoy's descriptors, and the checked-in
//! `examples/envoy/bootstrap-xds.yaml` is exactly what the command prints.

mod xds_common;

use fleetgate_controller::xds::bootstrap::{Bootstrap, BootstrapTls, XDS_CLUSTER};
use fleetgate_examples::{check_bootstrap, check_bootstrap_yaml};
use xds_common::root;

fn example() -> Bootstrap {
    Bootstrap {
        xds: "fleetgate-controller.fleetgate-system.svc.cluster.local:18000".into(),
        node_id: "gateway-1".into(),
        admin_port: 9901,
        token: None,
        delta: false,
        tls: None,
    }
}

#[test]
fn the_bootstrap_is_strictly_valid_and_takes_clusters_and_listeners_from_ads() {
    let mut b = example();
    b.token = Some("s3cret".into());
    let v = check_bootstrap(&b.to_json().unwrap()).unwrap();
    let dynamic = &v["dynamic_resources"];
    assert_eq!(dynamic["ads_config"]["api_type"], "GRPC");
    let grpc = &dynamic["ads_config"]["grpc_services"][0];
    assert_eq!(grpc["envoy_grpc"]["cluster_name"], XDS_CLUSTER);
    assert_eq!(grpc["initial_metadata"][0]["value"], "Bearer s3cret");
    assert!(dynamic["cds_config"]["ads"].is_object());
    assert!(dynamic["lds_config"]["ads"].is_object());
    let cluster = &v["static_resources"]["clusters"][0];
    assert_eq!(cluster["name"], XDS_CLUSTER);
    let options = &cluster["typed_extension_protocol_options"]
        ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    assert!(options["explicit_http_config"]["http2_protocol_options"].is_object());
    assert_eq!(v["node"]["id"], "gateway-1");
    b.delta = true;
    let v = check_bootstrap(&b.to_json().unwrap()).unwrap();
    assert_eq!(
        v["dynamic_resources"]["ads_config"]["api_type"],
        "DELTA_GRPC"
    );
}

#[test]
fn tls_to_the_server_is_a_strictly_valid_upstream_tls_socket() {
    let mut b = example();
    b.tls = Some(BootstrapTls {
        ca_file: "/etc/fleetgate/xds-ca.pem".into(),
        client_cert: Some((
            "/etc/fleetgate/gw.pem".into(),
            "/etc/fleetgate/gw-key.pem".into(),
        )),
    });
    let v = check_bootstrap(&b.to_json().unwrap()).unwrap();
    let socket = &v["static_resources"]["clusters"][0]["transport_socket"];
    assert_eq!(socket["name"], "envoy.transport_sockets.tls");
    let tls = &socket["typed_config"];
    let host = "fleetgate-controller.fleetgate-system.svc.cluster.local";
    assert_eq!(tls["sni"], host);
    let common = &tls["common_tls_context"];
    let validation = &common["validation_context"];
    assert_eq!(
        validation["trusted_ca"]["filename"],
        "/etc/fleetgate/xds-ca.pem"
    );
    let san = &validation["match_typed_subject_alt_names"][0];
    assert_eq!(
        (&san["san_type"], &san["matcher"]["exact"]),
        (&"DNS".into(), &host.into())
    );
    let cert = &common["tls_certificates"][0];
    assert_eq!(
        cert["certificate_chain"]["filename"],
        "/etc/fleetgate/gw.pem"
    );
    assert_eq!(cert["private_key"]["filename"], "/etc/fleetgate/gw-key.pem");
    // By IP: the name is checked as an IP SAN and no SNI is sent.
    b.xds = "10.0.0.7:18000".into();
    b.tls.as_mut().unwrap().client_cert = None;
    let v = check_bootstrap(&b.to_json().unwrap()).unwrap();
    let tls = &v["static_resources"]["clusters"][0]["transport_socket"]["typed_config"];
    assert!(tls.get("sni").is_none());
    assert!(tls["common_tls_context"].get("tls_certificates").is_none());
    let san = &tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"][0];
    assert_eq!(san["san_type"], "IP_ADDRESS");
}

#[test]
fn the_example_file_is_what_the_command_prints() {
    let path = root().join("examples/envoy/bootstrap-xds.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    check_bootstrap_yaml(&text).unwrap();
    let body: String = text
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(body, example().to_yaml().unwrap());
    assert!(text.lines().count() < 60, "keep the bootstrap minimal");
}

#[test]
fn an_xds_address_needs_a_host_and_a_port() {
    for bad in ["fleetgate-controller", ":18000", "host:http", "host:70000"] {
        let mut b = example();
        b.xds = bad.into();
        assert!(b.to_json().is_err(), "{bad}");
    }
    let mut b = example();
    b.xds = "[::1]:18000".into();
    let v = b.to_json().unwrap();
    let sa = &v["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
        ["lb_endpoints"][0]["endpoint"]["address"]["socket_address"];
    assert_eq!(sa["address"], "::1");
}
