#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;
use std::sync::{Arc, OnceLock};

use aggregator::fact::{CccdStage, Device, SignatureStage, TicketLevel, TicketStatus, VneidStage};
use aggregator::{AreaLevel, Digest, FactKind, Geography, GeographyVersion};
use chrono::NaiveDate;
use proptest::prelude::*;

use super::*;
use crate::pseudonym::SecretKey;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
/// 2024-05-09T08:15:30+07:00, checked with Python's datetime.
const T0: Nanos = 1_715_217_330 * NANOS_PER_SEC;
const NOW: Nanos = T0 + 3600 * NANOS_PER_SEC;
const MIN: Nanos = 60 * NANOS_PER_SEC;
const HORIZON: Nanos = 45 * 86_400 * NANOS_PER_SEC;

fn geo() -> Arc<Geography> {
    static GEO: OnceLock<Arc<Geography>> = OnceLock::new();
    GEO.get_or_init(|| Arc::new(Geography::load(GeographyVersion::Pre2025).unwrap())).clone()
}

fn validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| {
        Validator::new(
            geo(),
            Pseudonymiser::new(&SecretKey::from_bytes(KEY.to_vec()).unwrap()),
            ValidatorConfig::default(),
        )
    })
}

fn digest_hex(d: Digest) -> String {
    format!("{d:?}")
}

