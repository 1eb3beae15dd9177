//! The normalised fact: what ingest hands to the aggregator.
//!
//! A fact carries no personal data: the subject is a keyed digest, and only
//! the fields the contract's figures need survive normalisation.

use chrono::NaiveDate;
use std::fmt;

use crate::geo::AreaId;

/// Event time: nanoseconds since the Unix epoch, UTC.
pub type Nanos = i64;

/// A pseudonymised subject: the first 16 bytes of HMAC-SHA256(key, domain ‖ normalised subject).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 16]);

impl Digest {
    /// The shard that owns this subject, out of `shards` (SCALING.md invariant 1).
    ///
    /// Uses the digest's own bits, so the same subject always lands in the
    /// same shard whatever topic or partition it arrived on.
    pub fn shard(&self, shards: u32) -> u32 {
        let v = u32::from_le_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]);
        if shards <= 1 {
            0
        } else {
            v % shards
        }
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// One accepted event, normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fact {
    /// The producer's event id (1..=128 chars). Not personal data; used for
    /// deduplication and to order events with equal `occurred_at`.
    pub event_id: Box<str>,
    /// Pseudonymised subject (citizen, subscriber or ticket).
    pub subject: Digest,
    /// Event time.
    pub occurred_at: Nanos,
    /// Local day of `occurred_at` in the campaign time zone.
    pub day: NaiveDate,
    /// The most specific area the event names, resolved through the geography.
    pub area: AreaId,
    /// What happened.
    pub kind: FactKind,
}

impl Fact {
    /// The key the contract orders events by: `occurred_at`, then `event_id`.
    pub fn order_key(&self) -> (Nanos, &str) {
        (self.occurred_at, &self.event_id)
    }

    /// The deduplication key: a 128-bit hash of (subject, type, event id).
    ///
    /// A producer retry re-sends the same fact, so its copies agree on all
    /// three and the first applied stands (EVENTS-v1 "Duplicates"). Event ids
    /// are unique per fact *at the producer*: two upstream systems may well
    /// both number a fact `000123`, and that must not drop either. Keying by
    /// the subject too keeps deduplication inside the subject's shard
    /// (SCALING.md invariant 1), so the result never depends on how many
    /// shards or instances there are.
    pub fn event_key(&self) -> u128 {
        event_key(&self.subject, self.kind.type_tag(), self.event_id.as_bytes())
    }
}

/// [`Fact::event_key`] from its parts: the subject, the type's
/// [`FactKind::type_tag`] and the event id's bytes (the shard computes the
/// key of an event it no longer holds as a [`Fact`]).
pub fn event_key(subject: &Digest, type_tag: u8, id: &[u8]) -> u128 {
    let mut buf = [0u8; 16 + 1 + 128];
    if id.len() > 128 {
        // Longer than the contract allows: hash without the copy.
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&subject.0);
        h.update(&[type_tag]);
        h.update(id);
        return h.digest128();
    }
    buf[..16].copy_from_slice(&subject.0);
    buf[16] = type_tag;
    buf[17..17 + id.len()].copy_from_slice(id);
    xxhash_rust::xxh3::xxh3_128(&buf[..17 + id.len()])
}

/// The type-specific part of a fact (EVENTS-v1 "Types").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FactKind {
    /// `cccd.application`.
    Cccd { stage: CccdStage },
    /// `vneid.account`.
    Vneid { stage: VneidStage, level: u8 },
    /// `sim.swap`.
    SimSwap { device: Device },
    /// `sim.signature`.
    SimSignature { stage: SignatureStage },
    /// `hotline.ticket`.
    Hotline { status: TicketStatus, level: TicketLevel },
}

