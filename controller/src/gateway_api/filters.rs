//! A rule's HTTPRoute filters -> the plugin route's header edits, rewrite, redirect and mirror.
//! The plugin applies all of them itself, so they work on every Proxy-Wasm gateway, not only on
//! Envoy over xDS. A filter fleetgate cannot apply is an error for its rule: the spec forbids
//! skipping a filter, so the rule is not routed (the caller answers it with a 500).

use fleetgate_plugin::config::{HeaderEditV1, HeaderV1, PathRewriteV1, RedirectV1, RewriteV1};
use gateway_api::apis::standard::httproutes::{
    HttpRouteRulesFilters, HttpRouteRulesFiltersRequestHeaderModifier,
    HttpRouteRulesFiltersRequestMirror, HttpRouteRulesFiltersRequestRedirect,
    HttpRouteRulesFiltersRequestRedirectPathType as RedirectPathType,
    HttpRouteRulesFiltersRequestRedirectScheme as Scheme,
    HttpRouteRulesFiltersResponseHeaderModifier, HttpRouteRulesFiltersType as Type,
    HttpRouteRulesFiltersUrlRewrite, HttpRouteRulesFiltersUrlRewritePathType as RewritePathType,
};

/// What a rule's filters ask of the plugin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleFilters {
    pub request_headers: Option<HeaderEditV1>,
    pub response_headers: Option<HeaderEditV1>,
    pub rewrite: Option<RewriteV1>,
    pub redirect: Option<RedirectV1>,
    pub mirror: Option<Mirror>,
}

/// A `RequestMirror` filter: the backend as written and the share of requests mirrored.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: String,
    pub port: Option<i32>,
    pub percent: f64,
}

/// Read a rule's filters; `Err` names the first filter fleetgate cannot apply.
pub fn read(filters: &[HttpRouteRulesFilters]) -> Result<RuleFilters, String> {
    let mut out = RuleFilters::default();
    for (i, f) in filters.iter().enumerate() {
        let missing = || format!("filters[{i}]: type {:?} without its field", f.r#type);
        let twice = || format!("filters[{i}]: a second {:?} filter", f.r#type);
        match f.r#type {
            Type::RequestHeaderModifier => {
                let m = f.request_header_modifier.as_ref().ok_or_else(missing)?;
                set_once(&mut out.request_headers, request_edit(m), twice)?;
            }
            Type::ResponseHeaderModifier => {
                let m = f.response_header_modifier.as_ref().ok_or_else(missing)?;
                set_once(&mut out.response_headers, response_edit(m), twice)?;
            }
            Type::RequestRedirect => {
                let r = f.request_redirect.as_ref().ok_or_else(missing)?;
                set_once(&mut out.redirect, redirect(r)?, twice)?;
            }
            Type::UrlRewrite => {
                let r = f.url_rewrite.as_ref().ok_or_else(missing)?;
                set_once(&mut out.rewrite, rewrite(r), twice)?;
            }
            Type::RequestMirror => {
                let m = f.request_mirror.as_ref().ok_or_else(missing)?;
                let more = || format!("filters[{i}]: fleetgate mirrors to one backend per rule");
                set_once(&mut out.mirror, mirror(m)?, more)?;
            }
            Type::ExtensionRef | Type::Cors => {
                return Err(format!(
                    "filters[{i}]: filter type {:?} is not supported by fleetgate",
                    f.r#type
                ))
            }
        }
    }
    if out.redirect.is_some() && out.rewrite.is_some() {
        return Err("RequestRedirect and URLRewrite cannot be used together".to_string());
    }
    Ok(out)
}

fn set_once<T>(slot: &mut Option<T>, v: T, twice: impl Fn() -> String) -> Result<(), String> {
    if slot.is_some() {
        return Err(twice());
    }
    *slot = Some(v);
    Ok(())
}

/// Header lists of a modifier, as (name, value) pairs: the request and response modifiers are
/// distinct generated types of the same shape.
fn edit<'a>(
    set: impl Iterator<Item = (&'a str, &'a str)>,
    add: impl Iterator<Item = (&'a str, &'a str)>,
    remove: Option<&'a Vec<String>>,
) -> HeaderEditV1 {
    let header = |(name, value): (&str, &str)| HeaderV1 {
        name: name.to_ascii_lowercase(),
        value: value.to_string(),
    };
    HeaderEditV1 {
        set: set.map(header).collect(),
        add: add.map(header).collect(),
        remove: remove
            .into_iter()
            .flatten()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
    }
}

fn request_edit(m: &HttpRouteRulesFiltersRequestHeaderModifier) -> HeaderEditV1 {
    edit(
        m.set.iter().flatten().map(|h| (&*h.name, &*h.value)),
        m.add.iter().flatten().map(|h| (&*h.name, &*h.value)),
        m.remove.as_ref(),
    )
}

fn response_edit(m: &HttpRouteRulesFiltersResponseHeaderModifier) -> HeaderEditV1 {
    edit(
        m.set.iter().flatten().map(|h| (&*h.name, &*h.value)),
        m.add.iter().flatten().map(|h| (&*h.name, &*h.value)),
        m.remove.as_ref(),
    )
}

/// `ReplaceFullPath` / `ReplacePrefixMatch` with its value (the spec's CEL rules require it).
fn path(full: bool, full_path: &Option<String>, prefix: &Option<String>) -> Option<PathRewriteV1> {
    if full {
        full_path.clone().map(PathRewriteV1::Full)
    } else {
        prefix.clone().map(PathRewriteV1::Prefix)
    }
}

