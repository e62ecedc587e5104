//! Config schema v1: the JSON wire format ([`wire`]) and the validated, indexed form
//! ([`Config`]) the routing engine runs on. Parsing never panics; a rejected config names the
//! JSON path and the reason.

pub mod decode;
mod locate;
pub mod regex;
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

/// Parse the JSON shape only: syntax errors are located by position, shape errors by the
/// decoder, which tracks the path as it walks.
pub fn parse_wire(json: &[u8]) -> Result<ConfigV1, ConfigError> {
    let tree = serde_json::from_slice::<decode::Json>(json).map_err(|e| {
        let at = locate::offset_of(json, e.line(), e.column());
        // serde_json reports an error just past the offending token; step back into it.
        // At the end of the text no field is to blame: the document is cut short.
        let path = if e.is_eof() {
            String::new()
        } else {
            locate::path_at(json, at.saturating_sub(1))
        };
        let msg = e.to_string();
        // Drop serde_json's " at line L column C": the path says where.
        let msg = match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        ConfigError::new(path, msg)
    })?;
    decode::config(&tree)
}
