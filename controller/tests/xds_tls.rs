//! The ADS server over TLS with client certificates, on loopback, with certificates made
//! here: a client without a certificate, or with one the CA did not sign, is refused; one with
//! a certificate the CA signed is served.

mod xds_common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fleetgate_controller::xds::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use fleetgate_controller::xds::pb::envoy::service::discovery::v3::{
    DiscoveryRequest, DiscoveryResponse,
};
use fleetgate_controller::xds::{AdsServer, Auth, Snapshot, Tls, XdsError, XdsMetrics, CLUSTER};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A certificate and its key, PEM.
struct Pem {
    cert: String,
    key: String,
}

/// A CA, a server certificate for `localhost` and a client certificate it signed, and a
/// client certificate of another CA.
struct Pki {
    ca: String,
    server: Pem,
    client: Pem,
    stranger: Pem,
}

fn ca() -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    (params.self_signed(&key).unwrap(), key)
}

fn signed(name: &str, by: &(rcgen::Certificate, KeyPair)) -> Pem {
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec![name.to_string()]).unwrap();
    let cert = params.signed_by(&key, &by.0, &by.1).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn pki() -> Pki {
    let (ours, other) = (ca(), ca());
    Pki {
        ca: ours.0.pem(),
        server: signed("localhost", &ours),
        client: signed("gateway-1", &ours),
        stranger: signed("gateway-1", &other),
    }
}

fn tls(pki: &Pki, client_ca: bool) -> Tls {
    Tls {
        cert_pem: pki.server.cert.clone().into_bytes(),
        key_pem: pki.server.key.clone().into_bytes(),
        client_ca_pem: client_ca.then(|| pki.ca.clone().into_bytes()),
    }
}

type Keep = watch::Sender<Option<Arc<Snapshot>>>;

/// A mutual-TLS server on loopback; keep the returned sender while it serves.
async fn serve(pki: &Pki) -> (SocketAddr, Keep) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let auth = Auth::with_tls(addr, None, Some(tls(pki, true)), false).unwrap();
    let (tx, rx) = watch::channel(Some(xds_common::pod_replaced()));
    tokio::spawn(AdsServer::new(rx, auth, XdsMetrics::default()).serve(listener));
    (addr, tx)
}

/// The first CDS response to a client with `identity` (if any), or why there is none.
async fn first_cds(
    addr: SocketAddr,
    ca: &str,
    identity: Option<&Pem>,
) -> Result<DiscoveryResponse, String> {
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(p) = identity {
        config = config.identity(Identity::from_pem(&p.cert, &p.key));
    }
    let endpoint = Endpoint::from_shared(format!("https://{addr}")).unwrap();
    let channel = endpoint.tls_config(config).map_err(|e| e.to_string())?;
    let channel = channel
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(1);
    let request = DiscoveryRequest {
        type_url: CLUSTER.to_string(),
        ..DiscoveryRequest::default()
    };
    tx.send(request).await.unwrap();
    let stream = client.stream_aggregated_resources(ReceiverStream::new(rx));
    let mut stream = stream
        .await
        .map_err(|e| format!("stream: {e}"))?
        .into_inner();
    match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
        Ok(Ok(Some(r))) => Ok(r),
        Ok(Ok(None)) => Err("stream closed".into()),
        Ok(Err(e)) => Err(format!("message: {e}")),
        Err(_) => Err("no response within 5 s".into()),
    }
}

#[tokio::test]
async fn only_a_client_with_a_certificate_the_ca_signed_is_served() {
    let pki = pki();
    let (addr, _keep) = serve(&pki).await;
    let refused = first_cds(addr, &pki.ca, None).await;
    assert!(refused.is_err(), "no client certificate: {refused:?}");
    let refused = first_cds(addr, &pki.ca, Some(&pki.stranger)).await;
    assert!(refused.is_err(), "another CA's certificate: {refused:?}");
    let cds = first_cds(addr, &pki.ca, Some(&pki.client)).await.unwrap();
    assert_eq!(cds.type_url, CLUSTER);
    assert!(!cds.resources.is_empty());
}

#[test]
fn off_loopback_the_server_needs_client_certificates_a_token_or_insecure() {
    let pki = pki();
    let open: SocketAddr = "0.0.0.0:18000".parse().unwrap();
    let tls_only = Auth::with_tls(open, None, Some(tls(&pki, false)), false);
    assert!(
        matches!(tls_only, Err(XdsError::Insecure { .. })),
        "TLS alone only encrypts"
    );
    assert!(Auth::with_tls(open, None, Some(tls(&pki, true)), false).is_ok());
    assert!(Auth::with_tls(open, Some("t".into()), Some(tls(&pki, false)), false).is_ok());
    assert!(matches!(
        Auth::new(open, None, false),
        Err(XdsError::Insecure { .. })
    ));
    assert!(Auth::new(open, None, true).is_ok());
}
