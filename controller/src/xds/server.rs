//! The state-of-the-world ADS server.
