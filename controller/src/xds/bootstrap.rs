//! The minimal Envoy bootstrap that points at the controller's ADS server.
