//! ingest: the contract edge of d06.
//!
//! `contract` decodes and validates EVENTS-v1 messages into
//! [`aggregator::Fact`]s or typed [`Rejection`]s; `pseudonym` replaces
//! subjects by keyed digests; `phone` normalises Vietnamese mobile numbers.

pub mod contract;
pub mod kafka;
pub mod phone;
pub mod pseudonym;

pub use contract::{validate_lines, validate_lines_with, LinesRead, Reason, Rejection, Validator, ValidatorConfig};
pub use phone::normalise_phone;
pub use pseudonym::{KeyError, Pseudonymiser, SecretKey, SubjectKind};
