//! One-pass decoding of a message into borrowed fields.
//!
//! The message is checked to be UTF-8 once, then parsed by `serde_json`
//! straight into [`Raw`]: one slot per field name the contract knows, each
//! holding a [`Val`] that borrows from the input when the JSON string has no
//! escapes. Values of unknown fields are skipped unexamined
//! ([`IgnoredAny`]), never stored. No `serde_json::Value` tree is built.
//!
//! Choices where JSON itself leaves room (all `malformed_json`):
//! - a duplicate key at the top level, known or unknown, is refused (the
//!   message would be ambiguous); keys are compared after unescaping, so
//!   `"a"` and `"\u0061"` are the same key. Objects nested inside the values
//!   of extra fields are not examined;
//! - in a *known* field, a number literal that does not fit an `f64`
//!   (`1e400`) and a string escape that is a lone UTF-16 surrogate
//!   (`"\ud800"`) are refused by the parser; in an extra field both are
//!   skipped unexamined, like everything else there.
//!
//! Nesting depth is not limited: arrays and objects, in extra fields or as
//! the (invalid) value of a known one, are skipped without recursion.
//!
//! Speed: most messages are a flat object whose keys and strings have no
//! escapes and whose numbers are small integers. `fast_fill` decodes
//! exactly those in one scan, about twice as fast as going through serde;
//! on anything else (an escape, a nested value, a fraction, a duplicate
//! key, an error) it gives up and the serde path decodes the message from
//! the start, so every error and every unusual value is decided there. The
//! tests check that whenever the fast path succeeds, serde gives the same
//! [`Raw`].

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The top-level field names the contract knows (envelope and every type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    Schema,
    EventId,
    Type,
    OccurredAt,
    Source,
    CommuneCode,
    DistrictCode,
    Subject,
    Stage,
    Channel,
    Level,
    Carrier,
    FromTech,
    ToTech,
    Device,
    Status,
    Agency,
}

impl Field {
    /// How many fields there are.
    pub(crate) const COUNT: usize = 17;

    /// The field's name in the contract.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Field::Schema => "schema",
            Field::EventId => "event_id",
            Field::Type => "type",
            Field::OccurredAt => "occurred_at",
            Field::Source => "source",
            Field::CommuneCode => "commune_code",
            Field::DistrictCode => "district_code",
            Field::Subject => "subject",
            Field::Stage => "stage",
            Field::Channel => "channel",
            Field::Level => "level",
            Field::Carrier => "carrier",
            Field::FromTech => "from_tech",
            Field::ToTech => "to_tech",
            Field::Device => "device",
            Field::Status => "status",
            Field::Agency => "agency",
        }
    }

    fn from_key(k: &str) -> Option<Field> {
        Some(match k {
            "schema" => Field::Schema,
            "event_id" => Field::EventId,
            "type" => Field::Type,
            "occurred_at" => Field::OccurredAt,
            "source" => Field::Source,
            "commune_code" => Field::CommuneCode,
            "district_code" => Field::DistrictCode,
            "subject" => Field::Subject,
            "stage" => Field::Stage,
            "channel" => Field::Channel,
            "level" => Field::Level,
            "carrier" => Field::Carrier,
            "from_tech" => Field::FromTech,
            "to_tech" => Field::ToTech,
            "device" => Field::Device,
            "status" => Field::Status,
            "agency" => Field::Agency,
            _ => return None,
        })
    }
}

/// A decoded value of a known field: only what validation needs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val<'a> {
    /// A string, borrowed from the input unless it had escapes.
    Str(Cow<'a, str>),
    /// An integer literal that fits an `i64`.
    Int(i64),
    /// Any other number (fraction, exponent, or too large an integer).
    Float(f64),
    /// `null`, a boolean, an array or an object (contents skipped).
    Other,
}

impl<'de> Deserialize<'de> for Val<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValVisitor)
    }
}

struct ValVisitor;

impl<'de> Visitor<'de> for ValVisitor {
    type Value = Val<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Val<'de>, E> {
        Ok(Val::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Val<'de>, E> {
        Ok(i64::try_from(v).map_or(Val::Float(v as f64), Val::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Val<'de>, E> {
        Ok(Val::Float(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Val<'de>, E> {
        Ok(Val::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Val<'de>, E> {
        Ok(Val::Other)
    }
    fn visit_none<E: de::Error>(self) -> Result<Val<'de>, E> {
        Ok(Val::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Val::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Val::Other)
    }
}

/// A top-level key: a known field, or an extra one (kept only to detect
/// duplicates).
enum Key<'a> {
    Known(Field),
    Unknown(Cow<'a, str>),
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Field::from_key(v).map_or(Key::Unknown(Cow::Borrowed(v)), Key::Known))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Field::from_key(v).map_or_else(|| Key::Unknown(Cow::Owned(v.to_owned())), Key::Known))
    }
}

/// The known fields of one message; `None` = absent. A present `null` is
/// `Some(Val::Other)`.
#[derive(Debug, PartialEq)]
pub(crate) struct Raw<'a> {
    vals: [Option<Val<'a>>; Field::COUNT],
}

impl<'a> Raw<'a> {
    /// No field present.
    pub(crate) fn new() -> Self {
        // Written slot by slot: an array constant would be copied in whole.
        Raw { vals: std::array::from_fn(|_| None) }
    }

