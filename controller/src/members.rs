//! Member clusters: where they come from (Argo CD cluster Secrets in the fleet, a members file)
//! and one kube client each.
//!
//! An Argo CD cluster Secret carries label `argocd.argoproj.io/secret-type: cluster` and data
//! `name` (the member id), `server` and `config` (JSON with `bearerToken` and `tlsClientConfig`
//! {`insecure`, `caData`, `certData`, `keyData`, `serverName`}). The zone comes from the Secret's
//! `fleetgate.io/zone` annotation or label (or `topology.kubernetes.io/zone`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;
use thiserror::Error;

/// Label that marks an Argo CD cluster Secret.
pub const ARGOCD_SECRET_TYPE: &str = "argocd.argoproj.io/secret-type";
/// Zone annotation/label on a cluster Secret.
pub const ZONE_KEY: &str = "fleetgate.io/zone";
/// Gateway-address annotation on a cluster Secret (`IP:PORT`): the member's network is not
/// flat, so its traffic goes to its own gateway rather than to pod IPs.
pub const GATEWAY_KEY: &str = "fleetgate.io/gateway-address";

/// How to reach a member's API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// From an Argo CD cluster Secret.
    Argo {
        server: String,
        config: ArgoClusterConfig,
    },
    /// A kubeconfig file (its current context).
    Kubeconfig(PathBuf),
    /// None known (offline render): the member exists but cannot be watched.
    None,
}

/// A member cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    pub id: String,
    pub zone: Option<String>,
    pub access: Access,
    /// The member's own gateway (`IP:PORT`) when its pod IPs are not reachable from the fleet
    /// gateway; see [`GATEWAY_KEY`].
    pub gateway: Option<SocketAddr>,
}

/// The `config` JSON of an Argo CD cluster Secret (the fields fleetgate uses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgoClusterConfig {
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub tls_client_config: ArgoTls,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgoTls {
    #[serde(default)]
    pub insecure: bool,
    /// Base64 PEM, as in a kubeconfig's `certificate-authority-data`.
    #[serde(default)]
    pub ca_data: Option<String>,
    #[serde(default)]
    pub cert_data: Option<String>,
    #[serde(default)]
    pub key_data: Option<String>,
    #[serde(default)]
    pub server_name: Option<String>,
}

#[derive(Debug, Error)]
pub enum MemberError {
    #[error("secret {secret}: {reason}")]
    Secret { secret: String, reason: String },
    #[error("members file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("members file {path}: {source}")]
    FileYaml {
        path: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("member {member}: {reason}")]
    Client { member: String, reason: String },
}

/// A member id the plugin takes: 1-253 of `[A-Za-z0-9._-]` (it names upstreams, metrics and the
/// decision header). Checked when a member is discovered, never inside derive.
pub fn check_member_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 253
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a usable member id (1-253 of A-Z a-z 0-9 . _ -)"
        ))
    }
}

/// One member per id: the first of each id wins (callers order by precedence: the members
/// file, then Secrets by name); each one dropped is reported with the source that named it.
pub fn dedup(candidates: Vec<(String, MemberSpec)>) -> (Vec<MemberSpec>, Vec<(String, String)>) {
    let mut seen: std::collections::BTreeMap<String, String> = Default::default();
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (source, m) in candidates {
        match seen.get(&m.id) {
            Some(first) => dropped.push((
                source,
                format!("member id {:?} is already taken by {first}; ignored", m.id),
            )),
            None => {
                seen.insert(m.id.clone(), source);
                kept.push(m);
            }
        }
    }
    (kept, dropped)
}

/// Is this Secret an Argo CD cluster Secret?
pub fn is_cluster_secret(s: &Secret) -> bool {
    s.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(ARGOCD_SECRET_TYPE))
        .is_some_and(|v| v == "cluster")
}

/// `Secret namespace/name`, as problems name it.
pub fn secret_name(s: &Secret) -> String {
    format!(
        "Secret {}/{}",
        s.metadata.namespace.as_deref().unwrap_or(""),
        s.metadata.name.as_deref().unwrap_or("")
    )
}

