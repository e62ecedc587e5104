//! The `Location` of a Gateway API `RequestRedirect`: the request's URL with the redirect's
//! parts replaced.

use crate::config::RedirectV1;
use crate::request::RequestView;
use crate::rewrite::new_path;

/// Scheme: the redirect's, else the request's (`http` if unknown). Host: the redirect's, else
/// the request's without its port. Port: the redirect's; else, if the redirect names a scheme,
/// that scheme's well-known port (the Gateway API's MUST: `https` alone means 443, not the
/// request's port); else the request's if it named one. Left out when it is the scheme's
/// default. Path: rewritten as the redirect says, else the request's; the query is kept.
/// `prefix` is the route path that matched.
pub fn location<R: RequestView + ?Sized>(r: &RedirectV1, prefix: &str, req: &R) -> String {
    let scheme = r.scheme.as_deref().unwrap_or_else(|| match req.scheme() {
        "" => "http",
        s => s,
    });
    let (req_host, req_port) = split_authority(req.authority());
    let host = r.hostname.as_deref().unwrap_or(req_host);
    let port = match (r.port, &r.scheme) {
        (Some(p), _) => Some(p),
        (None, Some(_)) => None,
        (None, None) => req_port,
    };
    let port = match port {
        Some(80) if scheme == "http" => None,
        Some(443) if scheme == "https" => None,
        p => p,
    };
    let path = match (&r.path, req.path()) {
        (Some(rw), p) => new_path(rw, prefix, p),
        (None, "") => "/".to_string(),
        (None, p) => p.to_string(),
    };
    match port {
        Some(port) => format!("{scheme}://{host}:{port}{path}"),
        None => format!("{scheme}://{host}{path}"),
    }
}

/// Host (an IPv6 literal keeps its brackets) and port of an `:authority`.
fn split_authority(a: &str) -> (&str, Option<u16>) {
    match a.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.starts_with('[') || host.ends_with(']')) =>
        {
            (host, port.parse().ok())
        }
        _ => (a, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PathRewriteV1;
    use crate::request::SimpleRequest;

    fn redirect(scheme: Option<&str>, host: Option<&str>, port: Option<u16>) -> RedirectV1 {
        RedirectV1 {
            scheme: scheme.map(Into::into),
            hostname: host.map(Into::into),
            port,
            path: None,
            status: 301,
        }
    }

    #[test]
    fn scheme_host_and_port_follow_the_request_unless_replaced() {
        let req = |authority: &str, scheme: Option<&str>| {
            let r = SimpleRequest::new(authority, "/a/b?x=1");
            match scheme {
                Some(s) => r.with_header(":scheme", s),
                None => r,
            }
        };
        for (r, request, want) in [
            (
                redirect(None, None, None),
                req("shop.io", None),
                "http://shop.io/a/b?x=1",
            ),
            (
                redirect(None, None, None),
                req("shop.io:8080", Some("https")),
                "https://shop.io:8080/a/b?x=1",
            ),
            (
                redirect(Some("https"), None, None),
                req("shop.io", Some("http")),
                "https://shop.io/a/b?x=1",
            ),
            (
                redirect(Some("https"), None, None),
                req("shop.io:8080", None),
                "https://shop.io/a/b?x=1",
            ),
            (
                redirect(Some("http"), None, None),
                req("shop.io:443", Some("https")),
                "http://shop.io/a/b?x=1",
            ),
            (
                redirect(None, None, None),
                req("shop.io:443", Some("https")),
                "https://shop.io/a/b?x=1",
            ),
            (
                redirect(None, None, None),
                req("shop.io:80", Some("https")),
                "https://shop.io:80/a/b?x=1",
            ),
            (
                redirect(None, Some("new.io"), None),
                req("shop.io:8080", None),
                "http://new.io:8080/a/b?x=1",
            ),
            (
                redirect(None, None, Some(80)),
                req("shop.io:8080", None),
                "http://shop.io/a/b?x=1",
            ),
            (
                redirect(Some("https"), None, Some(8443)),
                req("shop.io", None),
                "https://shop.io:8443/a/b?x=1",
            ),
            (
                redirect(None, None, None),
                req("[::1]:8080", None),
                "http://[::1]:8080/a/b?x=1",
            ),
            (
                redirect(None, None, Some(9000)),
                req("[::1]", None),
                "http://[::1]:9000/a/b?x=1",
            ),
        ] {
            assert_eq!(location(&r, "/", &request), want, "{r:?} {request:?}");
        }
    }

    #[test]
    fn the_path_is_rewritten_as_the_redirect_says_and_the_query_kept() {
        let mut r = redirect(None, None, None);
        r.path = Some(PathRewriteV1::Prefix("/new".into()));
        let req = SimpleRequest::new("shop.io", "/old/page?id=7");
        assert_eq!(location(&r, "/old", &req), "http://shop.io/new/page?id=7");
        r.path = Some(PathRewriteV1::Full("/".into()));
        assert_eq!(location(&r, "/old", &req), "http://shop.io/?id=7");
        r.path = None;
        assert_eq!(
            location(&r, "/", &SimpleRequest::new("shop.io", "")),
            "http://shop.io/"
        );
    }
}