    /// The value of a field, if the key was present.
    pub(crate) fn get(&self, f: Field) -> Option<&Val<'a>> {
        self.vals[f as usize].as_ref()
    }

    /// Whether the key was present.
    pub(crate) fn has(&self, f: Field) -> bool {
        self.vals[f as usize].is_some()
    }
}

/// Above this many extra keys, duplicates are found with a hash set.
const LINEAR_LIMIT: usize = 16;

/// Fills a [`Raw`] in place (it is large; moving it through the `Result`
/// layers of the parser showed up in profiles).
struct RawSeed<'r, 'de> {
    raw: &'r mut Raw<'de>,
    duplicate: &'r Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for RawSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RawSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let raw = self.raw;
        let mut extra: Vec<Cow<'de, str>> = Vec::new();
        let mut extra_set: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key {
                Key::Known(f) => {
                    let slot = &mut raw.vals[f as usize];
                    if slot.is_some() {
                        self.duplicate.set(true);
                        return Err(de::Error::custom("duplicate key"));
                    }
                    *slot = Some(map.next_value::<Val<'de>>()?);
                }
                Key::Unknown(k) => {
                    let dup = match &mut extra_set {
                        Some(set) => !set.insert(k),
                        None if extra.len() < LINEAR_LIMIT => {
                            let dup = extra.contains(&k);
                            extra.push(k);
                            dup
                        }
                        None => {
                            let mut set: HashSet<_> = extra.drain(..).collect();
                            let dup = !set.insert(k);
                            extra_set = Some(set);
                            dup
                        }
                    };
                    if dup {
                        self.duplicate.set(true);
                        return Err(de::Error::custom("duplicate key"));
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// JSON's four whitespace bytes.
pub(crate) fn is_json_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Decodes one message: exactly one JSON object, optionally surrounded by
/// JSON whitespace. The error is the `malformed_json` detail (fixed text,
/// never input).
#[cfg(test)]
pub(crate) fn parse(bytes: &[u8]) -> Result<Raw<'_>, &'static str> {
    let mut raw = Raw::new();
    parse_into(bytes, &mut raw)?;
    Ok(raw)
}

/// [`parse`] into `raw`, which must be empty ([`Raw::new`]); it stays
/// where it is (it is 544 bytes: moving it out through a `Result` showed in
/// profiles). On an error, `raw` holds no meaning.
pub(crate) fn parse_into<'a>(bytes: &'a [u8], raw: &mut Raw<'a>) -> Result<(), &'static str> {
    if bytes.starts_with(BOM) {
        return Err("starts with a byte order mark");
    }
    let text = simdutf8::basic::from_utf8(bytes).map_err(|_| "not UTF-8")?;
    if text.bytes().all(is_json_ws) {
        return Err("empty input");
    }
    if fast_fill(text, raw) {
        return Ok(());
    }
    *raw = Raw::new();
    serde_fill(text, raw)
}

/// The serde path of [`parse`] (after the BOM, UTF-8 and empty checks).
#[cfg(test)]
fn parse_serde(text: &str) -> Result<Raw<'_>, &'static str> {
    let mut raw = Raw::new();
    serde_fill(text, &mut raw)?;
    Ok(raw)
}

fn serde_fill<'a>(text: &'a str, raw: &mut Raw<'a>) -> Result<(), &'static str> {
    let duplicate = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(text);
    RawSeed { raw, duplicate: &duplicate }.deserialize(&mut de).map_err(|e| {
        if duplicate.get() {
            return "duplicate key";
        }
        match e.classify() {
            serde_json::error::Category::Data => "not a JSON object",
            serde_json::error::Category::Eof => "truncated JSON",
            serde_json::error::Category::Syntax | serde_json::error::Category::Io => "invalid JSON",
        }
    })?;
    de.end().map_err(|_| "trailing bytes after the JSON object")
}

/// At most this many extra keys on the fast path (compared pairwise).
const FAST_EXTRA: usize = 8;

/// The fast path of [`parse`]: fills `raw` and returns `true` when `text` is
/// a flat JSON object whose keys and string values have no escape and no
/// control character, whose other values are `true`, `false`, `null` or an
/// integer of 1 to 18 digits without a sign or leading zero, with no
/// duplicate key and at most [`FAST_EXTRA`] extra keys. For any other text
/// it returns `false`, possibly with `raw` partly filled.
///
/// What it accepts, serde accepts with the same values: a string without
/// escapes is borrowed as it is, such an integer fits an `i64`.
fn fast_fill<'a>(text: &'a str, raw: &mut Raw<'a>) -> bool {
    fast_scan(text, raw).is_some()
}

fn fast_scan<'a>(text: &'a str, raw: &mut Raw<'a>) -> Option<()> {
    let b = text.as_bytes();
    let mut extra: [&str; FAST_EXTRA] = [""; FAST_EXTRA];
    let mut extras = 0;
    let mut i = skip_ws(b, 0);
    if *b.get(i)? != b'{' {
        return None;
    }
    i = skip_ws(b, i + 1);
    if *b.get(i)? == b'}' {
        i += 1;
    } else {
        loop {
            if *b.get(i)? != b'"' {
                return None;
            }
            let (key, j) = plain_str(text, i + 1)?;
            i = skip_ws(b, j);
            if *b.get(i)? != b':' {
                return None;
            }
            i = skip_ws(b, i + 1);
            let slot = match Field::from_key(key) {
                Some(f) => {
                    let slot = &mut raw.vals[f as usize];
                    if slot.is_some() {
                        return None;
                    }
                    Some(slot)
                }
                None => {
                    if extras == FAST_EXTRA || extra[..extras].contains(&key) {
                        return None;
                    }
                    extra[extras] = key;
                    extras += 1;
                    None
                }
            };
            let (val, j) = plain_value(text, i)?;
            if let Some(slot) = slot {
                *slot = Some(val);
            }
            i = skip_ws(b, j);
            match *b.get(i)? {
                b',' => i = skip_ws(b, i + 1),
                b'}' => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    b[i..].iter().all(|c| is_json_ws(*c)).then_some(())
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| is_json_ws(*c)) {
        i += 1;
    }
    i
}

/// The string that starts at byte `start` (after its opening quote) and
/// the index after its closing quote; `None` at an escape, a control
/// character or the end of the text.
#[inline]
fn plain_str(text: &str, start: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    let end = find_special(b, start)?;
    if b[end] != b'"' {
        return None;
    }
    // Both ends are ASCII bytes, so char boundaries.
    Some((text.get(start..end)?, end + 1))
}

/// The index of the first `"`, `\` or control byte at or after `i`,
/// eight bytes at a time.
///
/// Per 8-byte word, `(v − 0x01…01) & !v & 0x80…80` flags the zero bytes of
/// `v`, exactly up to the first (a borrow may flag bytes above it, never
/// below), so the lowest flag over the three tests (`w ^ '"'`, `w ^ '\\'`,
/// `w < 0x20`) is the first special byte. Bytes ≥ 0x80 (UTF-8) are never
/// flagged.
#[inline]
fn find_special(b: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().ok()?);
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let flags = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w);
        let flags = flags & HIGH;
        if flags != 0 {
            return Some(i + (flags.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let rest = b.get(i..)?;
    rest.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).map(|p| i + p)
}

/// A value the fast path takes, at byte `i`, and the index after it.
#[inline]
fn plain_value(text: &str, i: usize) -> Option<(Val<'_>, usize)> {
    let b = text.as_bytes();
    match *b.get(i)? {
        b'"' => {
            let (s, j) = plain_str(text, i + 1)?;
            Some((Val::Str(Cow::Borrowed(s)), j))
        }
        b'1'..=b'9' => {
            let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits > 18 || matches!(b.get(i + digits), Some(b'.' | b'e' | b'E')) {
                return None;
            }
            let v = b[i..i + digits].iter().fold(0i64, |v, c| v * 10 + i64::from(c - b'0'));
            Some((Val::Int(v), i + digits))
        }
        b'0' => match b.get(i + 1) {
            Some(b'0'..=b'9' | b'.' | b'e' | b'E') => None,
            _ => Some((Val::Int(0), i + 1)),
        },
        b't' if b[i..].starts_with(b"true") => Some((Val::Other, i + 4)),
        b'f' if b[i..].starts_with(b"false") => Some((Val::Other, i + 5)),
        b'n' if b[i..].starts_with(b"null") => Some((Val::Other, i + 4)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
