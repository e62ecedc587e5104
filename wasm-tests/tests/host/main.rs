//! Proves the test host: the noop filter, the probe guest and the minimal router guest.

mod callouts;
mod lifecycle;
mod probe;
mod router;
mod shared_data;
