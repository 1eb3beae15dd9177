//! Decoding and validation of EVENTS-v1 messages.
//!
//! [`Validator::validate`] turns the bytes of one message into an
//! [`aggregator::Fact`] (subject pseudonymised, extra fields dropped) or a
//! [`Rejection`] with exactly one [`Reason`]: the first check it fails, in the
//! contract's order (see [`Reason`]).
//!
//! Where the contract is silent, this module decides (and the tests pin it):
//! - `schema` and `type` are checked first, each in full: a missing `schema`
//!   is `missing_field` even when `type` is unknown; a `schema` or `type` that
//!   is present but not a known string (including `null` or a number) is
//!   `unsupported_schema` / `unknown_type`;
//! - every required field of the envelope and of the type's table is checked
//!   for presence (for the area, at least one of `commune_code` and
//!   `district_code`) before any value is checked; the detail names every
//!   missing field;
//! - a field present with `null` is present: `invalid_field`, not
//!   `missing_field`; an optional field (`channel`, `agency`) present with
//!   `null` is invalid too;
//! - fields of another type's table are extra fields for this type: ignored
//!   (`level` on a `cccd.application` is never looked at);
//! - duplicate keys, BOM, trailing bytes: `malformed_json` (see `decode`);
//! - lengths are counted in Unicode scalar values ("chars"), and nothing is
//!   trimmed: a ticket id or event id with spaces is taken as it is;
//! - `occurred_at` is parsed by `chrono`'s RFC 3339 parser, which also takes
//!   `t` or a space as the separator, `z` for UTC, a leap second `:60`, and
//!   any number of fraction digits (beyond 9 truncated); a timestamp outside
//!   the years 1677–2262 (not representable as `i64` nanoseconds) is
//!   `invalid_field`.

mod decode;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::{self, BufRead};
use std::sync::Arc;

use aggregator::fact::{
    Carrier, CccdStage, Channel, Device, SignatureStage, Tech, TicketLevel, TicketStatus, VneidStage,
};
use aggregator::geo::AreaError;
use aggregator::{AreaLevel, Fact, FactKind, Geography, Nanos};
use chrono::{DateTime, NaiveDateTime};

use crate::phone::normalise_phone_bytes;
use crate::pseudonym::{Pseudonymiser, SubjectKind};
use decode::{Field, Raw, Val};

/// The only `schema` value of this contract.
pub const SCHEMA_V1: &str = "d06.event.v1";

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Why a message was rejected. The variants are in the order the checks
/// run: a message gets the first one it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Not UTF-8, not exactly one JSON object (BOM, trailing bytes, a second
    /// value, an array…), or a duplicate key.
    MalformedJson,
    /// `schema` present but not `"d06.event.v1"`.
    UnsupportedSchema,
    /// `type` present but not one of the contract's types.
    UnknownType,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong JSON type or a value outside its rule.
    InvalidField,
    /// A commune or district code not in the geography.
    UnknownArea,
    /// Commune and district both known but not belonging together.
    AreaMismatch,
    /// `occurred_at` more than the tolerance ahead of the wall clock.
    FutureEvent,
    /// `occurred_at` older than the correction horizon behind the newest
    /// event applied from the same source partition.
    TooLate,
}

impl Reason {
    /// Every reason, in check order.
    pub const ALL: [Reason; 9] = [
        Reason::MalformedJson,
        Reason::UnsupportedSchema,
        Reason::UnknownType,
        Reason::MissingField,
        Reason::InvalidField,
        Reason::UnknownArea,
        Reason::AreaMismatch,
        Reason::FutureEvent,
        Reason::TooLate,
    ];

    /// The contract's spelling (`malformed_json`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MalformedJson => "malformed_json",
            Reason::UnsupportedSchema => "unsupported_schema",
            Reason::UnknownType => "unknown_type",
            Reason::MissingField => "missing_field",
            Reason::InvalidField => "invalid_field",
            Reason::UnknownArea => "unknown_area",
            Reason::AreaMismatch => "area_mismatch",
            Reason::FutureEvent => "future_event",
            Reason::TooLate => "too_late",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected message: the reason and a short detail naming the field and
/// the rule. The detail never contains any value from the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    /// The one reason.
    pub reason: Reason,
    /// E.g. `subject: not 12 ASCII digits`.
    pub detail: String,
}

