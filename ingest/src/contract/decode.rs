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
#[derive(Debug)]
pub(crate) struct Raw<'a> {
    vals: [Option<Val<'a>>; Field::COUNT],
}

impl<'a> Raw<'a> {
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
pub(crate) fn parse(bytes: &[u8]) -> Result<Raw<'_>, &'static str> {
    if bytes.starts_with(BOM) {
        return Err("starts with a byte order mark");
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8")?;
    if text.bytes().all(is_json_ws) {
        return Err("empty input");
    }
    let duplicate = Cell::new(false);
    let mut raw = Raw { vals: [const { None }; Field::COUNT] };
    let mut de = serde_json::Deserializer::from_str(text);
    RawSeed { raw: &mut raw, duplicate: &duplicate }.deserialize(&mut de).map_err(|e| {
        if duplicate.get() {
            return "duplicate key";
        }
        match e.classify() {
            serde_json::error::Category::Data => "not a JSON object",
            serde_json::error::Category::Eof => "truncated JSON",
            serde_json::error::Category::Syntax | serde_json::error::Category::Io => "invalid JSON",
        }
    })?;
    de.end().map_err(|_| "trailing bytes after the JSON object")?;
    Ok(raw)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn borrows_plain_strings_and_unescapes_others() {
        let raw = parse(br#"{"source":"abc","subject":"a\u0062c","level":2,"stage":null,"x":[1,{"y":2}]}"#).unwrap();
        assert!(matches!(raw.get(Field::Source), Some(Val::Str(Cow::Borrowed("abc")))));
        assert!(matches!(raw.get(Field::Subject), Some(Val::Str(Cow::Owned(s))) if s == "abc"));
        assert_eq!(raw.get(Field::Level), Some(&Val::Int(2)));
        assert_eq!(raw.get(Field::Stage), Some(&Val::Other));
        assert!(!raw.has(Field::Schema));
    }

    #[test]
    fn numbers_are_classified() {
        let raw = parse(br#"{"level":2.0,"stage":-3,"status":18446744073709551615,"agency":1e3}"#).unwrap();
        assert_eq!(raw.get(Field::Level), Some(&Val::Float(2.0)));
        assert_eq!(raw.get(Field::Stage), Some(&Val::Int(-3)));
        assert_eq!(raw.get(Field::Status), Some(&Val::Float(18446744073709551615.0)));
        assert_eq!(raw.get(Field::Agency), Some(&Val::Float(1000.0)));
    }

    #[test]
    fn malformed_details() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty input"),
            (b" \n\t", "empty input"),
            (b"\xEF\xBB\xBF{}", "starts with a byte order mark"),
            (b"{\"a\":\"\xff\"}", "not UTF-8"),
            (b"[]", "not a JSON object"),
            (b"\"x\"", "not a JSON object"),
            (b"12", "not a JSON object"),
            (b"null", "not a JSON object"),
            (b"nul", "truncated JSON"),
            (b"nope", "invalid JSON"),
            (b"{\"a\":1", "truncated JSON"),
            (b"{\"a\":1}x", "trailing bytes after the JSON object"),
            (b"{}{}", "trailing bytes after the JSON object"),
            (b"{\"a\":1,\"a\":2}", "duplicate key"),
            (b"{\"a\":1,\"\\u0061\":2}", "duplicate key"),
            (b"{\"level\":1,\"level\":1}", "duplicate key"),
            (b"{'a':1}", "invalid JSON"),
            (b"{\"level\":1e400}", "invalid JSON"),
            (b"{\"source\":\"\\ud800\"}", "invalid JSON"),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).err(), Some(*want), "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn duplicates_among_many_extra_keys_are_found() {
        let mut s = String::from("{");
        for i in 0..40 {
            s.push_str(&format!("\"k{i}\":{i},"));
        }
        assert!(parse(format!("{}\"z\":0}}", s).as_bytes()).is_ok());
        assert_eq!(parse(format!("{}\"k3\":0}}", s).as_bytes()).err(), Some("duplicate key"));
        assert_eq!(parse(format!("{}\"k39\":0}}", s).as_bytes()).err(), Some("duplicate key"));
    }

    #[test]
    fn whitespace_around_the_object_is_fine_and_deep_extras_are_skipped() {
        assert!(parse(b" \r\n {} \n").is_ok());
        assert!(parse(br#"{"x":"\ud800","y":1e400}"#).is_ok());
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(deep.as_bytes()).is_ok());
        let deep = format!("{{\"level\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse(deep.as_bytes()).unwrap().get(Field::Level), Some(&Val::Other));
    }
}
