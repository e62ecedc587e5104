//! Plugin-wide settings (header names, passive health, the default `when_unavailable`): from
//! flags, overridden by the ConfigMap our IngressClass names in `spec.parameters`. Every value
//! is checked by the plugin's own config validation, so what the controller accepts the
//! plugin accepts.

use std::collections::BTreeMap;

use fleetgate_plugin::config::{self as pcfg, PassiveHealthV1, WhenUnavailable};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::IngressClass;

/// What every route and the plugin as a whole share.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSettings {
    /// Must equal the header the gateway's routes use (Envoy `cluster_header`): the plugin
    /// refuses a pulled config that changes it.
    pub cluster_header: String,
    pub mirror_header: String,
    pub decision_header: Option<String>,
    pub passive_health: PassiveHealthV1,
    /// Default for routes without `fleetgate.io/when-unavailable`.
    pub when_unavailable: WhenUnavailable,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            cluster_header: pcfg::default_cluster_header(),
            mirror_header: pcfg::default_mirror_header(),
            decision_header: None,
            passive_health: PassiveHealthV1::default(),
            when_unavailable: WhenUnavailable::Reject,
        }
    }
}

/// Settings as text (flags or ConfigMap keys); `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct SettingsText {
    pub cluster_header: Option<String>,
    pub mirror_header: Option<String>,
    pub decision_header: Option<String>,
    /// `reject` or `panic`.
    pub when_unavailable: Option<String>,
    /// A JSON object of the plugin's `passive_health` fields (absent fields take defaults).
    pub passive_health: Option<String>,
}

/// ConfigMap keys.
const KEYS: [&str; 5] = [
    "cluster-header",
    "mirror-header",
    "decision-header",
    "when-unavailable",
    "passive-health",
];

impl SettingsText {
    /// Read a parameters ConfigMap; unknown keys are errors (a typo must not pass silently).
    pub fn from_configmap(cm: &ConfigMap) -> Result<SettingsText, String> {
        let empty = BTreeMap::new();
        let data = cm.data.as_ref().unwrap_or(&empty);
        if let Some(k) = data.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(format!("unknown key {k:?} (known: {})", KEYS.join(", ")));
        }
        let get = |k: &str| data.get(k).map(|v| v.trim().to_string());
        Ok(SettingsText {
            cluster_header: get("cluster-header"),
            mirror_header: get("mirror-header"),
            decision_header: get("decision-header"),
            when_unavailable: get("when-unavailable"),
            passive_health: get("passive-health"),
        })
    }

    /// Apply over `base`, checked by the plugin's validation (errors name the setting).
    pub fn apply(&self, base: &PluginSettings) -> Result<PluginSettings, String> {
        let mut out = base.clone();
        if let Some(v) = &self.cluster_header {
            out.cluster_header = v.clone();
        }
        if let Some(v) = &self.mirror_header {
            out.mirror_header = v.clone();
        }
        if let Some(v) = &self.decision_header {
            out.decision_header = (!v.is_empty()).then(|| v.clone());
        }
        if let Some(v) = &self.when_unavailable {
            out.when_unavailable = match v.as_str() {
                "reject" => WhenUnavailable::Reject,
                "panic" => WhenUnavailable::Panic,
                _ => return Err(format!("when-unavailable: {v:?} is not reject or panic")),
            };
        }
        let passive: serde_json::Value = match &self.passive_health {
            Some(text) => {
                serde_json::from_str(text).map_err(|e| format!("passive-health: not JSON: {e}"))?
            }
            None => serde_json::to_value(&out.passive_health).map_err(|e| e.to_string())?,
        };
        let probe = serde_json::json!({
            "version": 1,
            "cluster_header": out.cluster_header,
            "mirror_header": out.mirror_header,
            "decision_header": out.decision_header,
            "clusters": [{"id": "probe"}],
            "passive_health": passive,
            "routes": [{"name": "probe", "backends": [{"cluster": "probe", "upstream": "probe"}]}],
        });
        let wire = pcfg::parse_wire(probe.to_string().as_bytes())
            .and_then(|w| pcfg::Config::try_from(w.clone()).map(|_| w))
            .map_err(|e| e.to_string().replace('_', "-"))?;
        out.passive_health = wire.passive_health;
        Ok(out)
    }
}

/// The ConfigMap (namespace, name) our IngressClass names in `spec.parameters`, if any.
pub fn parameters_ref(class: &IngressClass) -> Option<Result<(String, String), String>> {
    let p = class.spec.as_ref()?.parameters.as_ref()?;
    if p.kind != "ConfigMap" || p.api_group.as_deref().is_some_and(|g| !g.is_empty()) {
        return Some(Err(format!(
            "spec.parameters: kind {:?} is not supported (only a core ConfigMap)",
            p.kind
        )));
    }
    match (p.scope.as_deref(), &p.namespace) {
        (Some("Namespace"), Some(ns)) => Some(Ok((ns.clone(), p.name.clone()))),
        _ => Some(Err(
            "spec.parameters: a ConfigMap needs scope: Namespace and a namespace".to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn configmap_values_override_and_are_checked_by_the_plugin() {
        let t = SettingsText::from_configmap(&cm(&[
            ("cluster-header", "x-gw-upstream"),
            ("when-unavailable", "panic"),
            ("passive-health", r#"{"failure_threshold": 3}"#),
        ]))
        .unwrap();
        let s = t.apply(&PluginSettings::default()).unwrap();
        assert_eq!(s.cluster_header, "x-gw-upstream");
        assert_eq!(s.when_unavailable, WhenUnavailable::Panic);
        assert_eq!(s.passive_health.failure_threshold, 3);
        assert_eq!(
            s.passive_health.base_ejection_seconds,
            PassiveHealthV1::default().base_ejection_seconds
        );
        assert_eq!(s.mirror_header, pcfg::default_mirror_header());
    }

    #[test]
    fn bad_settings_name_what_is_wrong() {
        let bad = [
            (("cluster-header", ":authority"), "cluster"),
            (("when-unavailable", "retry"), "when-unavailable"),
            (("passive-health", r#"{"failure_treshold": 3}"#), "treshold"),
            (("passive-health", "{"), "passive-health"),
        ];
        for ((k, v), named) in bad {
            let e = SettingsText::from_configmap(&cm(&[(k, v)]))
                .and_then(|t| t.apply(&PluginSettings::default()))
                .unwrap_err();
            assert!(e.contains(named), "{k}={v}: {e}");
        }
        let e = SettingsText::from_configmap(&cm(&[("cluster_header", "x")])).unwrap_err();
        assert!(e.contains("cluster_header"), "{e}");
    }
}
