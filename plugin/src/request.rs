//! The request as the engine sees it: read once from the host, then matched purely.

use std::collections::HashMap;

use crate::config::{Condition, Source};

/// What the engine needs from a request. Header names are lower-case.
pub trait RequestView {
    fn authority(&self) -> &str;
    /// `:path`, query included.
    fn path(&self) -> &str;
    /// First value of a header, if present and valid UTF-8.
    fn header(&self, name: &str) -> Option<&str>;
    /// `:method`; asked only by routes limited to a method.
    fn method(&self) -> &str {
        self.header(":method").unwrap_or("")
    }
    /// `:scheme` (`http` if absent); asked only to build a redirect.
    fn scheme(&self) -> &str {
        self.header(":scheme").unwrap_or("http")
    }
}

/// A plain request (native tests, `explain`, and the filter once it read the headers it needs).
#[derive(Debug, Clone, Default)]
pub struct SimpleRequest {
    pub authority: String,
    pub path: String,
    pub headers: HashMap<String, String>,
}

impl SimpleRequest {
    pub fn new(authority: &str, path: &str) -> Self {
        SimpleRequest {
            authority: authority.to_string(),
            path: path.to_string(),
            headers: HashMap::new(),
        }
    }
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .insert(name.to_ascii_lowercase(), value.to_string());
        self
    }
}

impl RequestView for SimpleRequest {
    fn authority(&self) -> &str {
        &self.authority
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Value of cookie `name` in a `Cookie` header (`a=1; b=2`).
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// Raw value of query parameter `name` in a path (`/p?a=1&b=2`); not percent-decoded.
pub fn query<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let q = path.split_once('?')?.1;
    let q = q.split('#').next().unwrap_or("");
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// The value a condition looks at, if the request has it.
pub fn value_of<'a, R: RequestView + ?Sized>(req: &'a R, source: &Source) -> Option<&'a str> {
    match source {
        Source::Header(h) => req.header(h),
        Source::Cookie(c) => req.header("cookie").and_then(|v| cookie(v, c)),
        Source::Query(q) => query(req.path(), q),
    }
}

pub fn matches<R: RequestView + ?Sized>(req: &R, cond: &Condition) -> bool {
    cond.matcher.matches_value(value_of(req, &cond.source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_queries_are_found_by_exact_name() {
        assert_eq!(cookie("a=1; canary=always; b=2", "canary"), Some("always"));
        assert_eq!(cookie("xcanary=1", "canary"), None);
        assert_eq!(cookie("", "canary"), None);
        assert_eq!(query("/p?x=1&cluster=hz-b#f", "cluster"), Some("hz-b"));
        assert_eq!(query("/p?flag", "flag"), Some(""));
        assert_eq!(query("/p", "flag"), None);
    }
}