/// The valid base event of a type, as (key, raw JSON value) pairs.
fn base(ty: &str) -> Vec<(String, String)> {
    let mut f: Vec<(&str, &str)> = vec![
        ("schema", r#""d06.event.v1""#),
        ("event_id", r#""e-1""#),
        ("type", ""),
        ("occurred_at", r#""2024-05-09T08:15:30+07:00""#),
        ("source", r#""src""#),
        ("commune_code", r#""25210""#),
    ];
    match ty {
        "cccd.application" => {
            f.extend([("subject", r#""070203004567""#), ("stage", r#""received""#), ("channel", r#""station""#)])
        }
        "vneid.account" => f.extend([("subject", r#""070203004567""#), ("stage", r#""activated""#), ("level", "2")]),
        "sim.swap" => f.extend([
            ("subject", r#""0912345678""#),
            ("carrier", r#""viettel""#),
            ("from_tech", r#""2g""#),
            ("to_tech", r#""4g""#),
            ("device", r#""smartphone""#),
        ]),
        "sim.signature" => {
            f.extend([("subject", r#""0912345678""#), ("carrier", r#""mobifone""#), ("stage", r#""installed""#)])
        }
        "hotline.ticket" => f.extend([
            ("subject", r#""T-2024-000123""#),
            ("status", r#""received""#),
            ("level", r#""specialist""#),
            ("agency", r#""Sở Y tế""#),
        ]),
        other => panic!("no base for {other}"),
    }
    let type_json = format!("{ty:?}");
    f.into_iter().map(|(k, v)| (k.to_string(), if k == "type" { type_json.clone() } else { v.to_string() })).collect()
}

/// `ty`'s base event with changes: `(key, Some(raw json))` sets (in place, or
/// appended), `(key, None)` removes.
fn event(ty: &str, changes: &[(&str, Option<&str>)]) -> Vec<u8> {
    let mut f = base(ty);
    for (k, v) in changes {
        match v {
            Some(v) => match f.iter_mut().find(|(kk, _)| kk == k) {
                Some(slot) => slot.1 = v.to_string(),
                None => f.push((k.to_string(), v.to_string())),
            },
            None => f.retain(|(kk, _)| kk != k),
        }
    }
    render(&f).into_bytes()
}

fn render(f: &[(String, String)]) -> String {
    let body: Vec<String> = f.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
    format!("{{{}}}", body.join(","))
}

fn s(v: &str) -> String {
    format!("{v:?}")
}

fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

struct Case {
    name: &'static str,
    input: Vec<u8>,
    watermark: Option<Nanos>,
    want: Option<Reason>, // None = accepted
}

fn ok(name: &'static str, input: Vec<u8>) -> Case {
    Case { name, input, watermark: None, want: None }
}

fn rej(name: &'static str, input: Vec<u8>, want: Reason) -> Case {
    Case { name, input, watermark: None, want: Some(want) }
}

fn at(offset: Nanos) -> String {
    // RFC 3339 for T0 + offset, in UTC with nanoseconds.
    let dt = DateTime::from_timestamp_nanos(T0 + offset);
    s(&dt.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
}

fn cases() -> Vec<Case> {
    use Reason::*;
    let cccd = |c: &[(&str, Option<&str>)]| event("cccd.application", c);
    let vneid = |c: &[(&str, Option<&str>)]| event("vneid.account", c);
    let swap = |c: &[(&str, Option<&str>)]| event("sim.swap", c);
    let sig = |c: &[(&str, Option<&str>)]| event("sim.signature", c);
    let hot = |c: &[(&str, Option<&str>)]| event("hotline.ticket", c);
    let valid = cccd(&[]);
    let long = |n: usize, c: char| s(&std::iter::repeat_n(c, n).collect::<String>());
    let (e128, e129, e128u) = (long(128, 'e'), long(129, 'e'), long(128, 'ệ'));
    let (s64, s65) = (long(64, 's'), long(65, 's'));
    let (a256, a257) = (long(256, 'ả'), long(257, 'a'));
    let (t128, t129) = (long(128, 't'), long(129, 't'));
    let future_ok = at(NOW - T0 + 10 * MIN);
    let future_bad = at(NOW - T0 + 10 * MIN + NANOS_PER_SEC);
    let frac = at(123_456_789);
    let mut dup_known = valid.clone();
    dup_known.splice(1..1, br#""event_id":"e-2","#.iter().copied());

    let mut v = vec![
        // Accepted, one per type and the edges.
        ok("cccd", cccd(&[])),
        ok("cccd without channel", cccd(&[("channel", None)])),
        ok("vneid", vneid(&[])),
        ok("vneid level 1", vneid(&[("level", Some("1"))])),
        ok("sim.swap", swap(&[])),
        ok("sim.swap 5g feature phone", swap(&[("to_tech", Some(r#""5g""#)), ("device", Some(r#""feature_phone""#))])),
        ok("sim.swap +84", swap(&[("subject", Some(r#""+84912345678""#))])),
        ok("sim.swap 84", swap(&[("subject", Some(r#""84912345678""#))])),
        ok("sim.signature", sig(&[])),
        ok("hotline", hot(&[])),
        ok("hotline without agency", hot(&[("agency", None)])),
        ok("hotline empty agency", hot(&[("agency", Some(r#""""#))])),
        ok("hotline agency 256 chars", hot(&[("agency", Some(&a256))])),
        ok("hotline ticket 128 chars", hot(&[("subject", Some(&t128))])),
        ok("hotline ticket with spaces", hot(&[("subject", Some(r#"" T 1 ""#))])),
        ok("district only", cccd(&[("commune_code", None), ("district_code", Some(r#""688""#))])),
        ok("commune and its district", cccd(&[("district_code", Some(r#""689""#))])),
        ok("event_id 128 chars", cccd(&[("event_id", Some(&e128))])),
        ok("event_id 128 multibyte chars", cccd(&[("event_id", Some(&e128u))])),
        ok("source 64 chars", cccd(&[("source", Some(&s64))])),
        ok("extra fields of every kind", cccd(&[("x", Some(r#"{"a":[1,2,{"b":null}]}"#)), ("y", Some("1e400")), ("level", Some("7"))])),
        ok("whitespace around", cat(b" \r\n\t", &cat(&valid, b" \n"))),
        ok("escaped known key and value", br#"{"sch\u0065ma":"d06.event.v1","event_id":"e-1","type":"cccd.application","occurred_at":"2024-05-09T08:15:30+07:00","source":"src","commune_code":"25210","subject":"070203004567","stage":"receiv\u0065d"}"#.to_vec()),
        ok("UTC offset Z", cccd(&[("occurred_at", Some(&frac))])),
        ok("future exactly at +10 min", cccd(&[("occurred_at", Some(&future_ok))])),
        Case {
            name: "too_late exactly at the horizon",
            input: cccd(&[("occurred_at", Some(&frac))]),
            watermark: Some(T0 + 123_456_789 + HORIZON),
            want: None,
        },
        // malformed_json
        rej("BOM", cat(b"\xEF\xBB\xBF", &valid), MalformedJson),
        rej("invalid UTF-8 in an extra string", cccd(&[("x", Some("\"\u{1}\""))]).iter().map(|&b| if b == 1 { 0xff } else { b }).collect(), MalformedJson),
        rej("invalid UTF-8 outside strings", cat(&valid, b"\xc3"), MalformedJson),
        rej("trailing garbage", cat(&valid, b"x"), MalformedJson),
        rej("trailing comma", cat(&valid, b","), MalformedJson),
        rej("second JSON value", cat(&valid, &valid), MalformedJson),
        rej("second JSON value after a newline", cat(&valid, &cat(b"\n", &valid)), MalformedJson),
        rej("array", cat(b"[", &cat(&valid, b"]")), MalformedJson),
        rej("string", br#""d06.event.v1""#.to_vec(), MalformedJson),
        rej("number", b"42".to_vec(), MalformedJson),
        rej("null", b"null".to_vec(), MalformedJson),
        rej("empty input", Vec::new(), MalformedJson),
        rej("whitespace only", b"  \n".to_vec(), MalformedJson),
        rej("duplicate known key", dup_known, MalformedJson),
        rej("duplicate extra key", format!("{{\"x\":1,{}", String::from_utf8(cccd(&[("x", Some("2"))])).unwrap().trim_start_matches('{')).into_bytes(), MalformedJson),
        rej("truncated", valid[..valid.len() - 1].to_vec(), MalformedJson),
        rej("single quotes", b"{'schema':'d06.event.v1'}".to_vec(), MalformedJson),
        rej("raw control character in a string", cccd(&[("source", Some("\"a\tb\""))]), MalformedJson),
        // unsupported_schema
        rej("schema v2", cccd(&[("schema", Some(r#""d06.event.v2""#))]), UnsupportedSchema),
        rej("schema case", cccd(&[("schema", Some(r#""D06.EVENT.V1""#))]), UnsupportedSchema),
        rej("schema number", cccd(&[("schema", Some("1"))]), UnsupportedSchema),
        rej("schema null", cccd(&[("schema", Some("null"))]), UnsupportedSchema),
        rej("bad schema only", br#"{"schema":"bad"}"#.to_vec(), UnsupportedSchema),
        rej("bad schema and unknown type", cccd(&[("schema", Some(r#""x""#)), ("type", Some(r#""x""#))]), UnsupportedSchema),
        // unknown_type
        rej("type unknown", cccd(&[("type", Some(r#""cccd""#))]), UnknownType),
        rej("type case", cccd(&[("type", Some(r#""CCCD.application""#))]), UnknownType),
        rej("type number", cccd(&[("type", Some("5"))]), UnknownType),
        rej("type null", cccd(&[("type", Some("null"))]), UnknownType),
        rej("unknown type and missing subject", cccd(&[("type", Some(r#""x""#)), ("subject", None)]), UnknownType),
        // missing_field
        rej("type only, no schema", br#"{"type":"x"}"#.to_vec(), MissingField),
        rej("no schema", cccd(&[("schema", None)]), MissingField),
        rej("no type", cccd(&[("type", None)]), MissingField),
        rej("no event_id", cccd(&[("event_id", None)]), MissingField),
        rej("no occurred_at", cccd(&[("occurred_at", None)]), MissingField),
        rej("no source", cccd(&[("source", None)]), MissingField),
        rej("no area", cccd(&[("commune_code", None)]), MissingField),
        rej("no subject", cccd(&[("subject", None)]), MissingField),
        rej("cccd no stage", cccd(&[("stage", None)]), MissingField),
        rej("vneid no stage", vneid(&[("stage", None)]), MissingField),
        rej("vneid no level", vneid(&[("level", None)]), MissingField),
        rej("swap no carrier", swap(&[("carrier", None)]), MissingField),
        rej("swap no from_tech", swap(&[("from_tech", None)]), MissingField),
        rej("swap no to_tech", swap(&[("to_tech", None)]), MissingField),
        rej("swap no device", swap(&[("device", None)]), MissingField),
        rej("signature no carrier", sig(&[("carrier", None)]), MissingField),
        rej("signature no stage", sig(&[("stage", None)]), MissingField),
        rej("hotline no status", hot(&[("status", None)]), MissingField),
        rej("hotline no level", hot(&[("level", None)]), MissingField),
        rej("missing and invalid", cccd(&[("event_id", Some("5")), ("subject", None)]), MissingField),
        rej("missing type field and invalid envelope", vneid(&[("level", None), ("commune_code", Some(r#""x""#))]), MissingField),
        // invalid_field
        rej("event_id empty", cccd(&[("event_id", Some(r#""""#))]), InvalidField),
        rej("event_id 129 chars", cccd(&[("event_id", Some(&e129))]), InvalidField),
        rej("event_id number", cccd(&[("event_id", Some("5"))]), InvalidField),
        rej("event_id null", cccd(&[("event_id", Some("null"))]), InvalidField),
        rej("occurred_at no offset", cccd(&[("occurred_at", Some(r#""2024-05-09T08:15:30""#))]), InvalidField),
        rej("occurred_at date only", cccd(&[("occurred_at", Some(r#""2024-05-09""#))]), InvalidField),
        rej("occurred_at garbage", cccd(&[("occurred_at", Some(r#""yesterday""#))]), InvalidField),
        rej("occurred_at bad month", cccd(&[("occurred_at", Some(r#""2024-13-09T08:15:30+07:00""#))]), InvalidField),
        rej("occurred_at unix number", cccd(&[("occurred_at", Some("1715217330"))]), InvalidField),
        rej("occurred_at beyond 2262", cccd(&[("occurred_at", Some(r#""2300-01-01T00:00:00Z""#))]), InvalidField),
        rej("source empty", cccd(&[("source", Some(r#""""#))]), InvalidField),
        rej("source 65 chars", cccd(&[("source", Some(&s65))]), InvalidField),
        rej("source array", cccd(&[("source", Some("[]"))]), InvalidField),
        rej("commune 4 digits", cccd(&[("commune_code", Some(r#""2521""#))]), InvalidField),
        rej("commune 6 digits", cccd(&[("commune_code", Some(r#""252100""#))]), InvalidField),
        rej("commune letter", cccd(&[("commune_code", Some(r#""2521a""#))]), InvalidField),
        rej("commune full-width digits", cccd(&[("commune_code", Some(r#""２５２１０""#))]), InvalidField),
        rej("commune number", cccd(&[("commune_code", Some("25210"))]), InvalidField),
        rej("commune null", cccd(&[("commune_code", Some("null"))]), InvalidField),
        rej("district 2 digits", cccd(&[("district_code", Some(r#""68""#))]), InvalidField),
        rej("district full-width", cccd(&[("district_code", Some(r#""６８９""#))]), InvalidField),
        rej("district number", cccd(&[("district_code", Some("689"))]), InvalidField),
        rej("cccd subject 11 digits", cccd(&[("subject", Some(r#""07020300456""#))]), InvalidField),
        rej("cccd subject 13 digits", cccd(&[("subject", Some(r#""0702030045678""#))]), InvalidField),
        rej("cccd subject letter", cccd(&[("subject", Some(r#""07020300456x""#))]), InvalidField),
        rej("cccd subject full-width", cccd(&[("subject", Some(r#""０７０２０３００４５６７""#))]), InvalidField),
        rej("cccd subject number", cccd(&[("subject", Some("70203004567"))]), InvalidField),
        rej("vneid subject a phone", vneid(&[("subject", Some(r#""0912345678""#))]), InvalidField),
        rej("swap subject landline", swap(&[("subject", Some(r#""0212345678""#))]), InvalidField),
        rej("swap subject with space", swap(&[("subject", Some(r#""+84 912345678""#))]), InvalidField),
        rej("signature subject a CCCD", sig(&[("subject", Some(r#""070203004567""#))]), InvalidField),
        rej("hotline subject empty", hot(&[("subject", Some(r#""""#))]), InvalidField),
        rej("hotline subject 129 chars", hot(&[("subject", Some(&t129))]), InvalidField),
        rej("hotline subject number", hot(&[("subject", Some("123"))]), InvalidField),
        rej("cccd stage case", cccd(&[("stage", Some(r#""Received""#))]), InvalidField),
        rej("cccd stage of another type", cccd(&[("stage", Some(r#""activated""#))]), InvalidField),
        rej("cccd stage null", cccd(&[("stage", Some("null"))]), InvalidField),
        rej("cccd channel unknown", cccd(&[("channel", Some(r#""web""#))]), InvalidField),
        rej("cccd channel null", cccd(&[("channel", Some("null"))]), InvalidField),
        rej("vneid stage", vneid(&[("stage", Some(r#""received""#))]), InvalidField),
        rej("vneid level 3", vneid(&[("level", Some("3"))]), InvalidField),
        rej("vneid level 0", vneid(&[("level", Some("0"))]), InvalidField),
        rej("vneid level -2", vneid(&[("level", Some("-2"))]), InvalidField),
        rej("vneid level 2.0", vneid(&[("level", Some("2.0"))]), InvalidField),
        rej("vneid level 2e0", vneid(&[("level", Some("2e0"))]), InvalidField),
        rej("vneid level string", vneid(&[("level", Some(r#""2""#))]), InvalidField),
        rej("vneid level null", vneid(&[("level", Some("null"))]), InvalidField),
        rej("vneid level true", vneid(&[("level", Some("true"))]), InvalidField),
        rej("swap carrier case", swap(&[("carrier", Some(r#""Viettel""#))]), InvalidField),
        rej("swap from_tech 3g", swap(&[("from_tech", Some(r#""3g""#))]), InvalidField),
        rej("swap to_tech 3g", swap(&[("to_tech", Some(r#""3g""#))]), InvalidField),
        rej("swap device tablet", swap(&[("device", Some(r#""tablet""#))]), InvalidField),
        rej("signature carrier", sig(&[("carrier", Some(r#""vnpt""#))]), InvalidField),
        rej("signature stage", sig(&[("stage", Some(r#""active""#))]), InvalidField),
        rej("hotline status", hot(&[("status", Some(r#""closed""#))]), InvalidField),
        rej("hotline level number", hot(&[("level", Some("2"))]), InvalidField),
        rej("hotline level unknown", hot(&[("level", Some(r#""senior""#))]), InvalidField),
        rej("hotline agency 257 chars", hot(&[("agency", Some(&a257))]), InvalidField),
        rej("hotline agency number", hot(&[("agency", Some("7"))]), InvalidField),
        rej("hotline agency null", hot(&[("agency", Some("null"))]), InvalidField),
        rej("invalid and unknown area", cccd(&[("commune_code", Some(r#""99999""#)), ("stage", Some(r#""x""#))]), InvalidField),
        rej("invalid and future", cccd(&[("occurred_at", Some(&future_bad)), ("stage", Some(r#""x""#))]), InvalidField),
        // unknown_area
        rej("unknown commune", cccd(&[("commune_code", Some(r#""99999""#))]), UnknownArea),
        rej("unknown district", cccd(&[("commune_code", None), ("district_code", Some(r#""999""#))]), UnknownArea),
        rej("unknown commune, known district", cccd(&[("commune_code", Some(r#""99999""#)), ("district_code", Some(r#""688""#))]), UnknownArea),
        rej("unknown area and future", cccd(&[("commune_code", Some(r#""99999""#)), ("occurred_at", Some(&future_bad))]), UnknownArea),
        // area_mismatch
        rej("commune not in district", cccd(&[("district_code", Some(r#""688""#))]), AreaMismatch),
        rej("mismatch and future", cccd(&[("district_code", Some(r#""688""#)), ("occurred_at", Some(&future_bad))]), AreaMismatch),
        // future_event
        rej("future +10 min + 1 s", cccd(&[("occurred_at", Some(&future_bad))]), FutureEvent),
        rej("future in another zone", cccd(&[("occurred_at", Some(r#""2024-05-09T02:26:31+00:00""#))]), FutureEvent),
        Case {
            name: "future and too late",
            input: cccd(&[("occurred_at", Some(&future_bad))]),
            watermark: Some(T0 + 100 * HORIZON),
            want: Some(FutureEvent),
        },
        // too_late
        Case {
            name: "too_late one nanosecond past the horizon",
            input: cccd(&[("occurred_at", Some(&frac))]),
            watermark: Some(T0 + 123_456_789 + HORIZON + 1),
            want: Some(TooLate),
        },
    ];
    v.push(rej("occurred_at short offset", cccd(&[("occurred_at", Some(r#""2024-05-09T08:15:30+7""#))]), InvalidField));
    v
}

#[test]
fn table() {
    let v = validator();
    let mut seen = std::collections::HashSet::new();
    for c in cases() {
        let mut wm = c.watermark;
        let got = v.validate(&c.input, NOW, &mut wm);
        match (&got, c.want) {
            (Ok(fact), None) => {
                let want_wm = c.watermark.map_or(fact.occurred_at, |w| w.max(fact.occurred_at));
                assert_eq!(wm, Some(want_wm), "{}: watermark", c.name);
            }
            (Err(r), Some(want)) => {
                assert_eq!(r.reason, want, "{}: {}", c.name, r);
                assert_eq!(wm, c.watermark, "{}: a rejection moved the watermark", c.name);
                assert!(!r.detail.is_empty(), "{}", c.name);
                seen.insert(want);
            }
            _ => panic!("{}: got {:?}, want {:?}", c.name, got, c.want),
        }
    }
    for r in Reason::ALL {
        assert!(seen.contains(&r), "no case for {r}");
    }
}

/// Every ASCII digit run of at least 9 in the input.
fn digit_runs(input: &[u8]) -> Vec<&[u8]> {
    input.split(|b| !b.is_ascii_digit()).filter(|r| r.len() >= 9).collect()
}

fn assert_detail_is_clean(input: &[u8], r: &Rejection) {
    for run in digit_runs(input) {
        let run = std::str::from_utf8(run).unwrap();
        assert!(!r.detail.contains(run), "detail {:?} quotes {run}", r.detail);
    }
    for subject in ["070203004567", "0912345678", "T-2024-000123", "912345678"] {
        assert!(!r.detail.contains(subject), "detail {:?} quotes the subject", r.detail);
    }
    assert!(!r.detail.contains('"'), "detail {:?} quotes something", r.detail);
}

#[test]
fn details_never_quote_input() {
    let v = validator();
    let mut checked = 0;
    for c in cases() {
        let mut wm = c.watermark;
        if let Err(r) = v.validate(&c.input, NOW, &mut wm) {
            assert_detail_is_clean(&c.input, &r);
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked}");
}

#[test]
fn details_name_field_and_rule() {
    let v = validator();
    let detail = |input: Vec<u8>| v.validate(&input, NOW, &mut None).unwrap_err().to_string();
    assert_eq!(
        detail(cat(b"\xEF\xBB\xBF", &event("cccd.application", &[]))),
        "malformed_json: starts with a byte order mark"
    );
    assert_eq!(detail(b"[]".to_vec()), "malformed_json: not a JSON object");
    assert_eq!(detail(br#"{"a":1,"a":1}"#.to_vec()), "malformed_json: duplicate key");
    assert_eq!(detail(br#"{"type":"x"}"#.to_vec()), "missing_field: schema: missing");
    assert_eq!(
        detail(event("vneid.account", &[("subject", None), ("level", None), ("commune_code", None)])),
        "missing_field: commune_code or district_code, subject, level: missing"
    );
    assert_eq!(
        detail(event("cccd.application", &[("subject", Some(r#""123""#))])),
        "invalid_field: subject: not 12 ASCII digits"
    );
    assert_eq!(
        detail(event("cccd.application", &[("occurred_at", Some(r#""2024-05-09T08:15:30""#))])),
        "invalid_field: occurred_at: no UTC offset"
    );
    assert_eq!(
        detail(event("cccd.application", &[("occurred_at", Some(r#""2024-05-09 08:15:30.5""#))])),
        "invalid_field: occurred_at: no UTC offset"
    );
    assert_eq!(
        detail(event("cccd.application", &[("occurred_at", Some(r#""noon""#))])),
        "invalid_field: occurred_at: not an RFC 3339 timestamp"
    );
    assert_eq!(
        detail(event("sim.swap", &[("device", Some(r#""x""#))])),
        "invalid_field: device: not one of smartphone, feature_phone"
    );
    assert_eq!(
        detail(event("vneid.account", &[("level", Some("2.0"))])),
        "invalid_field: level: not the integer 1 or 2"
    );
    assert_eq!(
        detail(event("cccd.application", &[("commune_code", None), ("district_code", Some(r#""999""#))])),
        "unknown_area: district_code: unknown code"
    );
    assert_eq!(
        detail(event("cccd.application", &[("commune_code", Some(r#""99999""#))])),
        "unknown_area: commune_code: unknown code"
    );
}

#[test]
fn accepted_facts_carry_exactly_the_normalised_fields() {
    let v = validator();
    let g = geo();
    let commune = g.find(AreaLevel::Commune, "25210").unwrap();
    let mut wm = None;

    let f = v.validate(&event("vneid.account", &[("x", Some(r#""0987654321""#))]), NOW, &mut wm).unwrap();
    assert_eq!(&*f.event_id, "e-1");
    assert_eq!(digest_hex(f.subject), "cebc384ad4ab2c3b867a25257a8d0310"); // Python hmac
    assert_eq!(f.occurred_at, T0);
    assert_eq!(f.day, NaiveDate::from_ymd_opt(2024, 5, 9).unwrap());
    assert_eq!(f.area, commune);
    assert_eq!(f.kind, FactKind::Vneid { stage: VneidStage::Activated, level: 2 });
    assert_eq!(wm, Some(T0));

    let f = v.validate(&event("cccd.application", &[]), NOW, &mut wm).unwrap();
    assert_eq!(f.kind, FactKind::Cccd { stage: CccdStage::Received });
    assert_eq!(digest_hex(f.subject), "cebc384ad4ab2c3b867a25257a8d0310");

    // All three phone spellings give one digest.
    for phone in [r#""0912345678""#, r#""84912345678""#, r#""+84912345678""#] {
        let f = v.validate(&event("sim.swap", &[("subject", Some(phone))]), NOW, &mut wm).unwrap();
        assert_eq!(digest_hex(f.subject), "dccd5d409110d2635f1401d8223e671e", "{phone}");
        assert_eq!(f.kind, FactKind::SimSwap { device: Device::Smartphone });
    }
    let f = v.validate(&event("sim.signature", &[("subject", Some(r#""+84387654321""#))]), NOW, &mut wm).unwrap();
    assert_eq!(digest_hex(f.subject), "de1ef571dbf00014538674d8a59a6397");
    assert_eq!(f.kind, FactKind::SimSignature { stage: SignatureStage::Installed });

    let f = v.validate(&event("hotline.ticket", &[]), NOW, &mut wm).unwrap();
    assert_eq!(digest_hex(f.subject), "662c72af7da4ff0ad664491934780fd9");
    assert_eq!(f.kind, FactKind::Hotline { status: TicketStatus::Received, level: TicketLevel::Specialist });

    // A ticket id spelled like a phone number is another subject.
    let f = v.validate(&event("hotline.ticket", &[("subject", Some(r#""0912345678""#))]), NOW, &mut wm).unwrap();
    assert_eq!(digest_hex(f.subject), "f1722c17a7edc6527d003c8f05ae0abe");

    // District only: the district's area.
    let f = v
        .validate(
            &event("cccd.application", &[("commune_code", None), ("district_code", Some(r#""688""#))]),
            NOW,
            &mut wm,
        )
        .unwrap();
    assert_eq!(f.area, g.find(AreaLevel::District, "688").unwrap());
    assert_ne!(f.area, commune);
}

#[test]
fn day_is_the_local_date() {
    let v = validator();
    let mut wm = None;
    // 23:30 UTC on 9 May is 06:30 on 10 May in Hồ Chí Minh City (UTC+7).
    let f = v
        .validate(
            &event("cccd.application", &[("occurred_at", Some(r#""2024-05-09T23:30:00Z""#))]),
            NOW + 86_400 * NANOS_PER_SEC,
            &mut wm,
        )
        .unwrap();
    assert_eq!(f.occurred_at, 1_715_297_400 * NANOS_PER_SEC);
    assert_eq!(f.day, NaiveDate::from_ymd_opt(2024, 5, 10).unwrap());
    // 16:59:59 UTC is still 9 May locally (23:59:59).
    let f = v
        .validate(
            &event("cccd.application", &[("occurred_at", Some(r#""2024-05-09T16:59:59Z""#))]),
            NOW + 86_400 * NANOS_PER_SEC,
            &mut wm,
        )
        .unwrap();
    assert_eq!(f.day, NaiveDate::from_ymd_opt(2024, 5, 9).unwrap());
    let f = v
        .validate(
            &event("cccd.application", &[("occurred_at", Some(r#""2024-05-09T17:00:00Z""#))]),
            NOW + 86_400 * NANOS_PER_SEC,
            &mut wm,
        )
        .unwrap();
    assert_eq!(f.day, NaiveDate::from_ymd_opt(2024, 5, 10).unwrap());
    // Another configured zone gives another day.
    let utc = Validator::new(
        geo(),
        Pseudonymiser::new(&SecretKey::from_bytes(KEY.to_vec()).unwrap()),
        ValidatorConfig { time_zone: chrono_tz::UTC, ..ValidatorConfig::default() },
    );
    let f = utc
        .validate(
            &event("cccd.application", &[("occurred_at", Some(r#""2024-05-09T17:00:00Z""#))]),
            NOW + 86_400 * NANOS_PER_SEC,
            &mut None,
        )
        .unwrap();
    assert_eq!(f.day, NaiveDate::from_ymd_opt(2024, 5, 9).unwrap());
}

#[test]
fn watermark_moves_only_forward_and_only_on_success() {
    let v = validator();
    let mut wm = None;
    let later = at(HORIZON);
    v.validate(&event("cccd.application", &[("occurred_at", Some(&later))]), NOW + HORIZON, &mut wm).unwrap();
    assert_eq!(wm, Some(T0 + HORIZON));
    // Older but inside the horizon: accepted, the watermark stays.
    v.validate(&event("cccd.application", &[]), NOW + HORIZON, &mut wm).unwrap();
    assert_eq!(wm, Some(T0 + HORIZON));
    // One nanosecond too old: rejected.
    let too_old = at(-1);
    let r =
        v.validate(&event("cccd.application", &[("occurred_at", Some(&too_old))]), NOW + HORIZON, &mut wm).unwrap_err();
    assert_eq!(r.reason, Reason::TooLate);
    assert_eq!(wm, Some(T0 + HORIZON));
    // A far-future event is rejected and does not drag the watermark forward.
    let far = at(HORIZON * 3);
    let r = v.validate(&event("cccd.application", &[("occurred_at", Some(&far))]), NOW + HORIZON, &mut wm).unwrap_err();
    assert_eq!(r.reason, Reason::FutureEvent);
    assert_eq!(wm, Some(T0 + HORIZON));
    // An invalid event with a newer time does not move it either.
    let r = v
        .validate(
            &event("cccd.application", &[("occurred_at", Some(&at(HORIZON + MIN))), ("stage", Some("1"))]),
            NOW + HORIZON,
            &mut wm,
        )
        .unwrap_err();
    assert_eq!(r.reason, Reason::InvalidField);
    assert_eq!(wm, Some(T0 + HORIZON));
}

#[test]
fn validator_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Validator>();
    assert_send_sync::<Rejection>();
}

#[test]
fn reasons_are_spelled_as_the_contract() {
    let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "malformed_json",
            "unsupported_schema",
            "unknown_type",
            "missing_field",
            "invalid_field",
            "unknown_area",
            "area_mismatch",
            "future_event",
            "too_late"
        ]
    );
    let r = Rejection { reason: Reason::TooLate, detail: "x: y".into() };
    assert_eq!(r.to_string(), "too_late: x: y");
}

#[test]
fn validate_lines_uses_one_watermark_and_skips_blank_lines() {
    let v = validator();
    let mut input = Vec::new();
    let newest = at(HORIZON);
    // 1: accepted, sets the watermark to T0 + HORIZON.
    input.extend(event("cccd.application", &[("occurred_at", Some(&newest))]));
    input.extend(b"\n\n"); // 2: blank
    input.extend(b"   \t\r\n"); // 3: blank
                                // 4: one nanosecond older than the horizon allows: too_late (shared watermark).
    input.extend(event("cccd.application", &[("occurred_at", Some(&at(-1)))]));
    input.extend(b"\r\n");
    // 5: exactly at the horizon: accepted (CRLF ending).
    input.extend(event("sim.swap", &[]));
    input.extend(b"\r\n");
    // 6: not UTF-8.
    input.extend(b"{\"x\":\"\xff\"}\n");
    // 7: missing fields.
    input.extend(b"{\"schema\":\"d06.event.v1\",\"type\":\"sim.swap\"}\n");
    // 8: accepted, no final newline.
    input.extend(event("hotline.ticket", &[]));
    let (rejections, accepted) = validate_lines(v, Cursor::new(input), NOW + HORIZON).unwrap();
    assert_eq!(accepted, 3);
    let got: Vec<(usize, Reason)> = rejections.iter().map(|(n, r)| (*n, r.reason)).collect();
    assert_eq!(got, [(4, Reason::TooLate), (6, Reason::MalformedJson), (7, Reason::MissingField)]);

    let (rejections, accepted) = validate_lines(v, Cursor::new(Vec::new()), NOW).unwrap();
    assert!(rejections.is_empty());
    assert_eq!(accepted, 0);
}

#[test]
fn validate_lines_with_tells_how_far_after_every_line() {
    let mut input = Vec::new();
    input.extend(event("sim.swap", &[]));
    let first = input.len() as u64 + 1;
    input.extend(b"\n\n{\"x\":1}\n"); // 2: blank, 3: rejected
    input.extend(event("sim.swap", &[])); // 4: no final newline
    let total = input.len() as u64;
    let mut seen = Vec::new();
    let (rejections, accepted) =
        validate_lines_with(validator(), Cursor::new(input), NOW + HORIZON, |r| seen.push(r)).unwrap();
    assert_eq!((rejections.len(), accepted), (1, 2));
    let r = |bytes, lines, rejected| LinesRead { bytes, lines, rejected };
    assert_eq!(seen, [r(first, 1, 0), r(first + 1, 2, 0), r(first + 9, 3, 1), r(total, 4, 1)]);
}

#[test]
fn validate_lines_reports_read_errors() {
    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk gone"))
        }
    }
    let err = validate_lines(validator(), std::io::BufReader::new(Broken), NOW).unwrap_err();
    assert_eq!(err.to_string(), "disk gone");
}

/// Timing of the whole path; run with
/// `cargo test -p ingest --release -- --ignored --nocapture timing`.
#[test]
#[ignore]
fn timing() {
    let v = validator();
    let msg = event(
        "vneid.account",
        &[
            ("event_id", Some(r#""c06-vneid-20240509-000123""#)),
            ("source", Some(r#""c06-vneid""#)),
            ("trace_id", Some(r#""4bf92f3577b34da6a3ce929d0e0e4736""#)),
            ("producer_version", Some(r#""2.3.1""#)),
        ],
    );
    assert!((280..=320).contains(&msg.len()), "{}", msg.len());
    let n = 1_000_000u32;
    let start = std::time::Instant::now();
    let mut ok = 0;
    for _ in 0..n {
        let mut wm = None;
        ok += v.validate(std::hint::black_box(&msg), NOW, &mut wm).is_ok() as u32;
    }
    let per = start.elapsed() / n;
    assert_eq!(ok, n);
    println!("{} bytes: {per:?} per event", msg.len());
}

/// A valid event of `ty` with at most one field deleted, a few bytes
/// overwritten, and perhaps truncated.
fn mutated(ty: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let fields = base(ty);
    (
        proptest::option::of(any::<prop::sample::Index>()),
        proptest::option::of(any::<prop::sample::Index>()),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    )
        .prop_map(move |(delete, cut, flips)| {
            let mut kept = fields.clone();
            if let Some(d) = delete {
                kept.remove(d.index(kept.len()));
            }
            let mut bytes = render(&kept).into_bytes();
            for (i, b) in flips {
                let i = i.index(bytes.len());
                bytes[i] = b;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes
        })
}

fn check_any(bytes: &[u8], wm0: Option<Nanos>) -> Result<(), TestCaseError> {
    let mut wm = wm0;
    match validator().validate(bytes, NOW, &mut wm) {
        Ok(f) => {
            prop_assert!(!f.event_id.is_empty());
            prop_assert_eq!(wm, Some(wm0.map_or(f.occurred_at, |w| w.max(f.occurred_at))));
            prop_assert!(f.occurred_at <= NOW + 10 * MIN);
        }
        Err(r) => {
            prop_assert_eq!(wm, wm0);
            prop_assert!(Reason::ALL.contains(&r.reason));
            prop_assert!(!r.detail.is_empty());
            for run in digit_runs(bytes) {
                prop_assert!(!r.detail.contains(std::str::from_utf8(run).unwrap()));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), wm in proptest::option::of(any::<i64>())) {
        check_any(&bytes, wm)?;
    }

    #[test]
    fn arbitrary_json_like_text_never_panics(text in r#"[{}\[\]",:0-9a-z\\ .+-]{0,200}"#) {
        check_any(text.as_bytes(), None)?;
    }

    #[test]
    fn mutated_events_never_panic(
        bytes in prop_oneof![
            mutated("cccd.application"),
            mutated("vneid.account"),
            mutated("sim.swap"),
            mutated("sim.signature"),
            mutated("hotline.ticket"),
        ],
        wm in proptest::option::of(T0 - HORIZON..T0 + 2 * HORIZON),
    ) {
        check_any(&bytes, wm)?;
    }

    #[test]
    fn unmutated_events_are_accepted(ty in prop::sample::select(vec!["cccd.application", "vneid.account", "sim.swap", "sim.signature", "hotline.ticket"])) {
        let mut wm = None;
        prop_assert!(validator().validate(&event(ty, &[]), NOW, &mut wm).is_ok());
    }
}

#[test]
fn common_timestamps_are_read_directly() {
    let cases: &[(&str, Option<Nanos>)] = &[
        ("2024-05-09T08:15:30+07:00", Some(T0)),
        ("2024-05-09T01:15:30Z", Some(T0)),
        ("2024-05-09T01:15:30.5Z", Some(T0 + 500_000_000)),
        ("2024-05-09T01:15:30.123456789Z", Some(T0 + 123_456_789)),
        ("2024-05-08T20:45:30-04:30", Some(T0)),
        ("2000-02-29T00:00:00Z", Some(951_782_400 * NANOS_PER_SEC)),
        ("1900-03-01T00:00:00Z", Some(-2_203_891_200 * NANOS_PER_SEC)),
        ("2199-12-31T23:59:59+23:59", Some((7_258_118_399 - 86_340) * NANOS_PER_SEC)),
        // Left to chrono (valid or not).
        ("2023-02-29T00:00:00Z", None),
        ("2024-05-09T01:15:60Z", None),
        ("2024-05-09t01:15:30Z", None),
        ("2024-05-09 01:15:30Z", None),
        ("2024-05-09T01:15:30z", None),
        ("2024-05-09T01:15:30.1234567891Z", None),
        ("2024-05-09T01:15:30.Z", None),
        ("2024-05-09T01:15:30+24:00", None),
        ("2024-05-09T01:15:30+0700", None),
        ("2024-05-09T01:15:30", None),
        ("2024-05-09T01:15:30Z ", None),
        ("2200-01-01T00:00:00Z", None),
        ("1899-12-31T23:59:59Z", None),
        ("2024-5-09T01:15:30Z", None),
        ("２024-05-09T01:15:30Z", None),
    ];
    for (s, want) in cases {
        assert_eq!(rfc3339_common(s), *want, "{s}");
    }
}

/// Timestamps near the common shape: every field over and under its range,
/// each separator and offset form chrono knows and some it does not.
fn timestamp_like() -> impl Strategy<Value = String> {
    (
        (1890i64..2210, 0i64..14, 0i64..33),
        (0i64..26, 0i64..62, 0i64..62),
        prop::sample::select(vec!["T", "T", "T", "t", " ", "_"]),
        prop_oneof![3 => Just(String::new()), 2 => "\\.[0-9]{0,11}"],
        prop_oneof![
            2 => Just("Z".to_string()),
            1 => Just("z".to_string()),
            4 => (prop::sample::select(vec!["+", "-"]), 0i64..30, 0i64..64).prop_map(|(s, h, m)| format!("{s}{h:02}:{m:02}")),
            1 => Just("+0700".to_string()),
            1 => Just(String::new()),
        ],
    )
        .prop_map(|((y, mo, d), (h, mi, s), sep, frac, off)| format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{off}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn chrono_agrees_with_the_direct_reading(s in timestamp_like()) {
        if let Some(nanos) = rfc3339_common(&s) {
            let dt = DateTime::parse_from_rfc3339(&s);
            prop_assert!(dt.is_ok(), "{} read as {} but chrono refuses it", s, nanos);
            prop_assert_eq!(dt.ok().and_then(|d| d.timestamp_nanos_opt()), Some(nanos), "{}", s);
        }
    }
}