/// Read a member from an Argo CD cluster Secret.
pub fn from_argo_secret(s: &Secret) -> Result<MemberSpec, MemberError> {
    let secret = format!(
        "{}/{}",
        s.metadata.namespace.as_deref().unwrap_or(""),
        s.metadata.name.as_deref().unwrap_or("")
    );
    let err = |reason: String| MemberError::Secret {
        secret: secret.clone(),
        reason,
    };
    let field = |k: &str| -> Option<String> {
        if let Some(v) = s.data.as_ref().and_then(|d| d.get(k)) {
            return String::from_utf8(v.0.clone()).ok();
        }
        s.string_data.as_ref().and_then(|d| d.get(k)).cloned()
    };
    let id = field("name").ok_or_else(|| err("no data.name".into()))?;
    let id = id.trim().to_string();
    check_member_id(&id).map_err(|e| err(format!("data.name: {e}")))?;
    let server = field("server").ok_or_else(|| err("no data.server".into()))?;
    let config = match field("config") {
        Some(c) => serde_json::from_str(&c).map_err(|e| err(format!("data.config: {e}")))?,
        None => ArgoClusterConfig::default(),
    };
    let meta = &s.metadata;
    let zone = [ZONE_KEY, "topology.kubernetes.io/zone"]
        .iter()
        .find_map(|k| {
            meta.annotations
                .as_ref()
                .and_then(|a| a.get(*k))
                .or_else(|| meta.labels.as_ref().and_then(|l| l.get(*k)))
                .cloned()
        });
    let gateway = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(GATEWAY_KEY))
        .map(|g| parse_gateway(g).map_err(|e| err(format!("annotation {GATEWAY_KEY}: {e}"))))
        .transpose()?;
    Ok(MemberSpec {
        id,
        zone,
        gateway,
        access: Access::Argo {
            server: server.trim().to_string(),
            config,
        },
    })
}

/// One entry of a members file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    name: String,
    kubeconfig: PathBuf,
    #[serde(default)]
    zone: Option<String>,
    /// The member's gateway, `IP:PORT` (see [`GATEWAY_KEY`]).
    #[serde(default)]
    gateway: Option<String>,
}

/// An `IP:PORT` gateway address (EDS endpoints are addresses, not names).
fn parse_gateway(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not IP:PORT (a DNS name cannot be an EDS endpoint)"))
}

/// Read a members file: a YAML list of `{name, kubeconfig, zone}`; relative kubeconfig paths are
/// relative to the file.
pub fn from_file(path: &Path) -> Result<Vec<MemberSpec>, MemberError> {
    let text = std::fs::read_to_string(path).map_err(|source| MemberError::File {
        path: path.display().to_string(),
        source,
    })?;
    let entries: Vec<FileEntry> =
        serde_yaml::from_str(&text).map_err(|source| MemberError::FileYaml {
            path: path.display().to_string(),
            source,
        })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    entries
        .into_iter()
        .map(|e| {
            let fail = |reason: String| MemberError::Client {
                member: e.name.clone(),
                reason: format!("members file {}: {reason}", path.display()),
            };
            check_member_id(&e.name).map_err(fail)?;
            let gateway = e.gateway.as_deref().map(parse_gateway).transpose();
            let gateway = gateway.map_err(|r| fail(format!("gateway: {r}")))?;
            Ok(MemberSpec {
                id: e.name,
                zone: e.zone,
                gateway,
                access: Access::Kubeconfig(if e.kubeconfig.is_absolute() {
                    e.kubeconfig
                } else {
                    dir.join(e.kubeconfig)
                }),
            })
        })
        .collect()
}

/// Build the kube client of a member.
pub async fn client(spec: &MemberSpec) -> Result<kube::Client, MemberError> {
    let fail = |reason: String| MemberError::Client {
        member: spec.id.clone(),
        reason,
    };
    let config = match &spec.access {
        Access::None => return Err(fail("no access configured".into())),
        Access::Kubeconfig(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)
                .map_err(|e| fail(format!("{}: {e}", p.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| fail(e.to_string()))?
        }
        Access::Argo { server, config } => {
            let kc = argo_kubeconfig(&spec.id, server, config).map_err(fail)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| fail(e.to_string()))?
        }
    };
    kube::Client::try_from(config).map_err(|e| fail(e.to_string()))
}

/// An Argo CD cluster config as a one-context kubeconfig (kube does the base64 and TLS).
fn argo_kubeconfig(
    id: &str,
    server: &str,
    c: &ArgoClusterConfig,
) -> Result<kube::config::Kubeconfig, String> {
    let t = &c.tls_client_config;
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": id, "cluster": {
            "server": server,
            "insecure-skip-tls-verify": t.insecure,
            "certificate-authority-data": t.ca_data,
            "tls-server-name": t.server_name,
        }}],
        "users": [{"name": id, "user": {
            "token": c.bearer_token,
            "client-certificate-data": t.cert_data,
            "client-key-data": t.key_data,
        }}],
        "contexts": [{"name": id, "context": {"cluster": id, "user": id}}],
        "current-context": id,
    });
    serde_json::from_value(strip_nulls(doc)).map_err(|e| e.to_string())
}

fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_yaml() -> &'static str {
        r#"
apiVersion: v1
kind: Secret
metadata:
  name: cluster-hz-a
  namespace: argocd
  labels: {argocd.argoproj.io/secret-type: cluster}
  annotations: {fleetgate.io/zone: cn-hangzhou-h}
