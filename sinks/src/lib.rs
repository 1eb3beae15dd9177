//! Outputs of d06: ClickHouse over HTTP(S) and the Prometheus endpoint.
//!
//! - [`clickhouse`]: versioned schema migrations, batched idempotent writes of
//!   per-shard rows (`ReplacingMergeTree(version)`), views that sum the shards
//!   into the public `coverage_daily` and `hotline_daily` (OUTPUTS-v1), and a
//!   retry loop that separates retryable from permanent failures.
//! - [`prometheus`]: the metrics registry (pipeline metrics and the business
//!   gauges of OUTPUTS-v1), readiness, and the HTTP server for `/metrics`,
//!   `/healthz` and `/readyz`.
//! - [`board`]: the built-in live board for the IOC wall (`/board`, its JSON
//!   state and server-sent events), served by the same HTTP server.
//! - [`tls`]: secrets from an environment variable or a file, and a private
//!   CA to trust, for the HTTPS clients (ClickHouse, Alertmanager).
//!
//! This crate knows nothing of subjects or of the aggregator's state: it takes
//! its own row and gauge structs, which the pipeline fills. Only
//! [`aggregator::Indicator`] and [`aggregator::AreaLevel`] cross the boundary.

pub mod board;
pub mod clickhouse;
pub mod prometheus;
pub mod tls;

pub use crate::clickhouse::{
    ClickHouseConfig, ClickHouseSink, CoverageDailyRow, CoverageShardRow, DeadLetterRow, HotlineDailyRow,
    HotlineShardRow, PlanRow, SinkError, WriteBatch,
};
pub use crate::prometheus::{CoverageGauges, Health, HttpServer, Metrics};
