//! The gateway's listener, its route table and the plugin (by ECDS).
//!
//! Envoy does not route by host or path here: the plugin does, and names the upstream in the
//! `cluster_header`; the route only reads that header. Retries follow
//! `examples/envoy/envoy.yaml`: idempotent methods retry anything that suggests a failing
//! member, other methods only failures where the upstream cannot have seen the request; each
//! retry moves to the next member of the aggregate (`previous_priorities`).

use std::net::SocketAddr;

use envoy_types::util::pack_any;

use super::clusters::{socket, WASM_SOURCE_CLUSTER};
use super::pb::envoy::config::core::v3::{
    async_data_source, data_source, http_uri, AsyncDataSource, DataSource, ExtensionConfigSource,
    HttpUri, RemoteDataSource, TypedExtensionConfig,
};
use super::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use super::pb::envoy::config::route::v3::retry_policy::{
    retry_host_predicate, retry_priority, RetryHostPredicate, RetryPriority,
};
use super::pb::envoy::config::route::v3::route::Action;
use super::pb::envoy::config::route::v3::route_action::{ClusterSpecifier, RequestMirrorPolicy};
use super::pb::envoy::config::route::v3::route_match::PathSpecifier;
use super::pb::envoy::config::route::v3::{
    header_matcher, HeaderMatcher, RetryPolicy, Route, RouteAction, RouteConfiguration, RouteMatch,
    VirtualHost,
};
use super::pb::envoy::extensions::filters::http::router::v3::Router;
use super::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use super::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use super::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use super::pb::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
use super::pb::envoy::extensions::wasm::v3::{
    plugin_config, FailurePolicy, PluginConfig, VmConfig,
};
use super::pb::envoy::r#type::matcher::v3::{string_matcher, RegexMatcher, StringMatcher};
use super::pb::google::protobuf::{StringValue, UInt32Value};
use super::resources::WasmCode;
use super::{ads, duration};

/// Name of the listener, of its route configuration and of the plugin's ECDS resource.
pub const LISTENER_NAME: &str = "fleetgate";
pub const ROUTE_NAME: &str = "fleetgate";
pub const PLUGIN_NAME: &str = "fleetgate";
/// Type URL of the plugin's filter config (what ECDS must deliver).
pub const WASM_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// The listener on `addr`: one HTTP connection manager with routes by RDS and the plugin by
/// ECDS (a plugin config change does not drain the listener).
pub fn listener(addr: SocketAddr) -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: LISTENER_NAME.to_string(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: ROUTE_NAME.to_string(),
        })),
        http_filters: vec![
            HttpFilter {
                name: PLUGIN_NAME.to_string(),
                config_type: Some(http_filter::ConfigType::ConfigDiscovery(
                    ExtensionConfigSource {
                        config_source: Some(ads()),
                        type_urls: vec![WASM_TYPE_URL.to_string()],
                        ..ExtensionConfigSource::default()
                    },
                )),
                ..HttpFilter::default()
            },
            HttpFilter {
                name: "envoy.filters.http.router".to_string(),
                config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                    Router::default(),
                ))),
                ..HttpFilter::default()
            },
        ],
        ..HttpConnectionManager::default()
    };
    Listener {
        name: LISTENER_NAME.to_string(),
        address: Some(socket(&addr.ip().to_string(), addr.port())),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
            }],
            ..FilterChain::default()
        }],
        ..Listener::default()
    }
}

/// Every host and path to the cluster the plugin named in `cluster_header`, mirrored to the
/// one in `mirror_header` when the plugin sets it.
pub fn route_config(cluster_header: &str, mirror_header: &str) -> RouteConfiguration {
    let idempotent = HeaderMatcher {
        name: ":method".to_string(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
            StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
                    regex: "GET|HEAD|OPTIONS".to_string(),
                    ..RegexMatcher::default()
                })),
                ..StringMatcher::default()
            },
        )),
        ..HeaderMatcher::default()
    };
    let safe = retry_policy(
        "connect-failure,reset,refused-stream,retriable-status-codes,gateway-error",
        &[503],
    );
    let unsafe_methods = retry_policy("connect-failure,refused-stream", &[]);
    RouteConfiguration {
        name: ROUTE_NAME.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: "fleetgate".to_string(),
            domains: vec!["*".to_string()],
            routes: vec![
                route(
                    "idempotent",
                    vec![idempotent],
                    cluster_header,
                    mirror_header,
                    safe,
                ),
                route(
                    "other-methods",
                    vec![],
                    cluster_header,
                    mirror_header,
                    unsafe_methods,
                ),
            ],
            ..VirtualHost::default()
        }],
        ..RouteConfiguration::default()
    }
}