impl Rejection {
    fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection { reason, detail: detail.into() }
    }

    fn invalid(field: Field, rule: &str) -> Self {
        Rejection::new(Reason::InvalidField, format!("{}: {rule}", field.name()))
    }
}

/// Validation settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorConfig {
    /// The zone whose local date is a fact's day (contract: `Asia/Ho_Chi_Minh`).
    pub time_zone: chrono_tz::Tz,
    /// How far ahead of the wall clock `occurred_at` may be, in seconds (600).
    pub future_tolerance_secs: i64,
    /// The correction horizon for `too_late`, in seconds (45 days).
    pub correction_horizon_secs: i64,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        ValidatorConfig {
            time_zone: chrono_tz::Asia::Ho_Chi_Minh,
            future_tolerance_secs: 600,
            correction_horizon_secs: 45 * 86_400,
        }
    }
}

/// The event types of EVENTS-v1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventType {
    Cccd,
    Vneid,
    SimSwap,
    SimSignature,
    Hotline,
}

impl EventType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "cccd.application" => EventType::Cccd,
            "vneid.account" => EventType::Vneid,
            "sim.swap" => EventType::SimSwap,
            "sim.signature" => EventType::SimSignature,
            "hotline.ticket" => EventType::Hotline,
            _ => return None,
        })
    }

    /// The type table's required fields, in table order.
    fn required(self) -> &'static [Field] {
        match self {
            EventType::Cccd => &[Field::Stage],
            EventType::Vneid => &[Field::Stage, Field::Level],
            EventType::SimSwap => &[Field::Carrier, Field::FromTech, Field::ToTech, Field::Device],
            EventType::SimSignature => &[Field::Carrier, Field::Stage],
            EventType::Hotline => &[Field::Status, Field::Level],
        }
    }
}

/// Decodes, validates and pseudonymises messages. Cheap to share: `validate`
/// takes `&self`; the per-partition watermark is the caller's.
pub struct Validator {
    geo: Arc<Geography>,
    pseudonymiser: Pseudonymiser,
    config: ValidatorConfig,
    future_tolerance_nanos: i64,
    horizon_nanos: i64,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("geography", &self.geo.version())
            .field("pseudonymiser", &self.pseudonymiser)
            .field("config", &self.config)
            .finish()
    }
}

/// A subject checked and normalised, not yet digested.
enum Subject<'r> {
    Text(SubjectKind, &'r str),
    Phone([u8; 10]),
}

impl Validator {
    /// A validator over a geography, with a keyed pseudonymiser.
    pub fn new(geo: Arc<Geography>, pseudonymiser: Pseudonymiser, config: ValidatorConfig) -> Self {
        let future_tolerance_nanos = config.future_tolerance_secs.saturating_mul(NANOS_PER_SEC);
        let horizon_nanos = config.correction_horizon_secs.saturating_mul(NANOS_PER_SEC);
        Validator { geo, pseudonymiser, config, future_tolerance_nanos, horizon_nanos }
    }

    /// The settings in use.
    pub fn config(&self) -> &ValidatorConfig {
        &self.config
    }

