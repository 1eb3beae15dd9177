//! The records of the internal facts topic (`d06.facts.v1`): what stage 1
//! (the router) writes and stage 2 (the shards) reads.
//!
//! Every record starts with a format version and the deployment's identity
//! fingerprint, so a shard refuses facts written under another key,
//! geography, time zone, horizon or shard count instead of splitting
//! subjects silently. Layout (little endian):
//!
//! ```text
//! version u8 (= 1) | kind u8 | identity u64 | body
//!   kind 0, a fact:     source topic len u16 + bytes | source partition i32 | source offset i64 | Fact::encode
//!   kind 1, a clock:    newest occurred_at i64 (the event clock T, broadcast to every partition)
//!   kind 2, identity:   incarnation u64 | UTF-8 description (the first record of partition 0)
//! ```
//!
//! Positions are next offsets in Kafka's sense; a fact carries the offset of
//! the source message it came from.

use aggregator::{Fact, Nanos};

/// The one format version written today.
pub const FORMAT_VERSION: u8 = 1;

/// One record of the facts topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FactsRecord {
    /// A validated, pseudonymised fact and the source message it came from.
    Fact {
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: i32,
        /// Source offset.
        offset: i64,
        /// The fact.
        fact: Fact,
    },
    /// The newest `occurred_at` stage 1 has committed: each shard takes the maximum.
    Clock(Nanos),
    /// The deployment identity, written once as the first record of partition 0.
    Identity {
        /// Random at topic creation: a store made from another incarnation of the topic is stale.
        incarnation: u64,
        /// What the fingerprint covers, for error messages.
        description: String,
    },
}

/// Why a facts record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Written by another d06 format.
    #[error("facts record format {0}, this d06 reads format {FORMAT_VERSION}")]
    Version(u8),
    /// Written under another deployment identity.
    #[error(
        "facts record written under identity {found:016x}, this instance has {expected:016x}: \
         another pseudonymisation key, geography, time zone, horizon or shard count"
    )]
    Identity {
        /// The record's fingerprint.
        found: u64,
        /// Ours.
        expected: u64,
    },
    /// Not a facts record at all.
    #[error("corrupt facts record: {0}")]
    Corrupt(&'static str),
}

impl FactsRecord {
    /// Appends the encoded record to `out` (cleared first).
    pub fn encode(&self, identity: u64, out: &mut Vec<u8>) {
        out.clear();
        out.push(FORMAT_VERSION);
        let kind = match self {
            FactsRecord::Fact { .. } => 0u8,
            FactsRecord::Clock(_) => 1,
            FactsRecord::Identity { .. } => 2,
        };
        out.push(kind);
        out.extend_from_slice(&identity.to_le_bytes());
        match self {
            FactsRecord::Fact { topic, partition, offset, fact } => {
                let t = topic.as_bytes();
                out.extend_from_slice(&(t.len().min(u16::MAX as usize) as u16).to_le_bytes());
                out.extend_from_slice(&t[..t.len().min(u16::MAX as usize)]);
                out.extend_from_slice(&partition.to_le_bytes());
                out.extend_from_slice(&offset.to_le_bytes());
                fact.encode(out);
            }
            FactsRecord::Clock(t) => out.extend_from_slice(&t.to_le_bytes()),
            FactsRecord::Identity { incarnation, description } => {
                out.extend_from_slice(&incarnation.to_le_bytes());
                out.extend_from_slice(description.as_bytes());
            }
        }
    }

