//! Live mode's rewrite of a message: `occurred_at` moved to the wall clock
//! and the production time appended.

use std::fmt::{self, Write as _};

use chrono::DateTime;

use crate::clock::{ms_to_utc, LOCAL_OFFSET_SECS, SEC};

/// Live mode: moves `occurred_at` by `shift_ms`, written local to the
/// millisecond, and appends `"sim_produced_at_ms"`. `None` when the message
/// has no readable `occurred_at` (left as it is).
pub fn restamp(payload: &[u8], shift_ms: i64, produced_at_ms: i64) -> Option<Vec<u8>> {
    const FIELD: &[u8] = br#""occurred_at":""#;
    let start = payload.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let len = payload[start..].iter().position(|b| *b == b'"')?;
    let old = std::str::from_utf8(&payload[start..start + len]).ok()?;
    let t = DateTime::parse_from_rfc3339(old).ok()?;
    let new_ms = t.timestamp_millis().checked_add(shift_ms)?;
    let shifted = ms_to_utc(new_ms + i64::from(LOCAL_OFFSET_SECS) * SEC).naive_utc();
    let new = format!("{}+07:00", shifted.format("%Y-%m-%dT%H:%M:%S%.3f"));
    let close = payload.iter().rposition(|b| *b == b'}')?;
    if close < start + len {
        return None;
    }
    let mut out = Vec::with_capacity(payload.len() + 40);
    out.extend_from_slice(&payload[..start]);
    out.extend_from_slice(new.as_bytes());
    out.extend_from_slice(&payload[start + len..close]);
    let _ = write!(ByteWriter(&mut out), r#","sim_produced_at_ms":{produced_at_ms}"#);
    out.extend_from_slice(&payload[close..]);
    Some(out)
}

struct ByteWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn restamp_moves_occurred_at_and_adds_the_production_time() {
        let p = br#"{"schema":"d06.event.v1","event_id":"e1","occurred_at":"2024-05-09T08:15:30+07:00","subject":"x"}"#;
        let out = restamp(p, 1_500, 1_795_392_000_000).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"schema":"d06.event.v1","event_id":"e1","occurred_at":"2024-05-09T08:15:31.500+07:00","subject":"x","sim_produced_at_ms":1795392000000}"#
        );
        // UTC in, local out; a negative shift.
        let z = br#"{"occurred_at":"2024-05-09T01:15:30.123Z"}"#;
        let out = restamp(z, -123, 5).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"occurred_at":"2024-05-09T08:15:30.000+07:00","sim_produced_at_ms":5}"#
        );
        assert_eq!(restamp(br#"{"occurred_at":"2024-05-09T08:15:30"}"#, 1, 1), None, "no offset: left alone");
        assert_eq!(restamp(br#"{"occurred_at":"2024-05-09T08:15:30+07:00""#, 1, 1), None, "truncated");
    }
}