stringData:
  name: hz-a
  server: https://10.0.0.1:6443
  config: '{"bearerToken":"t0k","tlsClientConfig":{"insecure":false,"caData":"Zm9v"}}'
"#
    }

    #[test]
    fn a_gateway_address_annotation_sends_the_member_through_its_gateway() {
        let with = |value: &str| {
            let yaml = secret_yaml().replace(
                "{fleetgate.io/zone: cn-hangzhou-h}",
                &format!(
                    "{{fleetgate.io/zone: cn-hangzhou-h, fleetgate.io/gateway-address: '{value}'}}"
                ),
            );
            from_argo_secret(&serde_yaml::from_str::<Secret>(&yaml).unwrap())
        };
        let m = with("47.96.10.21:443").unwrap();
        assert_eq!(m.gateway, Some("47.96.10.21:443".parse().unwrap()));
        let plain: Secret = serde_yaml::from_str(secret_yaml()).unwrap();
        assert_eq!(from_argo_secret(&plain).unwrap().gateway, None);
        let bad = with("gw.hz-a.example.com:443").unwrap_err().to_string();
        assert!(
            bad.contains("fleetgate.io/gateway-address") && bad.contains("not IP:PORT"),
            "{bad}"
        );
    }

    #[test]
    fn a_members_file_names_a_gateway_by_ip_and_port_or_is_refused() {
        let dir = std::env::temp_dir().join(format!("fleetgate-members-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("members.yaml");
        let good = "- {name: hz-a, kubeconfig: a.yaml, gateway: '[2001:db8::7]:8443'}\n- {name: hz-b, kubeconfig: b.yaml}\n";
        std::fs::write(&file, good).unwrap();
        let m = from_file(&file).unwrap();
        assert_eq!(m[0].gateway, Some("[2001:db8::7]:8443".parse().unwrap()));
        assert_eq!(m[1].gateway, None);
        std::fs::write(
            &file,
            "- {name: hz-a, kubeconfig: a.yaml, gateway: 'hz-a:8443'}\n",
        )
        .unwrap();
        let e = from_file(&file).unwrap_err().to_string();
        assert!(
            e.contains("hz-a") && e.contains("gateway") && e.contains("not IP:PORT"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn argo_cluster_secret_becomes_a_member() {
        let s: Secret = serde_yaml::from_str(secret_yaml()).unwrap();
        assert!(is_cluster_secret(&s));
        let m = from_argo_secret(&s).unwrap();
        assert_eq!(m.id, "hz-a");
        assert_eq!(m.zone.as_deref(), Some("cn-hangzhou-h"));
        let Access::Argo { server, config } = &m.access else {
            panic!("not argo")
        };
        assert_eq!(server, "https://10.0.0.1:6443");
        assert_eq!(config.bearer_token.as_deref(), Some("t0k"));
        assert_eq!(config.tls_client_config.ca_data.as_deref(), Some("Zm9v"));
        let kc = argo_kubeconfig(&m.id, server, config).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("hz-a"));
    }

    #[test]
    fn member_ids_the_plugin_refuses_are_rejected_at_discovery() {
        for bad in ["My Cluster", "hz/a", "", "ü-cluster", &"x".repeat(254)] {
            let y = format!(
                "metadata: {{name: c, namespace: argocd}}\nstringData: {{name: {bad:?}, server: https://x}}\n"
            );
            let s: Secret = serde_yaml::from_str(&y).unwrap();
            let e = from_argo_secret(&s).unwrap_err().to_string();
            assert!(
                e.contains("argocd/c") && e.contains("member id"),
                "{bad:?}: {e}"
            );
        }
        for good in ["hz-a", "cn_hangzhou.1", "A-9"] {
            assert!(check_member_id(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn a_duplicate_member_id_keeps_the_first_and_names_the_other() {
        let m = |id: &str| MemberSpec {
            id: id.to_string(),
            zone: None,
            gateway: None,
            access: Access::None,
        };
        let (kept, dropped) = dedup(vec![
            ("the members file".into(), m("hz-a")),
            ("Secret argocd/a".into(), m("hz-a")),
            ("Secret argocd/b".into(), m("hz-b")),
        ]);
        let ids: Vec<&str> = kept.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["hz-a", "hz-b"]);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].0, "Secret argocd/a");
        assert!(
            dropped[0].1.contains("the members file"),
            "{}",
            dropped[0].1
        );
    }

    #[test]
    fn secret_without_name_is_an_error_naming_the_secret() {
        let s: Secret = serde_yaml::from_str(
            "metadata: {name: broken, namespace: argocd}\nstringData: {server: x}\n",
        )
        .unwrap();
        let e = from_argo_secret(&s).unwrap_err().to_string();
        assert!(
            e.contains("argocd/broken") && e.contains("data.name"),
            "{e}"
        );
    }
}