    /// Validates one message.
    ///
    /// `now`: wall clock (unix nanos). `watermark`: newest `occurred_at`
    /// applied from this source partition (`None` at start); on success it is
    /// advanced to `max(watermark, occurred_at)`. A rejection leaves it
    /// unchanged.
    ///
    /// `future_event`: `occurred_at > now + tolerance` (exactly at the
    /// tolerance is accepted). `too_late`: `occurred_at < watermark − horizon`
    /// (exactly at the horizon is accepted).
    pub fn validate(&self, bytes: &[u8], now: Nanos, watermark: &mut Option<Nanos>) -> Result<Fact, Rejection> {
        // 1. malformed_json
        let mut raw = Raw::new();
        decode::parse_into(bytes, &mut raw).map_err(|d| Rejection::new(Reason::MalformedJson, d))?;

        // 2. schema (missing → missing_field, anything else → unsupported_schema)
        match raw.get(Field::Schema) {
            None => return Err(Rejection::new(Reason::MissingField, "schema: missing")),
            Some(Val::Str(s)) if s == SCHEMA_V1 => {}
            Some(Val::Str(_)) => return Err(Rejection::new(Reason::UnsupportedSchema, "schema: not d06.event.v1")),
            Some(_) => return Err(Rejection::new(Reason::UnsupportedSchema, "schema: not a string")),
        }

        // 3. type
        let ty = match raw.get(Field::Type) {
            None => return Err(Rejection::new(Reason::MissingField, "type: missing")),
            Some(Val::Str(s)) => EventType::parse(s)
                .ok_or_else(|| Rejection::new(Reason::UnknownType, "type: not a known event type"))?,
            Some(_) => return Err(Rejection::new(Reason::UnknownType, "type: not a string")),
        };

        // 4. missing_field, all at once
        check_missing(&raw, ty)?;

        // 5. invalid_field, field by field in a fixed order
        let event_id = bounded_str(&raw, Field::EventId, 128, "not 1..=128 characters")?;
        let occurred_at = occurred_at(&raw)?;
        bounded_str(&raw, Field::Source, 64, "not 1..=64 characters")?;
        let commune = code(&raw, Field::CommuneCode, 5, "not 5 ASCII digits")?;
        let district = code(&raw, Field::DistrictCode, 3, "not 3 ASCII digits")?;
        let subject = subject(&raw, ty)?;
        let kind = kind(&raw, ty)?;

        // 6, 7. unknown_area, area_mismatch
        let area = self.geo.resolve(commune, district).map_err(|e| match e {
            AreaError::Unknown(AreaLevel::District) => {
                Rejection::new(Reason::UnknownArea, "district_code: unknown code")
            }
            AreaError::Unknown(_) => Rejection::new(Reason::UnknownArea, "commune_code: unknown code"),
            AreaError::Mismatch => {
                Rejection::new(Reason::AreaMismatch, "commune_code: not in the district of district_code")
            }
        })?;

        // 8. future_event
        if occurred_at > now.saturating_add(self.future_tolerance_nanos) {
            return Err(Rejection::new(Reason::FutureEvent, "occurred_at: beyond the future tolerance"));
        }

        // 9. too_late
        if let Some(w) = *watermark {
            if occurred_at < w.saturating_sub(self.horizon_nanos) {
                return Err(Rejection::new(
                    Reason::TooLate,
                    "occurred_at: older than the correction horizon behind the partition's newest event",
                ));
            }
        }

        let digest = match subject {
            Subject::Text(k, s) => self.pseudonymiser.digest_bytes(k, s.as_bytes()),
            Subject::Phone(p) => self.pseudonymiser.digest_bytes(SubjectKind::Phone, &p),
        };
        let day = DateTime::from_timestamp_nanos(occurred_at).with_timezone(&self.config.time_zone).date_naive();
        *watermark = Some(watermark.map_or(occurred_at, |w| w.max(occurred_at)));
        Ok(Fact { event_id: event_id.into(), subject: digest, occurred_at, day, area, kind })
    }
}

fn check_missing(raw: &Raw<'_>, ty: EventType) -> Result<(), Rejection> {
    let mut missing: Vec<&'static str> = Vec::new();
    for f in [Field::EventId, Field::OccurredAt, Field::Source] {
        if !raw.has(f) {
            missing.push(f.name());
        }
    }
    if !raw.has(Field::CommuneCode) && !raw.has(Field::DistrictCode) {
        missing.push("commune_code or district_code");
    }
    if !raw.has(Field::Subject) {
        missing.push(Field::Subject.name());
    }
    for f in ty.required() {
        if !raw.has(*f) {
            missing.push(f.name());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Rejection::new(Reason::MissingField, format!("{}: missing", missing.join(", "))))
    }
}

/// A present field that must be a string.
fn str_of<'r>(raw: &'r Raw<'_>, f: Field) -> Result<&'r str, Rejection> {
    match raw.get(f) {
        Some(Val::Str(s)) => Ok(s),
        Some(_) => Err(Rejection::invalid(f, "not a string")),
        None => Err(Rejection::new(Reason::MissingField, format!("{}: missing", f.name()))),
    }
}

