//! The route table the workers read, as Envoy's RDS route configuration holds it for the
//! subset fleetgate emits: every request goes to the cluster named in `cluster_header`,
//! optionally mirrored to the one in a mirror header; the first route whose method matcher
//! accepts the request decides the retry policy. Fixed for the direct constructor, replaced
//! by RDS in xDS mode; swapped whole, so a request sees one table.

use std::sync::{Arc, PoisonError, RwLock};

use crate::retry::RetryPolicy;

/// One route: the methods it matches (`None` = any) and its retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    pub name: String,
    pub methods: Option<Vec<String>>,
    pub retry: RetryPolicy,
}

impl RouteRule {
    fn matches(&self, method: &str) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|methods| methods.iter().any(|m| m == method))
    }
}

/// Every route, in match order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    /// The request header naming the cluster (Envoy `cluster_header`), lower case.
    pub cluster_header: String,
    /// The request header naming the mirror cluster (`request_mirror_policies[].cluster_header`).
    pub mirror_header: Option<String>,
    pub rules: Vec<RouteRule>,
}

impl RouteTable {
    /// One route for every method.
    pub fn single(cluster_header: &str, retry: RetryPolicy) -> Self {
        RouteTable {
            cluster_header: cluster_header.to_ascii_lowercase(),
            mirror_header: None,
            rules: vec![RouteRule {
                name: "default".to_owned(),
                methods: None,
                retry,
            }],
        }
    }

    /// The first route matching `method`; `None` = no route (Envoy answers 404, flag NR).
    pub fn rule(&self, method: &str) -> Option<&RouteRule> {
        self.rules.iter().find(|r| r.matches(method))
    }
}

/// The current table, shared by every worker and replaced whole.
#[derive(Debug, Clone)]
pub struct Routes(Arc<RwLock<Arc<RouteTable>>>);

impl Routes {
    pub fn new(table: RouteTable) -> Self {
        Routes(Arc::new(RwLock::new(Arc::new(table))))
    }

    pub fn current(&self) -> Arc<RouteTable> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn set(&self, table: RouteTable) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_route_whose_methods_match_decides() {
        let table = RouteTable {
            cluster_header: "x-up".into(),
            mirror_header: None,
            rules: vec![
                RouteRule {
                    name: "idempotent".into(),
                    methods: Some(vec!["GET".into(), "HEAD".into()]),
                    retry: RetryPolicy::default(),
                },
                RouteRule {
                    name: "other".into(),
                    methods: None,
                    retry: RetryPolicy::none(),
                },
            ],
        };
        assert_eq!(table.rule("GET").unwrap().name, "idempotent");
        assert_eq!(table.rule("POST").unwrap().name, "other");
        let only_get = RouteTable {
            rules: table.rules[..1].to_vec(),
            ..table
        };
        assert!(only_get.rule("POST").is_none());
    }
}