fn rewrite(r: &HttpRouteRulesFiltersUrlRewrite) -> RewriteV1 {
    RewriteV1 {
        hostname: r.hostname.clone(),
        path: r.path.as_ref().and_then(|p| {
            let full = p.r#type == RewritePathType::ReplaceFullPath;
            path(full, &p.replace_full_path, &p.replace_prefix_match)
        }),
    }
}

/// The spec: without a port, a redirect with a scheme goes to that scheme's well-known port
/// (which the plugin then leaves out of `Location`); without either, to the request's port.
fn redirect(r: &HttpRouteRulesFiltersRequestRedirect) -> Result<RedirectV1, String> {
    let scheme = r.scheme.as_ref().map(|s| match s {
        Scheme::Http => "http",
        Scheme::Https => "https",
    });
    let port = match (r.port, scheme) {
        (Some(p), _) => Some(u16::try_from(p).map_err(|_| format!("redirect port {p}"))?),
        (None, Some("https")) => Some(443),
        (None, Some(_)) => Some(80),
        (None, None) => None,
    };
    let status = r.status_code.unwrap_or(302);
    Ok(RedirectV1 {
        scheme: scheme.map(str::to_string),
        hostname: r.hostname.clone(),
        port,
        path: r.path.as_ref().and_then(|p| {
            let full = p.r#type == RedirectPathType::ReplaceFullPath;
            path(full, &p.replace_full_path, &p.replace_prefix_match)
        }),
        status: u16::try_from(status).map_err(|_| format!("redirect statusCode {status}"))?,
    })
}

/// `percent`, or `fraction` (denominator 100 unless given), as a percentage; absent = all.
fn mirror(m: &HttpRouteRulesFiltersRequestMirror) -> Result<Mirror, String> {
    let percent = match (&m.percent, &m.fraction) {
        (Some(p), _) => f64::from(*p),
        (None, Some(f)) => {
            let d = f.denominator.unwrap_or(100);
            if d <= 0 || f.numerator < 0 || f.numerator > d {
                return Err(format!("RequestMirror fraction {}/{d}", f.numerator));
            }
            100.0 * f64::from(f.numerator) / f64::from(d)
        }
        (None, None) => 100.0,
    };
    let b = &m.backend_ref;
    Ok(Mirror {
        group: b.group.clone(),
        kind: b.kind.clone(),
        namespace: b.namespace.clone(),
        name: b.name.clone(),
        port: b.port,
        percent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filters(v: serde_json::Value) -> Vec<HttpRouteRulesFilters> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn header_modifiers_keep_set_add_remove_apart_and_lower_case_names() {
        let f = read(&filters(json!([
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                "set": [{"name": "X-Env", "value": "prod"}],
                "add": [{"name": "X-Trace", "value": "1"}],
                "remove": ["X-Debug"]}},
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                "add": [{"name": "X-Served-By", "value": "fleetgate"}]}}
        ])))
        .unwrap();
        let req = f.request_headers.unwrap();
        assert_eq!(req.set[0].name, "x-env");
        assert_eq!(req.add[0].value, "1");
        assert_eq!(req.remove, vec!["x-debug"]);
        assert_eq!(f.response_headers.unwrap().add[0].name, "x-served-by");
    }

    #[test]
    fn a_redirect_with_a_scheme_and_no_port_goes_to_the_schemes_port() {
        let f = read(&filters(
            json!([{"type": "RequestRedirect", "requestRedirect": {
            "scheme": "https", "statusCode": 301}}]),
        ))
        .unwrap();
        let r = f.redirect.unwrap();
        assert_eq!(
            (r.scheme.as_deref(), r.port, r.status),
            (Some("https"), Some(443), 301)
        );
        let f = read(&filters(json!([{"type": "RequestRedirect", "requestRedirect": {
            "hostname": "example.org", "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}}])))
        .unwrap();
        let r = f.redirect.unwrap();
        assert_eq!((r.port, r.status), (None, 302));
        assert_eq!(r.path, Some(PathRewriteV1::Prefix("/v2".into())));
    }

    #[test]
    fn mirror_fraction_is_a_percentage() {
        let f = read(&filters(json!([{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": "shadow", "port": 80}, "fraction": {"numerator": 1, "denominator": 8}}}])))
        .unwrap();
        assert_eq!(f.mirror.unwrap().percent, 12.5);
    }

    #[test]
    fn what_cannot_be_applied_is_an_error_naming_the_filter() {
        let cases = [
            (
                json!([{"type": "ExtensionRef", "extensionRef": {"group": "x.io", "kind": "K", "name": "n"}}]),
                "ExtensionRef",
            ),
            (
                json!([{"type": "URLRewrite", "urlRewrite": {"hostname": "a"}},
                    {"type": "RequestRedirect", "requestRedirect": {"hostname": "b"}}]),
                "together",
            ),
            (
                json!([{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "a"}}},
                    {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "b"}}}]),
                "one backend",
            ),
            (json!([{"type": "RequestRedirect"}]), "without its field"),
        ];
        for (v, expect) in cases {
            let err = read(&filters(v)).unwrap_err();
            assert!(err.contains(expect), "{err}");
        }
    }
}
