//! The local fleet: member "clusters" on loopback, the fleetgate controller's derive, ADS
//! server and long-poll endpoint, and the local gateway as an ADS client running the real
//! plugin, plus the load generator
//! and figures the demo, the end-to-end tests and the benchmark share.

pub mod control;
pub mod figures;
pub mod fleet;
pub mod load;
pub mod member;
pub mod report;
pub mod timed;

pub use fleet::{Fleet, FleetSpec};
