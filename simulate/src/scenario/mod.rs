//! Deterministic 1022 ticket histories that reproduce the province's hotline
//! reports, for tests, benchmarks and `d06 simulate --scenario`.
//!
//! A [`Scenario`] lists report periods, each with a [`Mix`] of ticket
//! outcomes, and the moment T the report was read at.
//! [`generate`] turns it into `hotline.ticket` facts spread over the
//! province's areas and the periods' days, with realistic histories:
//! specialist and leadership levels, escalations, forwarding, reopening,
//! tickets received outside working hours, on weekends and holidays, events
//! stamped a moment before their `received` event, later `received` events
//! under other ids (which the rules ignore), spam marks later lifted, and
//! producer retries (duplicated event ids). The same inputs always give the
//! same facts. [`messages`] writes such a stream out as EVENTS-v1 messages.

mod generate;
mod messages;
mod reports;
#[cfg(test)]
mod tests;

pub use generate::{generate, generate_with_ids, shuffle};
pub use messages::{messages, Which, CLOCK_TICKET};
pub use reports::{end_of_day, local_day, report_2023, report_2024, Late, Mix, Period, Scenario};
