//! The black-box test binary: the real `d06` against the real broker,

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! ClickHouse and Prometheus. Start the services first
//! (`bash deploy/local/start.sh`; the README's test command does it).

mod contract;
mod events;
mod harness;
mod crash;
mod outputs;
mod reports;
mod alerting;