/// A string of 1..=max chars.
fn bounded_str<'r>(raw: &'r Raw<'_>, f: Field, max: usize, rule: &str) -> Result<&'r str, Rejection> {
    let s = str_of(raw, f)?;
    // Byte length bounds the char count from above and (÷4) from below.
    let ok = !s.is_empty() && (s.len() <= max || (s.len() <= 4 * max && s.chars().count() <= max));
    if ok {
        Ok(s)
    } else {
        Err(Rejection::invalid(f, rule))
    }
}

/// An optional area code: exactly `len` ASCII digits when present.
fn code<'r>(raw: &'r Raw<'_>, f: Field, len: usize, rule: &str) -> Result<Option<&'r str>, Rejection> {
    if !raw.has(f) {
        return Ok(None);
    }
    let s = str_of(raw, f)?;
    if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(Some(s))
    } else {
        Err(Rejection::invalid(f, rule))
    }
}

fn occurred_at(raw: &Raw<'_>) -> Result<Nanos, Rejection> {
    let s = str_of(raw, Field::OccurredAt)?;
    if let Some(nanos) = rfc3339_common(s) {
        return Ok(nanos);
    }
    let dt = DateTime::parse_from_rfc3339(s).map_err(|_| {
        let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
            || NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").is_ok();
        Rejection::invalid(Field::OccurredAt, if naive { "no UTC offset" } else { "not an RFC 3339 timestamp" })
    })?;
    dt.timestamp_nanos_opt().ok_or_else(|| Rejection::invalid(Field::OccurredAt, "outside the years 1677..2262"))
}

