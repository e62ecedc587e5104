//! Config schema v1: the JSON wire format ([`wire`]) and the validated, indexed form
//! ([`Config`]) the routing engine runs on. Parsing never panics; a rejected config names the
//! JSON path and the reason.

mod at;
mod filters;
mod ready;
pub mod state;
pub mod validate;
pub mod wire;

pub use filters::Filters;
pub use ready::Ready;
pub use state::{parse_state, StateV1};

pub use validate::{
    Backend, BackendState, Cluster, Condition, Config, Matcher, Pin, Route, Service, Slot, Source,
    UpstreamId,
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

/// The request headers the gateway's routes are written against, fixed by the static config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderNames {
    pub cluster: String,
    pub mirror: String,
}

impl HeaderNames {
    pub fn of(cfg: &Config) -> HeaderNames {
        HeaderNames {
            cluster: cfg.cluster_header.clone(),
            mirror: cfg.mirror_header.clone(),
        }
    }

    /// A pulled config may not rename them: Envoy's `cluster_header` routes (and mirror
    /// policies) name these headers, so a silent switch would 404 every request.
    pub fn check_pulled(&self, pulled: &Config) -> Result<(), ConfigError> {
        for (field, fixed, got) in [
            ("cluster_header", &self.cluster, &pulled.cluster_header),
            ("mirror_header", &self.mirror, &pulled.mirror_header),
        ] {
            if fixed != got {
                return Err(ConfigError::new(
                    field,
                    format!(
                        "\"{got}\" differs from \"{fixed}\" of the static config; the gateway's routes use that name, so only the static config can change it"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Larger documents are refused unread: parsing one would cost the VM several times its size.
/// 48 MiB holds 10,000 routes x 20 member clusters (about 21 MB) with room for long names.
pub const MAX_CONFIG_BYTES: usize = 48 << 20;

/// Parse and validate a JSON config.
pub fn parse(json: &[u8]) -> Result<Config, ConfigError> {
    let wire = parse_wire(json)?;
    Config::try_from(wire)
}

/// Parse the JSON shape only. Shape and syntax errors name the JSON path where they happened;
/// serde_json's recursion limit rejects absurdly deep nesting.
pub fn parse_wire(json: &[u8]) -> Result<ConfigV1, ConfigError> {
    parse_json(json)
}

/// [`parse_wire`] for any document type (the config, the state document).
fn parse_json<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, ConfigError> {
    if json.len() > MAX_CONFIG_BYTES {
        let (mib, max) = (json.len() >> 20, MAX_CONFIG_BYTES >> 20);
        return Err(ConfigError::new(
            "",
            format!("the document is {mib} MiB, more than the {max} MiB this plugin reads"),
        ));
    }
    // One reading, path tracked: a second, untracked reading for the common case would double
    // every `Deserialize` impl in the .wasm (about 100 KB), which would not leave the 512 KB
    // budget room for the speed-optimised build that keeps config load within its target.
    let mut de = serde_json::Deserializer::from_slice(json);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de)
        .map_err(|e| ConfigError::new(json_path(e.path()), without_position(e.inner())))?;
    de.end()
        .map_err(|e| ConfigError::new("", without_position(&e)))?;
    Ok(value)
}

/// `routes[0].backends[1].cluster`; the root is the empty path. A syntax error between two
/// members leaves an unknown last segment: the enclosing value is the place to look.
fn json_path(p: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in p.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => push_key(&mut out, key),
            Segment::Enum { variant } => push_key(&mut out, variant),
            Segment::Unknown => {}
        }
    }
    out
}

fn push_key(out: &mut String, key: &str) {
    if !out.is_empty() {
        out.push('.');
    }
    out.push_str(key);
}

/// serde_json's message without " at line L column C": the path says where.
fn without_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}
