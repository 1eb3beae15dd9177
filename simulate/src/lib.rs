//! `d06 simulate`: a deterministic simulation of the 2024 "4 phủ" campaign in
//! Bình Phước, as contract-v1 messages, and a producer that writes it to
//! the Kafka topics; also the 1022 ticket streams that reproduce the
//! province's hotline reports ([`scenario`]).
//!
//! [`Simulator`] is an iterator of [`SimMessage`]s (bytes, topic kind, key)
//! in the order a broker would receive them, generated lazily from a seed:
//! the same [`SimConfig`] always gives the same bytes. What it models:
//!
//! - **Volume.** Each indicator's province figure of the 2024 plan
//!   ([`Targets`], `deploy/plans/binh-phuoc-2024.toml`) spread over the
//!   districts by their number of communes (the plan's own weights), times
//!   the district's pace, times [`SimConfig::scale`]: at scale 1.0 a 90-day
//!   campaign is ≈ 1.4 million messages. `smartphone_4g` follows from the
//!   `sim.swap` events (85 % smartphones): the plan's 777,150 target (90 % of
//!   adults) cannot be reached by swaps of 2G subscribers alone (211,000):
//!   with the plan's unknown baseline no district is called behind on it;
//!   with the demo's simulated baseline ([`baseline`]) every district is.
//! - **Pace.** Districts in [`SimConfig::lagging_districts`] run at
//!   [`SimConfig::lagging_pace`] (default 0.75) of their share, the others
//!   at [`SimConfig::on_track_pace`] (1.07), each ± 3 %.
//! - **Rhythm.** Local working hours (07:00–11:30, 13:00–17:00) are the
//!   busiest, evenings keep going ("90 ngày, đêm"), nights are nearly idle;
//!   Saturdays run at 55 %, Sundays and 30/4, 1/5 at 35 % and 30 %; the pace
//!   ramps linearly from 85 % to 115 % of the average over the campaign.
//! - **Lifecycles.** `cccd.application` received → approved (97 %) or
//!   rejected → issued; `vneid.account` registered → activated (92 %, level 2;
//!   10 % more level-1 accounts), 2 % activated again later; `sim.swap` once
//!   per subscriber (1 % a corrected second record); `sim.signature`
//!   installed, 3 % revoked later, 40 % of those reinstalled; 1022 tickets
//!   received → spam, answered or forwarded → resolved, some reopened, some
//!   escalated to leadership, some overdue.
//! - **Subjects** come from a bounded pool per district (citizens and
//!   subscribers, sized from the adult population), each with a home commune,
//!   so distinct counts are meaningful; a few events name a subject again.
//! - **Input defects**, all at emission: ~2 % identical re-sends
//!   ([`SimConfig::duplicate_rate`]), ~3 % late events (emitted 1 minute to 3
//!   days after they occurred, [`SimConfig::late_rate`]), ~0.5 % invalid
//!   messages ([`SimConfig::invalid_rate`]) covering every contract reason,
//!   each carrying its intended reason in [`SimMessage::invalid`]; phone
//!   numbers in all three spellings (`0…` 70 %, `+84…` 20 %, `84…` 10 %);
//!   areas as commune (90 %), commune and district (7 %) or district only
//!   (3 %); `occurred_at` at `+07:00` to the second (90 %) or `Z` with
//!   milliseconds.
//!
//! [`to_kafka`] writes a simulator to the four source topics, as fast as the
//! broker takes it or at a fixed rate. At a fixed rate the messages become a
//! live stream: each `occurred_at` is moved to the wall clock (keeping how
//! late or early the event is relative to the stream) and an extra field
//! `"sim_produced_at_ms"` records when it was handed to the producer (extra
//! fields are allowed by the contract and ignored by d06; it carries no
//! personal data).
//!
//! Subjects are synthetic: citizen ids are 12 digits starting with `070`
//! (Bình Phước; nationally, each province's own code), phone numbers use
//! real carrier prefixes; any resemblance to real people's numbers is
//! chance, which is why the output is only ever written to the project's
//! own topics.
//!
//! # Map
//!
//! - `config`: [`Targets`] and [`SimConfig`], what to simulate.
//! - `population`: subject pools per district, synthetic ids and numbers;
//!   `rhythm`: hours, weekends and holidays; `rng`: splitmix64;
//!   `clock`: simulated time and how it is written.
//! - `simulator`: [`Simulator`], the schedule; its `lifecycle` (each
//!   subject's events) and `encode` (the JSON writer); `defect`: invalid
//!   messages on purpose; `message`: [`SimMessage`] and [`Kind`].
//! - `kafka`: [`to_kafka`], the writer; [`restamp`] (live mode) and
//!   [`Summary`].
//! - [`National`]: every province at once (`--scope national`), one
//!   simulator per province scaled by population, merged in emission order.
//! - [`scenario`]: the hotline report generator and its messages.
//! - [`baseline`]: [`BaselineShares`], a simulated pre-campaign baseline
//!   per district, as baseline-file rows (`d06 demo` imports them).
//! - `cli`: [`SimulateArgs`] and [`command`], `d06 simulate` itself.
//! - [`progress`]: [`Progress`], a bar on a terminal or plain lines, for
//!   `d06 simulate` and `d06 validate`.

pub mod baseline;
mod cli;
mod clock;
mod config;
mod defect;
#[cfg(test)]
mod fingerprints;
pub mod guard;
mod kafka;
mod message;
mod national;
mod national_plans;
mod population;
pub mod progress;
mod restamp;
mod rhythm;
mod rng;
pub mod scenario;
mod simulator;
mod summary;
#[cfg(test)]
mod tests;

pub use baseline::BaselineShares;
pub use cli::{command, Scope, Setup, SimulateArgs};
pub use config::{Identity, SimConfig, Targets};
pub use kafka::to_kafka;
pub use message::{Kind, SimMessage};
pub use national::National;
pub use national_plans::{national_plans, PlanFile};
pub use progress::{Progress, Unit};
pub use restamp::restamp;
pub use simulator::Simulator;
pub use summary::Summary;