fn route(
    name: &str,
    headers: Vec<HeaderMatcher>,
    cluster_header: &str,
    mirror_header: &str,
    retry: RetryPolicy,
) -> Route {
    let action = RouteAction {
        cluster_specifier: Some(ClusterSpecifier::ClusterHeader(cluster_header.to_string())),
        timeout: Some(duration(15)),
        request_mirror_policies: vec![RequestMirrorPolicy {
            cluster_header: mirror_header.to_string(),
            ..RequestMirrorPolicy::default()
        }],
        retry_policy: Some(retry),
        ..RouteAction::default()
    };
    Route {
        name: name.to_string(),
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::Prefix("/".to_string())),
            headers,
            ..RouteMatch::default()
        }),
        action: Some(Action::Route(action)),
        ..Route::default()
    }
}

/// Retries per request: with `previous_priorities` each goes to another member.
pub const RETRIES: u32 = 2;

/// [`RETRIES`] retries, each on another member (previous priorities) and another host.
fn retry_policy(retry_on: &str, status_codes: &[u32]) -> RetryPolicy {
    RetryPolicy {
        retry_on: retry_on.to_string(),
        num_retries: Some(UInt32Value { value: RETRIES }),
        per_try_timeout: Some(duration(5)),
        retriable_status_codes: status_codes.to_vec(),
        retry_priority: Some(RetryPriority {
            name: "envoy.retry_priorities.previous_priorities".to_string(),
            config_type: Some(retry_priority::ConfigType::TypedConfig(pack_any(
                PreviousPrioritiesConfig {
                    update_frequency: 1,
                },
            ))),
        }),
        retry_host_predicate: vec![RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".to_string(),
            config_type: Some(retry_host_predicate::ConfigType::TypedConfig(pack_any(
                PreviousHostsPredicate::default(),
            ))),
        }],
        host_selection_retry_max_attempts: 3,
        ..RetryPolicy::default()
    }
}

/// The plugin's filter config, delivered by ECDS: the `.wasm` and the plugin config JSON. The
/// VM id stays `fleetgate` so a config update reuses the VM (and its shared data).
pub fn plugin(config_json: &str, code: &WasmCode) -> TypedExtensionConfig {
    let code = match code {
        WasmCode::File(path) => async_data_source::Specifier::Local(DataSource {
            specifier: Some(data_source::Specifier::Filename(path.display().to_string())),
            ..DataSource::default()
        }),
        WasmCode::Remote { uri, sha256 } => {
            async_data_source::Specifier::Remote(RemoteDataSource {
                http_uri: Some(HttpUri {
                    uri: uri.clone(),
                    timeout: Some(duration(10)),
                    http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(
                        WASM_SOURCE_CLUSTER.to_string(),
                    )),
                }),
                sha256: sha256.clone(),
                ..RemoteDataSource::default()
            })
        }
    };
    let vm = VmConfig {
        vm_id: "fleetgate".to_string(),
        runtime: "envoy.wasm.runtime.v8".to_string(),
        code: Some(AsyncDataSource {
            specifier: Some(code),
        }),
        ..VmConfig::default()
    };
    let config = PluginConfig {
        name: PLUGIN_NAME.to_string(),
        vm: Some(plugin_config::Vm::VmConfig(vm)),
        configuration: Some(pack_any(StringValue {
            value: config_json.to_string(),
        })),
        // A dead VM is recreated for the next request (the plugin aborts on panic).
        failure_policy: FailurePolicy::FailReload as i32,
        ..PluginConfig::default()
    };
    TypedExtensionConfig {
        name: PLUGIN_NAME.to_string(),
        typed_config: Some(pack_any(Wasm {
            config: Some(config),
        })),
    }
}
