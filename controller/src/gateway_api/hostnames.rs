//! Hostname intersection of a listener and a route, as the Gateway API specifies it: a
//! wildcard (`*.example.com`) is a suffix match over one or more labels; the effective
//! hostnames of a route on a listener are the most specific of each matching pair.

/// A hostname that is absent or `*` accepts every host.
fn is_any(h: &str) -> bool {
    h.is_empty() || h == "*"
}

/// `host` (exact or wildcard) falls under the wildcard `wild` (`*.suffix`).
fn under(host: &str, wild: &str) -> bool {
    let suffix = &wild[1..]; // ".example.com"
    host.len() > suffix.len() && host.ends_with(suffix)
}

/// The intersection of one listener hostname and one route hostname, `None` if disjoint.
pub fn intersect<'a>(listener: &'a str, route: &'a str) -> Option<&'a str> {
    let (lw, rw) = (listener.starts_with("*."), route.starts_with("*."));
    match () {
        _ if is_any(listener) => Some(route),
        _ if is_any(route) || listener.eq_ignore_ascii_case(route) => Some(listener),
        _ if lw && under(route, listener) => Some(route),
        _ if rw && under(listener, route) => Some(listener),
        _ => None,
    }
}

/// The hostnames a route serves on a listener (empty: none intersect). A route without
/// hostnames takes the listener's; `*` means every host.
pub fn effective(listener: Option<&str>, route: &[String]) -> Vec<String> {
    let listener = listener.unwrap_or("");
    let mut out: Vec<String> = if route.is_empty() {
        vec![if is_any(listener) { "*" } else { listener }.to_string()]
    } else {
        let hits = route.iter().filter_map(|r| intersect(listener, r));
        hits.map(|h| if is_any(h) { "*" } else { h }.to_ascii_lowercase())
            .collect()
    };
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersections_follow_the_spec_examples() {
        for (listener, route, want) in [
            ("", "foo.example.com", Some("foo.example.com")),
            (
                "foo.example.com",
                "foo.example.com",
                Some("foo.example.com"),
            ),
            ("foo.example.com", "bar.example.com", None),
            (
                "*.example.com",
                "test.example.com",
                Some("test.example.com"),
            ),
            (
                "*.example.com",
                "foo.test.example.com",
                Some("foo.test.example.com"),
            ),
            ("*.example.com", "*.example.com", Some("*.example.com")),
            (
                "*.example.com",
                "*.foo.example.com",
                Some("*.foo.example.com"),
            ),
            (
                "*.foo.example.com",
                "*.example.com",
                Some("*.foo.example.com"),
            ),
            ("*.example.com", "example.com", None),
            ("*.example.com", "test.example.net", None),
            ("foo.example.com", "*.example.com", Some("foo.example.com")),
            ("example.com", "*.example.com", None),
            ("*", "foo.example.com", Some("foo.example.com")),
            ("foo.example.com", "*", Some("foo.example.com")),
            (
                "Foo.Example.com",
                "foo.example.com",
                Some("Foo.Example.com"),
            ),
        ] {
            assert_eq!(intersect(listener, route), want, "{listener} ~ {route}");
        }
    }

    #[test]
    fn effective_hostnames_of_a_route_on_a_listener() {
        let hosts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(effective(None, &[]), hosts(&["*"]));
        assert_eq!(
            effective(Some("*.example.com"), &[]),
            hosts(&["*.example.com"])
        );
        let route = hosts(&["a.example.com", "b.example.net", "*.example.com"]);
        assert_eq!(
            effective(Some("*.example.com"), &route),
            hosts(&["*.example.com", "a.example.com"])
        );
        assert!(effective(Some("foo.example.org"), &route).is_empty());
        assert_eq!(effective(None, &route), {
            let mut r = route.clone();
            r.sort();
            r
        });
    }
}
