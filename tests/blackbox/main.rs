//! The black-box test binary: the real `d06` against the real broker,
//! ClickHouse and Prometheus. Start the services first
//! (`bash deploy/local/start.sh`; the README's test command does it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alerting;
mod baselines;
mod board;
mod broker_restart;
mod campaign_bounds;
mod cluster;
mod contract;
mod crash;
mod daily_alerts;
mod dashboards;
mod deployment;
mod disk_full;
mod events;
mod exit_codes;
mod faults;
mod harness;
mod hotline;
mod hotline_crosscheck;
mod hotline_oracle;
mod national;
mod outputs;
mod private;
mod provinces;
mod proxy;
mod readback;
mod readiness;
mod refusals;
mod reports;
mod retention;
mod scale_out;
mod simulate_guard;
mod snapshots;
mod stale_claim;
mod stalled_consumer;
mod tls;
mod tls_alerts;
mod transactions;
mod validate_progress;
mod webhook;
mod yaml;
