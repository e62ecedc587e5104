//! The `run` flags of `--higress` (flattened into `run`'s flags by `main.rs`).

use std::collections::BTreeSet;

use super::{check_template, HigressOptions, ServicePortRef, HIGRESS_UPSTREAM_TEMPLATE};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct HigressFlags {
    /// Write, in this (the gateway's) cluster, the per-member Services, EndpointSlices and
    /// header-matching Ingresses Higress needs; the upstream template defaults to
    /// `outbound|{port}||{service}-{cluster}.{namespace}.svc.cluster.local`.
    #[arg(long, env = "FLEETGATE_HIGRESS")]
    pub higress: bool,
    /// Namespaces the generated objects may be written in (and are garbage-collected in),
    /// comma-separated: the fleet Ingresses' namespaces and the controller's.
    #[arg(long, env = "FLEETGATE_HIGRESS_NAMESPACES", value_delimiter = ',')]
    pub higress_namespaces: Vec<String>,
    /// IngressClass of the generated Ingresses.
    #[arg(
        long,
        env = "FLEETGATE_HIGRESS_INGRESS_CLASS",
        default_value = "higress"
    )]
    pub higress_ingress_class: String,
    /// The controller's Service, `namespace/name:port`, kept as an Envoy cluster for the
    /// plugin's config pull ("" = none).
    #[arg(
        long,
        env = "FLEETGATE_HIGRESS_CONTROLLER_SERVICE",
        default_value = "fleetgate-system/fleetgate-controller:8080"
    )]
    pub higress_controller_service: String,
}

impl HigressFlags {
    /// The upstream template to derive with: the one set, else the Higress form with
    /// `--higress`.
    pub fn upstream_template(&self, set: Option<&str>, default: &str) -> String {
        match (set, self.higress) {
            (Some(t), _) => t.to_string(),
            (None, true) => HIGRESS_UPSTREAM_TEMPLATE.to_string(),
            (None, false) => default.to_string(),
        }
    }

    /// The generation's options (`None` without `--higress`), checked.
    pub fn options(&self, upstream_template: &str) -> Result<Option<HigressOptions>, String> {
        if !self.higress {
            return Ok(None);
        }
        check_template(upstream_template)?;
        let namespaces: BTreeSet<String> = (self.higress_namespaces.iter())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if namespaces.is_empty() {
            return Err("--higress needs --higress-namespaces (where the objects go)".into());
        }
        let controller_service = match self.higress_controller_service.trim() {
            "" => None,
            s => Some(parse_service_port(s)?),
        };
        Ok(Some(HigressOptions {
            ingress_class: self.higress_ingress_class.clone(),
            upstream_template: upstream_template.to_string(),
            namespaces,
            controller_service,
        }))
    }
}

/// `namespace/name:port`.
fn parse_service_port(s: &str) -> Result<ServicePortRef, String> {
    let bad = || format!("--higress-controller-service {s:?} is not namespace/name:port");
    let (ns, rest) = s.split_once('/').ok_or_else(bad)?;
    let (name, port) = rest.split_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    if ns.is_empty() || name.is_empty() {
        return Err(bad());
    }
    Ok(ServicePortRef {
        namespace: ns.to_string(),
        name: name.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(namespaces: &[&str], controller: &str) -> HigressFlags {
        HigressFlags {
            higress: true,
            higress_namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            higress_ingress_class: "higress".into(),
            higress_controller_service: controller.into(),
        }
    }

    #[test]
    fn the_higress_template_is_the_default_only_with_higress_and_no_template_set() {
        let f = flags(&["default"], "");
        assert_eq!(f.upstream_template(None, "d"), HIGRESS_UPSTREAM_TEMPLATE);
        assert_eq!(f.upstream_template(Some("t"), "d"), "t");
        let off = HigressFlags::default();
        assert_eq!(off.upstream_template(None, "d"), "d");
        assert_eq!(off.options("anything"), Ok(None));
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        let t = HIGRESS_UPSTREAM_TEMPLATE;
        assert!(flags(&[], "")
            .options(t)
            .unwrap_err()
            .contains("--higress-namespaces"));
        for bad in ["ns/name", "name:80", "ns/name:0", "/name:80"] {
            let e = flags(&["default"], bad).options(t).unwrap_err();
            assert!(e.contains("namespace/name:port"), "{bad}: {e}");
        }
        let o = flags(&["default", " staging"], "a/b:8080")
            .options(t)
            .unwrap()
            .unwrap();
        assert_eq!(
            o.namespaces,
            ["default", "staging"].map(String::from).into()
        );
        assert_eq!(o.controller_service.unwrap().port, 8080);
    }
}
