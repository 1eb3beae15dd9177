//! What the simulator emits: one [`SimMessage`] per Kafka record, with the
//! source topic it belongs to ([`Kind`]).

use chrono::{DateTime, FixedOffset, Utc};
use ingest::contract::Reason;
use ingest::kafka::Topics;

/// Which source topic a message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `cccd.application`.
    Cccd,
    /// `vneid.account`.
    Vneid,
    /// `sim.swap`, `sim.signature`.
    Sim,
    /// `hotline.ticket`.
    Hotline,
}

impl Kind {
    /// Every kind, in the topics' order.
    pub const ALL: [Kind; 4] = [Kind::Cccd, Kind::Vneid, Kind::Sim, Kind::Hotline];

    /// The topic name in `topics`.
    pub fn topic(self, topics: &Topics) -> &str {
        match self {
            Kind::Cccd => &topics.cccd,
            Kind::Vneid => &topics.vneid,
            Kind::Sim => &topics.sim,
            Kind::Hotline => &topics.hotline,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// One simulated message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimMessage {
    /// Its topic.
    pub kind: Kind,
    /// The Kafka key (the subject, as producers do), if any.
    pub key: Option<String>,
    /// Contract-v1 JSON (or, for some invalid messages, not JSON at all).
    pub payload: Vec<u8>,
    /// Event time as written (for a message whose `occurred_at` is
    /// unreadable, the time it was emitted).
    pub occurred_at: DateTime<FixedOffset>,
    /// When it reaches the broker in simulated time: the stream is in this
    /// order. Equal to `occurred_at` but for late events, re-sends and some
    /// invalid messages.
    pub emitted_at: DateTime<Utc>,
    /// For an invalid message, the reason d06 must reject it with.
    pub invalid: Option<Reason>,
}
