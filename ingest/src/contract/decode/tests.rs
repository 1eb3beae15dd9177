//! The decoder's tests: the fast path agrees with serde, every JSON corner the contract settles.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use proptest::prelude::*;

/// The fast path's verdict, checked against serde's when it succeeds.
fn fast(text: &str) -> Option<Raw<'_>> {
    let mut raw = Raw::new();
    fast_fill(text, &mut raw).then_some(raw)
}

#[test]
fn the_fast_path_takes_plain_flat_objects() {
    let text = " {\"schema\":\"d06.event.v1\", \"level\" : 2,\"stage\":null,\"channel\":true,\"x\":\"ệ\",\"y\":0,\"z\":false,\"agency\":\"\"}\r\n";
    let raw = fast(text).unwrap();
    assert!(matches!(raw.get(Field::Schema), Some(Val::Str(Cow::Borrowed("d06.event.v1")))));
    assert_eq!(raw.get(Field::Level), Some(&Val::Int(2)));
    assert_eq!(raw.get(Field::Stage), Some(&Val::Other));
    assert_eq!(raw.get(Field::Channel), Some(&Val::Other));
    assert!(matches!(raw.get(Field::Agency), Some(Val::Str(Cow::Borrowed("")))));
    assert!(!raw.has(Field::Subject));
    assert_eq!(parse_serde(text), Ok(raw));
    assert_eq!(fast("{}"), Some(Raw::new()));
    assert_eq!(
        fast(r#"{"level":123456789012345678}"#).unwrap().get(Field::Level),
        Some(&Val::Int(123_456_789_012_345_678))
    );
}

#[test]
fn special_bytes_are_found_word_by_word() {
    let naive = |b: &[u8], i: usize| b[i..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).map(|p| i + p);
    // Every position of every special byte, after ASCII, UTF-8 and
    // bytes just above and below the thresholds.
    for fill in [b'a', 0x80, 0xff, 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f] {
        for special in [b'"', b'\\', 0x00, 0x01, 0x1f] {
            for len in 0..20 {
                for at in 0..=len {
                    let mut v = vec![fill; len];
                    if at < len {
                        v[at] = special;
                    }
                    for start in 0..=len {
                        assert_eq!(find_special(&v, start), naive(&v, start), "{fill} {special} {len} {at} {start}");
                    }
                }
            }
        }
    }
    // Two specials in one word: the first wins, whatever follows.
    assert_eq!(find_special(b"ab\\\"cdefgh", 0), Some(2));
    assert_eq!(find_special(b"abcdefg\x01\"", 0), Some(7));
    assert_eq!(find_special("é\"".as_bytes(), 0), Some(2));
}

#[test]
fn the_fast_path_leaves_everything_else_to_serde() {
    for text in [
        r#"{"sch\u0065ma":"d06.event.v1"}"#,
        r#"{"schema":"d06\n"}"#,
        "{\"schema\":\"a\u{1}b\"}",
        r#"{"level":-1}"#,
        r#"{"level":1.0}"#,
        r#"{"level":1e3}"#,
        r#"{"level":01}"#,
        r#"{"level":0.5}"#,
        r#"{"level":1234567890123456789}"#,
        r#"{"level":[1]}"#,
        r#"{"level":{}}"#,
        r#"{"level":1,"level":1}"#,
        r#"{"x":1,"x":2}"#,
        r#"{"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1}"#,
        r#"{"level":tru}"#,
        r#"{"level":1x}"#,
        r#"{"level":1,}"#,
        r#"{"level" 1}"#,
        r#"{"level":1}x"#,
        r#"{"level":1}{}"#,
        r#"{"level":1"#,
        r#"{level:1}"#,
        "[]",
        "\"x\"",
    ] {
        assert_eq!(fast(text), None, "{text}");
    }
}

/// JSON-ish objects: keys and value tokens from lists that mix what the
/// fast path takes with what it must leave (escapes, nesting, numbers of
/// every form, duplicates, junk), random whitespace and separators.
fn objectish() -> impl Strategy<Value = String> {
    let plain_keys = prop::sample::select(vec![
        "schema",
        "event_id",
        "type",
        "occurred_at",
        "source",
        "commune_code",
        "district_code",
        "subject",
        "level",
        "stage",
        "agency",
        "channel",
        "status",
        "x",
        "y",
        "trace_id",
        "",
        "ệ",
    ]);
    let keys = prop_oneof![12 => plain_keys, 1 => prop::sample::select(vec![r"sch\u0065ma", r#"lev\"el"#])];
    let plain_vals = prop::sample::select(vec![
        r#""d06.event.v1""#,
        r#""""#,
        r#""ệ x""#,
        "0",
        "7",
        "2",
        "123456789012345678",
        "true",
        "false",
        "null",
    ]);
    let odd_vals = prop::sample::select(vec![
        r#""a\"b""#,
        r#""\u0041""#,
        r#""\ud800""#,
        "\"ctl\u{1}\"",
        "-0",
        "-1",
        "01",
        "1.5",
        "1e400",
        "1E2",
        "1234567890123456789",
        "9223372036854775807",
        "99999999999999999999",
        "tru",
        "nul",
        "[1,{}]",
        "{}",
        r#"{"a":[]}"#,
        "",
        "x",
    ]);
    let vals = prop_oneof![12 => plain_vals, 1 => odd_vals];
    let ws = prop::sample::select(vec!["", "", "", " ", "\n", "\t ", "\r\n"]);
    let sep = prop_oneof![20 => Just(","), 1 => prop::sample::select(vec![", ", "", ",,", ";"])];
    let pair = (ws.clone(), keys, ws.clone(), vals, ws.clone(), sep);
    let close = prop_oneof![10 => Just("}"), 1 => prop::sample::select(vec!["} ", "}x", "", "}}", "},"])];
    (ws.clone(), prop::collection::vec(pair, 0..10), ws, close).prop_map(|(lead, pairs, ws_end, close)| {
        let mut s = format!("{lead}{{");
        for (i, (w1, k, w2, v, w3, sep)) in pairs.iter().enumerate() {
            if i > 0 {
                s.push_str(sep);
            }
            s.push_str(&format!("{w1}\"{k}\"{w2}:{w3}{v}"));
        }
        s.push_str(ws_end);
        s.push_str(close);
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    #[test]
    fn fast_path_agrees_with_serde(text in objectish()) {
        if let Some(raw) = fast(&text) {
            prop_assert_eq!(parse_serde(&text), Ok(raw));
        }
    }

    #[test]
    fn fast_path_agrees_with_serde_on_json_like_text(text in r#"[{}\[\]",:0-9a-z\\ .+\-\n]{0,120}"#) {
        if let Some(raw) = fast(&text) {
            prop_assert_eq!(parse_serde(&text), Ok(raw));
        }
    }

    /// `simdutf8` accepts exactly what `std` does: valid text with a
    /// byte changed anywhere (truncated sequences, stray continuation
    /// bytes, overlongs, surrogates) and past its SIMD block sizes.
    #[test]
    fn utf8_check_agrees_with_std(text in "\\PC{0,200}", at in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = text.into_bytes();
        if !bytes.is_empty() {
            let i = at % bytes.len();
            bytes[i] = byte;
        }
        prop_assert_eq!(simdutf8::basic::from_utf8(&bytes).is_ok(), std::str::from_utf8(&bytes).is_ok());
    }
}

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
