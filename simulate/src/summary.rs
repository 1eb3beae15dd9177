//! What a run of the Kafka writer did, and how it is printed.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::local_offset;

/// What [`to_kafka`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages handed to the producer, per [`Kind`] (index = `Kind as usize`).
    pub per_kind: [u64; 4],
    /// Of those, invalid on purpose.
    pub invalid: u64,
    /// Payload bytes handed to the producer.
    pub bytes: u64,
    /// Messages the broker acknowledged.
    pub acked: u64,
    /// Messages that failed delivery.
    pub failed: u64,
    /// The first delivery error, if any.
    pub first_error: Option<String>,
    /// Wall time from the first send to the last acknowledgement.
    pub elapsed: Duration,
    /// Event time (as simulated) of the last message emitted.
    pub last_emitted: Option<DateTime<Utc>>,
}

impl Summary {
    /// Messages handed to the producer.
    pub fn sent(&self) -> u64 {
        self.per_kind.iter().sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "sent {} messages ({} cccd, {} vneid, {} sim, {} hotline; {} invalid on purpose), {:.1} MB",
            self.sent(),
            self.per_kind[0],
            self.per_kind[1],
            self.per_kind[2],
            self.per_kind[3],
            self.invalid,
            self.bytes as f64 / 1e6
        )?;
        writeln!(
            f,
            "acked {}, failed {} in {:.2} s: {:.0} msgs/s",
            self.acked,
            self.failed,
            secs,
            self.acked as f64 / secs
        )?;
        if let Some(t) = self.last_emitted {
            writeln!(f, "simulated up to {}", t.with_timezone(&local_offset()).format("%Y-%m-%d %H:%M %:z"))?;
        }
        if let Some(e) = &self.first_error {
            writeln!(f, "first delivery error: {e}")?;
        }
        Ok(())
    }
}
