//! The pure core of d06.
//!
//! Normalised, pseudonymised [`Fact`]s go in; exact rollups come out. This
//! crate does no IO at all: no Kafka, no ClickHouse, no files, no clock.
//! Ingest produces its types, sinks consume them.

pub mod fact;
pub mod geo;

pub use fact::{Digest, Fact, FactKind, Indicator, Nanos};
pub use geo::{AreaId, AreaLevel, Geography, GeographyVersion};
pub mod recount;
pub mod rollup;
pub mod snapshot;
pub use rollup::{DayCounts, Days, Outcome, RollupKey, Shard, PREFETCH_AHEAD};
pub mod calendar;
pub mod hotline;
pub use calendar::WorkCalendar;
pub use hotline::{HotlineCounts, Tickets};
pub mod baseline_csv;
pub mod coverage;
pub mod plan;
pub mod plan_edit;
pub mod plan_source;
pub mod plans;
pub mod standing;
pub use coverage::{CoverageRow, LagRule, Status};
pub use plan::{Baseline, Plan, PlanError};
pub use plans::{Plans, ProvincePlan};
