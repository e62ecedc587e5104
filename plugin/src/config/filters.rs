//! The Gateway API filters a route may carry, validated: header edits, URL rewrite, redirect
//! and direct response. They keep their wire types, with header names lower-cased.

use super::at::At;
use super::validate::header_name;
use super::wire::{DirectV1, HeaderEditV1, HeaderV1, PathKind, PathRewriteV1, RouteV1};
use super::wire::{RedirectV1, RewriteV1};
use super::ConfigError;

/// What a route does besides choosing a backend.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub request_headers: Option<HeaderEditV1>,
    pub response_headers: Option<HeaderEditV1>,
    pub rewrite: Option<RewriteV1>,
    /// Answer with a redirect; wins over `direct` (validation allows only one) and backends.
    pub redirect: Option<RedirectV1>,
    pub direct: Option<DirectV1>,
}

/// Validate route `r`'s filters. `routing` = the headers the plugin itself sets (a request
/// edit may not touch them: it would undo the routing).
pub(super) fn build(path: &At, r: &RouteV1, routing: &[String]) -> Result<Filters, ConfigError> {
    let prefix_only = r.paths.iter().all(|p| p.kind == PathKind::Prefix);
    if r.rewrite.is_some() && r.redirect.is_some() {
        return Err(ConfigError::new(
            path.field("rewrite"),
            "a route either rewrites or redirects, not both",
        ));
    }
    if r.redirect.is_some() && r.direct.is_some() {
        return Err(ConfigError::new(
            path.field("direct"),
            "a route either redirects or answers directly, not both",
        ));
    }
    let edit = |field, e: &Option<HeaderEditV1>, reserved| match e {
        Some(e) => header_edit(&path.field(field), e, reserved).map(Some),
        None => Ok(None),
    };
    Ok(Filters {
        request_headers: edit("request_headers", &r.request_headers, routing)?,
        response_headers: edit("response_headers", &r.response_headers, &[])?,
        rewrite: match &r.rewrite {
            Some(w) => Some(rewrite(&path.field("rewrite"), w, prefix_only)?),
            None => None,
        },
        redirect: match &r.redirect {
            Some(d) => Some(redirect(&path.field("redirect"), d, prefix_only)?),
            None => None,
        },
        direct: match &r.direct {
            Some(d) => check_direct(&path.field("direct"), d).map(|()| Some(d.clone()))?,
            None => None,
        },
    })
}

fn header_edit(
    path: &At,
    e: &HeaderEditV1,
    reserved: &[String],
) -> Result<HeaderEditV1, ConfigError> {
    let name = |p: &At, n: &str| {
        let n = header_name(p, n)?;
        if reserved.contains(&n) {
            return Err(ConfigError::new(
                p,
                format!("\"{n}\" is set by the plugin itself"),
            ));
        }
        Ok(n)
    };
    let pairs = |field, list: &[HeaderV1]| {
        let at = path.field(field);
        list.iter()
            .enumerate()
            .map(|(i, h)| {
                let p = at.index(i);
                header_value(&p.field("value"), &h.value)?;
                Ok(HeaderV1 {
                    name: name(&p.field("name"), &h.name)?,
                    value: h.value.clone(),
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()
    };
    let at_remove = path.field("remove");
    Ok(HeaderEditV1 {
        set: pairs("set", &e.set)?,
        add: pairs("add", &e.add)?,
        remove: e
            .remove
            .iter()
            .enumerate()
            .map(|(i, n)| name(&at_remove.index(i), n))
            .collect::<Result<_, _>>()?,
    })
}

/// Header values go on the wire as they are: no line breaks or NULs.
fn header_value(path: &At, v: &str) -> Result<(), ConfigError> {
    if v.bytes().any(|c| c == b'\r' || c == b'\n' || c == 0) {
        return Err(ConfigError::new(path, "must not contain CR, LF or NUL"));
    }
    Ok(())
}

fn rewrite(path: &At, w: &RewriteV1, prefix_only: bool) -> Result<RewriteV1, ConfigError> {
    Ok(RewriteV1 {
        hostname: hostname(&path.field("hostname"), &w.hostname)?,
        path: path_rewrite(&path.field("path"), &w.path, prefix_only)?,
    })
}

fn redirect(path: &At, d: &RedirectV1, prefix_only: bool) -> Result<RedirectV1, ConfigError> {
    if !matches!(d.status, 301 | 302 | 303 | 307 | 308) {
        return Err(ConfigError::new(
            path.field("status"),
            format!(
                "{} is not a redirect status (301, 302, 303, 307 or 308)",
                d.status
            ),
        ));
    }
    if let Some(s) = d
        .scheme
        .as_deref()
        .filter(|s| !matches!(*s, "http" | "https"))
    {
        return Err(ConfigError::new(
            path.field("scheme"),
            format!("\"{s}\" is not http or https"),
        ));
    }
    if d.port == Some(0) {
        return Err(ConfigError::new(path.field("port"), "must be 1-65535"));
    }
    Ok(RedirectV1 {
        hostname: hostname(&path.field("hostname"), &d.hostname)?,
        path: path_rewrite(&path.field("path"), &d.path, prefix_only)?,
        ..d.clone()
    })
}

pub(super) fn check_direct(path: &At, d: &DirectV1) -> Result<(), ConfigError> {
    if !(200..=599).contains(&d.status) {
        return Err(ConfigError::new(
            path.field("status"),
            format!("{} is not a final HTTP status (200-599)", d.status),
        ));
    }
    Ok(())
}

/// A replacement host: a plain host name (no wildcard, no port), lower-cased.
fn hostname(path: &At, h: &Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(h) = h else { return Ok(None) };
    match crate::route::check_host(h) {
        Ok(host) if !host.starts_with("*.") => Ok(Some(host)),
        _ => Err(ConfigError::new(
            path,
            format!("\"{h}\" is not a host name"),
        )),
    }
}

/// A replacement path: starts with `/` (a prefix replacement may also be empty), holds no
/// query, fragment or whitespace; a prefix replacement needs every path of the route to be
/// `Prefix` (it replaces the matched prefix).
fn path_rewrite(
    path: &At,
    p: &Option<PathRewriteV1>,
    prefix_only: bool,
) -> Result<Option<PathRewriteV1>, ConfigError> {
    let (at, value) = match p {
        None => return Ok(None),
        Some(PathRewriteV1::Full(v)) => (path.field("full"), v),
        Some(PathRewriteV1::Prefix(v)) => {
            if !prefix_only {
                return Err(ConfigError::new(
                    path.field("prefix"),
                    "replaces the matched prefix, so every path of the route must be Prefix",
                ));
            }
            if v.is_empty() {
                return Ok(p.clone());
            }
            (path.field("prefix"), v)
        }
    };
    let clean = value.starts_with('/')
        && !value
            .bytes()
            .any(|c| c == b'?' || c == b'#' || c.is_ascii_whitespace() || c.is_ascii_control());
    if !clean {
        return Err(ConfigError::new(
            at,
            format!("\"{value}\" must start with '/' and hold no query, fragment or spaces"),
        ));
    }
    Ok(p.clone())
}
