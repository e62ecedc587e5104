//! Config schema v1: the JSON wire format ([`wire`]) and the validated, indexed form
//! ([`Config`]) the routing engine runs on. Parsing never panics; a rejected config names the
//! JSON path and the reason.

pub mod validate;
pub mod wire;

pub use validate::{
    Backend, Cluster, Condition, Config, Matcher, Pin, Route, Service, Source, UpstreamId,
};
pub use wire::*;

use std::fmt;

/// Why a config was rejected: where (a JSON path such as `routes[2].backends[0].weight`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parse and validate a JSON config.
pub fn parse(json: &[u8]) -> Result<Config, ConfigError> {
    let wire = parse_wire(json)?;
    Config::try_from(wire)
}

/// Parse the JSON shape only (the path of a shape error is kept).
pub fn parse_wire(json: &[u8]) -> Result<ConfigV1, ConfigError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let wire: ConfigV1 = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde_path_to_error reports "." for the root.
        let path = if path == "." { String::new() } else { path };
        ConfigError::new(path, inner.to_string())
    })?;
    de.end()
        .map_err(|e| ConfigError::new("", format!("trailing data after the config: {e}")))?;
    Ok(wire)
}