impl FactKind {
    /// One byte per contract type (`cccd.application` … `hotline.ticket`).
    pub fn type_tag(&self) -> u8 {
        match self {
            FactKind::Cccd { .. } => 1,
            FactKind::Vneid { .. } => 2,
            FactKind::SimSwap { .. } => 3,
            FactKind::SimSignature { .. } => 4,
            FactKind::Hotline { .. } => 5,
        }
    }
}

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// How many values there are (sizes tables: never a literal).
            pub const COUNT: usize = Self::ALL.len();
            /// The contract's spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
            /// Parses the contract's spelling (exact, case-sensitive).
            #[allow(clippy::should_implement_trait)]
            pub fn from_str(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

str_enum!(
    /// `cccd.application` stage.
    CccdStage { Received = "received", Approved = "approved", Issued = "issued", Rejected = "rejected" }
);
str_enum!(
    /// `cccd.application` channel.
    Channel { Station = "station", MobileTeam = "mobile_team", Online = "online" }
);
str_enum!(
    /// `vneid.account` stage.
    VneidStage { Registered = "registered", Activated = "activated" }
);
str_enum!(
    /// Mobile carriers.
    Carrier {
        Viettel = "viettel", Vinaphone = "vinaphone", Mobifone = "mobifone", Vietnamobile = "vietnamobile",
        Gmobile = "gmobile", Itel = "itel", Reddi = "reddi", Local = "local"
    }
);
str_enum!(
    /// `sim.swap` target technology.
    Tech { G4 = "4g", G5 = "5g" }
);
str_enum!(
    /// `sim.swap` device.
    Device { Smartphone = "smartphone", FeaturePhone = "feature_phone" }
);
str_enum!(
    /// `sim.signature` stage.
    SignatureStage { Installed = "installed", Revoked = "revoked" }
);
str_enum!(
    /// `hotline.ticket` status (a lifecycle transition).
    TicketStatus {
        Received = "received", Answered = "answered", Forwarded = "forwarded",
        Resolved = "resolved", Spam = "spam", Reopened = "reopened"
    }
);
str_enum!(
    /// `hotline.ticket` level: who must handle it, which sets the deadline.
    TicketLevel { Specialist = "specialist", Leadership = "leadership" }
);
str_enum!(
    /// The five coverage indicators ("4 phủ" and support).
    Indicator {
        Cccd = "cccd", Vneid = "vneid", Smartphone4g = "smartphone_4g",
        SimSignature = "sim_signature", Migrated2g = "migrated_2g"
    }
);

impl FactKind {
    /// The first-event indicators this fact qualifies for (everything but
    /// `sim_signature`, which follows the latest event, and the hotline).
    pub fn first_event_indicators(&self) -> &'static [Indicator] {
        match *self {
            FactKind::Cccd { stage: CccdStage::Received } => &[Indicator::Cccd],
            FactKind::Vneid { stage: VneidStage::Activated, level: 2 } => &[Indicator::Vneid],
            FactKind::SimSwap { device: Device::Smartphone } => &[Indicator::Smartphone4g, Indicator::Migrated2g],
            FactKind::SimSwap { device: Device::FeaturePhone } => &[Indicator::Migrated2g],
            _ => &[],
        }
    }

    /// The indicators a fact of this *type* can be first-qualifying for,
    /// whatever its stage, level or device: [`Self::first_event_indicators`]
    /// of every kind of the type together. A retry may carry another stage
    /// than the copy applied first, and is still the same event.
    pub fn type_indicators(&self) -> &'static [Indicator] {
        match *self {
            FactKind::Cccd { .. } => &[Indicator::Cccd],
            FactKind::Vneid { .. } => &[Indicator::Vneid],
            FactKind::SimSwap { .. } => &[Indicator::Smartphone4g, Indicator::Migrated2g],
            FactKind::SimSignature { .. } | FactKind::Hotline { .. } => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_indicators_cover_every_kind_of_the_type() {
        let mut kinds: Vec<FactKind> = CccdStage::ALL.iter().map(|&stage| FactKind::Cccd { stage }).collect();
        kinds.extend(
            VneidStage::ALL.iter().flat_map(|&stage| (0..=3).map(move |level| FactKind::Vneid { stage, level })),
        );
        kinds.extend(Device::ALL.iter().map(|&device| FactKind::SimSwap { device }));
        kinds.extend(SignatureStage::ALL.iter().map(|&stage| FactKind::SimSignature { stage }));
        for k in &kinds {
            for i in k.first_event_indicators() {
                assert!(k.type_indicators().contains(i), "{k:?} {i}");
            }
            // No two types share an indicator: a record names its type.
            for other in kinds.iter().filter(|o| o.type_tag() != k.type_tag()) {
                assert!(k.type_indicators().iter().all(|i| !other.type_indicators().contains(i)), "{k:?} {other:?}");
            }
        }
        // Each of those indicators is reached by some kind of the type.
        for k in &kinds {
            for i in k.type_indicators() {
                assert!(kinds.iter().any(|o| o.type_tag() == k.type_tag() && o.first_event_indicators().contains(i)));
            }
        }
    }

    #[test]
    fn enums_round_trip() {
        for i in Indicator::ALL {
            assert_eq!(Indicator::from_str(i.as_str()), Some(*i));
        }
        assert_eq!(TicketStatus::from_str("Received"), None);
    }

    #[test]
    fn qualifying_indicators_follow_the_contract() {
        assert_eq!(FactKind::Cccd { stage: CccdStage::Received }.first_event_indicators(), &[Indicator::Cccd]);
        assert!(FactKind::Cccd { stage: CccdStage::Issued }.first_event_indicators().is_empty());
        assert!(FactKind::Vneid { stage: VneidStage::Activated, level: 1 }.first_event_indicators().is_empty());
        assert!(FactKind::Vneid { stage: VneidStage::Registered, level: 2 }.first_event_indicators().is_empty());
        assert_eq!(
            FactKind::SimSwap { device: Device::Smartphone }.first_event_indicators(),
            &[Indicator::Smartphone4g, Indicator::Migrated2g]
        );
    }

    #[test]
    fn shard_is_stable_and_in_range() {
        let d = Digest([7; 16]);
        assert_eq!(d.shard(1), 0);
        assert!(d.shard(8) < 8);
        assert_eq!(d.shard(8), d.shard(8));
    }
}

/// Why bytes did not decode as a [`Fact`] (a corrupt or foreign state store).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fact encoding: {0}")]
pub struct DecodeError(&'static str);

impl Fact {
    /// Appends the compact binary form used by the local fact log.
    ///
    /// Layout (little endian): kind u8, a u8, b u8, subject [16], occurred_at i64,
    /// day i32 (days from CE), area u16, event_id length u16, event_id bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (kind, a, b) = match self.kind {
            FactKind::Cccd { stage } => (0u8, stage as u8, 0u8),
            FactKind::Vneid { stage, level } => (1, stage as u8, level),
            FactKind::SimSwap { device } => (2, device as u8, 0),
            FactKind::SimSignature { stage } => (3, stage as u8, 0),
            FactKind::Hotline { status, level } => (4, status as u8, level as u8),
        };
        out.extend_from_slice(&[kind, a, b]);
        out.extend_from_slice(&self.subject.0);
        out.extend_from_slice(&self.occurred_at.to_le_bytes());
        out.extend_from_slice(&chrono::Datelike::num_days_from_ce(&self.day).to_le_bytes());
        out.extend_from_slice(&self.area.0.to_le_bytes());
        let id = self.event_id.as_bytes();
        out.extend_from_slice(&(id.len() as u16).to_le_bytes());
        out.extend_from_slice(id);
    }

    /// Decodes one fact from the front of `buf`; returns it and the bytes used.
    pub fn decode(buf: &[u8]) -> Result<(Fact, usize), DecodeError> {
        fn take<const N: usize>(buf: &[u8], at: &mut usize) -> Result<[u8; N], DecodeError> {
            let s = buf.get(*at..*at + N).ok_or(DecodeError("truncated"))?;
            *at += N;
            s.try_into().map_err(|_| DecodeError("truncated"))
        }
        fn pick<T: Copy>(all: &[T], i: u8) -> Result<T, DecodeError> {
            all.get(i as usize).copied().ok_or(DecodeError("bad enum"))
        }
        let mut at = 0;
        let [kind, a, b] = take::<3>(buf, &mut at)?;
        let kind = match kind {
            0 => FactKind::Cccd { stage: pick(CccdStage::ALL, a)? },
            1 => FactKind::Vneid { stage: pick(VneidStage::ALL, a)?, level: b },
            2 => FactKind::SimSwap { device: pick(Device::ALL, a)? },
            3 => FactKind::SimSignature { stage: pick(SignatureStage::ALL, a)? },
            4 => FactKind::Hotline { status: pick(TicketStatus::ALL, a)?, level: pick(TicketLevel::ALL, b)? },
            _ => return Err(DecodeError("bad kind")),
        };
        let subject = Digest(take::<16>(buf, &mut at)?);
        let occurred_at = i64::from_le_bytes(take::<8>(buf, &mut at)?);
        let day = NaiveDate::from_num_days_from_ce_opt(i32::from_le_bytes(take::<4>(buf, &mut at)?))
            .ok_or(DecodeError("bad day"))?;
        let area = AreaId(u16::from_le_bytes(take::<2>(buf, &mut at)?));
        let len = u16::from_le_bytes(take::<2>(buf, &mut at)?) as usize;
        let id = buf.get(at..at + len).ok_or(DecodeError("truncated"))?;
        let event_id = std::str::from_utf8(id).map_err(|_| DecodeError("event id not UTF-8"))?.into();
        Ok((Fact { event_id, subject, occurred_at, day, area, kind }, at + len))
    }
}

#[cfg(test)]
mod encoding_tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let kinds = [
            FactKind::Cccd { stage: CccdStage::Rejected },
            FactKind::Vneid { stage: VneidStage::Activated, level: 2 },
            FactKind::SimSwap { device: Device::FeaturePhone },
            FactKind::SimSignature { stage: SignatureStage::Revoked },
            FactKind::Hotline { status: TicketStatus::Reopened, level: TicketLevel::Leadership },
        ];
        let mut buf = Vec::new();
        let facts: Vec<Fact> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| Fact {
                event_id: format!("ev-{i}-Đ").into(),
                subject: Digest([i as u8; 16]),
                occurred_at: 1_715_000_000_000_000_000 + i as i64,
                day: NaiveDate::from_ymd_opt(2024, 5, 9).unwrap(),
                area: AreaId(17 + i as u16),
                kind: *k,
            })
            .collect();
        for f in &facts {
            f.encode(&mut buf);
        }
        let mut at = 0;
        for f in &facts {
            let (g, used) = Fact::decode(&buf[at..]).unwrap();
            assert_eq!(&g, f);
            at += used;
        }
        assert_eq!(at, buf.len());
        assert!(Fact::decode(&buf[..10]).is_err());
    }
}