/// The shape producers send, `YYYY-MM-DDTHH:MM:SS[.F](Z|±HH:MM)` with 1 to
/// 9 fraction digits, years 1900 to 2199, offsets up to ±23:59 and no leap
/// second, read directly as unix nanoseconds (chrono's general parser was a
/// tenth of validation). `None` for anything else, valid or not: chrono
/// decides those. The tests check chrono agrees wherever this succeeds.
fn rfc3339_common(s: &str) -> Option<Nanos> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        b.get(from..to)?.iter().try_fold(0i64, |v, c| c.is_ascii_digit().then(|| v * 10 + i64::from(c - b'0')))
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1900..=2199).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut at = 19;
    let mut fraction = 0;
    if b[at] == b'.' {
        let digits = b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        fraction = num(at + 1, at + 1 + digits)? * 10i64.pow(9 - digits as u32);
        at += 1 + digits;
    }
    let offset = match b.get(at..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(at + 1, at + 3)?, num(at + 4, at + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'-' {
                -(h * 3600 + m * 60)
            } else {
                h * 3600 + m * 60
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(secs * NANOS_PER_SEC + fraction)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn subject<'r>(raw: &'r Raw<'_>, ty: EventType) -> Result<Subject<'r>, Rejection> {
    let s = str_of(raw, Field::Subject)?;
    match ty {
        EventType::Cccd | EventType::Vneid => {
            if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
                Ok(Subject::Text(SubjectKind::CitizenId, s))
            } else {
                Err(Rejection::invalid(Field::Subject, "not 12 ASCII digits"))
            }
        }
        EventType::SimSwap | EventType::SimSignature => normalise_phone_bytes(s)
            .map(Subject::Phone)
            .ok_or_else(|| Rejection::invalid(Field::Subject, "not a Vietnamese mobile number")),
        EventType::Hotline => {
            let s = bounded_str(raw, Field::Subject, 128, "not 1..=128 characters")?;
            Ok(Subject::Text(SubjectKind::Ticket, s))
        }
    }
}

/// A present field holding one of an enum's spellings.
fn one_of<T: Copy>(
    raw: &Raw<'_>,
    f: Field,
    parse: fn(&str) -> Option<T>,
    all: &[T],
    as_str: fn(T) -> &'static str,
) -> Result<T, Rejection> {
    let s = str_of(raw, f)?;
    parse(s).ok_or_else(|| {
        let list: Vec<&str> = all.iter().map(|v| as_str(*v)).collect();
        Rejection::invalid(f, &format!("not one of {}", list.join(", ")))
    })
}

fn kind(raw: &Raw<'_>, ty: EventType) -> Result<FactKind, Rejection> {
    Ok(match ty {
        EventType::Cccd => {
            let stage = one_of(raw, Field::Stage, CccdStage::from_str, CccdStage::ALL, CccdStage::as_str)?;
            if raw.has(Field::Channel) {
                one_of(raw, Field::Channel, Channel::from_str, Channel::ALL, Channel::as_str)?;
            }
            FactKind::Cccd { stage }
        }
        EventType::Vneid => {
            let stage = one_of(raw, Field::Stage, VneidStage::from_str, VneidStage::ALL, VneidStage::as_str)?;
            let level = match raw.get(Field::Level) {
                Some(Val::Int(1)) => 1,
                Some(Val::Int(2)) => 2,
                _ => return Err(Rejection::invalid(Field::Level, "not the integer 1 or 2")),
            };
            FactKind::Vneid { stage, level }
        }
        EventType::SimSwap => {
            one_of(raw, Field::Carrier, Carrier::from_str, Carrier::ALL, Carrier::as_str)?;
            if str_of(raw, Field::FromTech)? != "2g" {
                return Err(Rejection::invalid(Field::FromTech, "not 2g"));
            }
            one_of(raw, Field::ToTech, Tech::from_str, Tech::ALL, Tech::as_str)?;
            let device = one_of(raw, Field::Device, Device::from_str, Device::ALL, Device::as_str)?;
            FactKind::SimSwap { device }
        }
        EventType::SimSignature => {
            one_of(raw, Field::Carrier, Carrier::from_str, Carrier::ALL, Carrier::as_str)?;
            let stage =
                one_of(raw, Field::Stage, SignatureStage::from_str, SignatureStage::ALL, SignatureStage::as_str)?;
            FactKind::SimSignature { stage }
        }
        EventType::Hotline => {
            let status = one_of(raw, Field::Status, TicketStatus::from_str, TicketStatus::ALL, TicketStatus::as_str)?;
            let level = one_of(raw, Field::Level, TicketLevel::from_str, TicketLevel::ALL, TicketLevel::as_str)?;
            if raw.has(Field::Agency) {
                let s = str_of(raw, Field::Agency)?;
                if s.len() > 256 && (s.len() > 4 * 256 || s.chars().count() > 256) {
                    return Err(Rejection::invalid(Field::Agency, "longer than 256 characters"));
                }
            }
            FactKind::Hotline { status, level }
        }
    })
}

/// Validates a file of newline-delimited messages (one JSON object per line)
/// with one watermark for the whole file, as one source partition would be.
///
/// Lines are numbered from 1. A line that is empty or only JSON whitespace is
/// skipped: neither accepted nor rejected. A line's bytes are validated as
/// they are (a line that is not UTF-8 is `malformed_json`, not an IO error);
/// the `\n` ending it is not part of the message, a `\r` before it is JSON
/// whitespace. Returns the rejections with their line numbers and the number
/// of accepted lines; fails only on a read error.
pub fn validate_lines(
    validator: &Validator,
    input: impl BufRead,
    now: Nanos,
) -> io::Result<(Vec<(usize, Rejection)>, usize)> {
    validate_lines_with(validator, input, now, |_| {})
}

/// How far [`validate_lines_with`] has got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinesRead {
    /// Bytes read, line endings included.
    pub bytes: u64,
    /// Lines read (blank ones included).
    pub lines: usize,
    /// Lines rejected so far.
    pub rejected: usize,
}

/// [`validate_lines`], telling `progress` after every line how far it has got.
pub fn validate_lines_with(
    validator: &Validator,
    mut input: impl BufRead,
    now: Nanos,
    mut progress: impl FnMut(LinesRead),
) -> io::Result<(Vec<(usize, Rejection)>, usize)> {
    let mut read = LinesRead::default();
    let mut rejections = Vec::new();
    let mut accepted = 0usize;
    let mut watermark = None;
    let mut line = Vec::new();
    let mut number = 0usize;
    loop {
        line.clear();
        let n = input.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        number += 1;
        read.bytes += n as u64;
        read.lines = number;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if !line.iter().all(|b| decode::is_json_ws(*b)) {
            match validator.validate(&line, now, &mut watermark) {
                Ok(_) => accepted += 1,
                Err(r) => rejections.push((number, r)),
            }
        }
        read.rejected = rejections.len();
        progress(read);
    }
    Ok((rejections, accepted))
}
