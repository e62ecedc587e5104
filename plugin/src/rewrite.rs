//! Gateway API path rewriting (`ReplaceFullPath`, `ReplacePrefixMatch`), for URL rewrites and
//! redirects alike. The query is kept as it came.

use crate::config::PathRewriteV1;

/// A request `:path` split before its query (or fragment): (`/a/b`, `?x=1`).
pub fn split_query(path: &str) -> (&str, &str) {
    path.split_at(path.find(['?', '#']).unwrap_or(path.len()))
}

/// The request's `:path` with `rw` applied; `prefix` is the route path that matched (only a
/// `Prefix` rewrite reads it, and validation allows one only on all-`Prefix` routes).
pub fn new_path(rw: &PathRewriteV1, prefix: &str, request: &str) -> String {
    let (path, query) = split_query(request);
    let mut out = match rw {
        PathRewriteV1::Full(p) => p.clone(),
        PathRewriteV1::Prefix(p) => replace_prefix(path, prefix, p),
    };
    out.push_str(query);
    out
}

/// `ReplacePrefixMatch`: the matched prefix becomes `with`. Prefixes match whole elements and
/// ignore a trailing slash, so what follows the prefix is empty or starts with `/`; a trailing
/// slash of `with` is dropped so that `/` + `/bar` does not become `//bar`.
pub fn replace_prefix(path: &str, prefix: &str, with: &str) -> String {
    let matched = prefix.trim_end_matches('/');
    let rest = path.get(matched.len()..).unwrap_or("");
    let mut out = String::with_capacity(with.len() + rest.len() + 1);
    out.push_str(with.trim_end_matches('/'));
    out.push_str(rest);
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Gateway API spec's `ReplacePrefixMatch` table, and the root prefix.
    #[test]
    fn prefix_replacement_follows_the_gateway_api_table() {
        for (path, prefix, with, want) in [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
            ("/foo/bar", "/foo", "/", "/bar"),
            ("/bar", "/", "/xyz", "/xyz/bar"),
            ("/", "/", "/xyz", "/xyz/"),
        ] {
            assert_eq!(
                replace_prefix(path, prefix, with),
                want,
                "{path} {prefix} -> {with}"
            );
        }
    }

    #[test]
    fn the_query_is_kept_and_a_full_rewrite_replaces_the_whole_path() {
        let prefix = PathRewriteV1::Prefix("/v2".into());
        assert_eq!(
            new_path(&prefix, "/api", "/api/items?id=1&x"),
            "/v2/items?id=1&x"
        );
        assert_eq!(new_path(&prefix, "/api", "/api?id=1"), "/v2?id=1");
        let full = PathRewriteV1::Full("/static/index.html".into());
        assert_eq!(new_path(&full, "/", "/a/b?q=2"), "/static/index.html?q=2");
        assert_eq!(split_query("/a#f"), ("/a", "#f"));
    }
}