    /// Decodes a record, checking its format and (unless `expected` is `None`) its identity.
    pub fn decode(buf: &[u8], expected: Option<u64>) -> Result<FactsRecord, RecordError> {
        let version = *buf.first().ok_or(RecordError::Corrupt("empty"))?;
        if version != FORMAT_VERSION {
            return Err(RecordError::Version(version));
        }
        let kind = *buf.get(1).ok_or(RecordError::Corrupt("truncated"))?;
        let identity = read_u64(buf, 2)?;
        if let Some(expected) = expected {
            if identity != expected {
                return Err(RecordError::Identity { found: identity, expected });
            }
        }
        let body = &buf[10..];
        match kind {
            0 => {
                let len = u16::from_le_bytes(take(body, 0)?) as usize;
                let topic = body.get(2..2 + len).ok_or(RecordError::Corrupt("truncated"))?;
                let topic = std::str::from_utf8(topic).map_err(|_| RecordError::Corrupt("topic not UTF-8"))?;
                let partition = i32::from_le_bytes(take(body, 2 + len)?);
                let offset = i64::from_le_bytes(take(body, 6 + len)?);
                let (fact, used) =
                    Fact::decode(&body[14 + len..]).map_err(|_| RecordError::Corrupt("fact does not decode"))?;
                if 14 + len + used != body.len() {
                    return Err(RecordError::Corrupt("trailing bytes"));
                }
                Ok(FactsRecord::Fact { topic: topic.to_owned(), partition, offset, fact })
            }
            1 => Ok(FactsRecord::Clock(i64::from_le_bytes(take(body, 0)?))),
            2 => {
                let incarnation = read_u64(body, 0)?;
                let description = String::from_utf8_lossy(&body[8..]).into_owned();
                Ok(FactsRecord::Identity { incarnation, description })
            }
            _ => Err(RecordError::Corrupt("unknown record kind")),
        }
    }

    /// The identity fingerprint of an encoded record, without decoding the rest.
    pub fn identity_of(buf: &[u8]) -> Result<u64, RecordError> {
        read_u64(buf, 2)
    }
}

fn take<const N: usize>(buf: &[u8], at: usize) -> Result<[u8; N], RecordError> {
    buf.get(at..at + N).and_then(|s| s.try_into().ok()).ok_or(RecordError::Corrupt("truncated"))
}

fn read_u64(buf: &[u8], at: usize) -> Result<u64, RecordError> {
    Ok(u64::from_le_bytes(take(buf, at)?))
}

/// The fingerprint stamped on every facts record: a 64-bit hash of
/// everything that decides which shard and which area a fact lands in.
pub fn fingerprint(parts: &[&str]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.digest()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aggregator::fact::{CccdStage, FactKind};
    use aggregator::{AreaId, Digest};

    fn fact() -> Fact {
        Fact {
            event_id: "e-1".into(),
            subject: Digest([7; 16]),
            occurred_at: 1_712_700_000_000_000_000,
            day: chrono::NaiveDate::from_ymd_opt(2024, 4, 10).unwrap(),
            area: AreaId(3),
            kind: FactKind::Cccd { stage: CccdStage::Received },
        }
    }

    #[test]
    fn every_kind_round_trips_and_identity_is_checked() {
        let records = [
            FactsRecord::Fact { topic: "d06.cccd.v1".into(), partition: 2, offset: 41, fact: fact() },
            FactsRecord::Clock(1_712_700_000_000_000_123),
            FactsRecord::Identity { incarnation: 99, description: "pre2025|Asia/Ho_Chi_Minh".into() },
        ];
        let mut buf = Vec::new();
        for r in &records {
            r.encode(0xabc, &mut buf);
            assert_eq!(&FactsRecord::decode(&buf, Some(0xabc)).unwrap(), r);
            assert_eq!(FactsRecord::identity_of(&buf).unwrap(), 0xabc);
            assert_eq!(
                FactsRecord::decode(&buf, Some(0xdef)).unwrap_err(),
                RecordError::Identity { found: 0xabc, expected: 0xdef }
            );
            if !matches!(r, FactsRecord::Identity { .. }) {
                // The identity record's description runs to the end; the others have fixed ends.
                assert!(FactsRecord::decode(&buf[..buf.len() - 1], Some(0xabc)).is_err());
            }
        }
    }

    #[test]
    fn another_format_or_garbage_is_refused_not_misread() {
        let mut buf = Vec::new();
        FactsRecord::Clock(5).encode(1, &mut buf);
        buf[0] = 2;
        assert_eq!(FactsRecord::decode(&buf, None).unwrap_err(), RecordError::Version(2));
        assert!(FactsRecord::decode(b"", None).is_err());
        assert!(FactsRecord::decode(&[1, 0, 1], None).is_err());
        let mut f = Vec::new();
        FactsRecord::Fact { topic: "t".into(), partition: 0, offset: 1, fact: fact() }.encode(1, &mut f);
        f.push(0);
        assert_eq!(FactsRecord::decode(&f, None).unwrap_err(), RecordError::Corrupt("trailing bytes"));
    }

    #[test]
    fn the_fingerprint_separates_its_parts() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
    }
}
