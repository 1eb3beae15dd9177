//! Vietnamese mobile numbers: the one normal form subjects of `sim.*` events
//! are pseudonymised in (EVENTS-v1 "Phone numbers").

/// Normalises a Vietnamese mobile number to its national form `0XXXXXXXXX`.
///
/// Accepted spellings, exactly (nothing is trimmed or stripped):
/// - `0` + 9 digits (`0912345678`);
/// - `84` + 9 digits, 11 characters in all (`84912345678`);
/// - `+84` + 9 digits (`+84912345678`).
///
/// The result must be `0`, one of `3 5 7 8 9`, and 8 more digits; anything
/// else (spaces, dashes, landlines such as `0212…`, full-width or other
/// Unicode digits, 9 or 11 national digits, `+840…`) gives `None`. Digits are
/// ASCII `0`–`9` only.
pub fn normalise_phone(s: &str) -> Option<String> {
    let n = normalise_phone_bytes(s)?;
    // The bytes are ASCII digits by construction.
    Some(n.iter().map(|&b| char::from(b)).collect())
}

/// [`normalise_phone`] without the allocation: the ten ASCII digits.
pub(crate) fn normalise_phone_bytes(s: &str) -> Option<[u8; 10]> {
    let b = s.as_bytes();
    let national = if let Some(rest) = b.strip_prefix(b"+84") {
        rest
    } else if b.len() == 11 && b.starts_with(b"84") {
        &b[2..]
    } else {
        b.strip_prefix(b"0")?
    };
    if national.len() != 9 || !national.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !matches!(national[0], b'3' | b'5' | b'7' | b'8' | b'9') {
        return None;
    }
    let mut out = [b'0'; 10];
    out[1..].copy_from_slice(national);
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("0912345678", Some("0912345678")),
            ("84912345678", Some("0912345678")),
            ("+84912345678", Some("0912345678")),
            ("0312345678", Some("0312345678")),
            ("0512345678", Some("0512345678")),
            ("0712345678", Some("0712345678")),
            ("0812345678", Some("0812345678")),
            ("+84387654321", Some("0387654321")),
            // Rejected.
            ("+84 912345678", None),
            ("+84 91 234 5678", None),
            (" 0912345678", None),
            ("0912345678 ", None),
            ("091-234-5678", None),
            ("0212345678", None), // landline
            ("0112345678", None), // no such prefix
            ("0412345678", None), // no such prefix
            ("0612345678", None), // no such prefix
            ("0012345678", None),
            ("091234567", None),    // 9 digits
            ("09123456789", None),  // 11 digits
            ("8491234567", None),   // 84 + 8 digits
            ("849123456789", None), // 84 + 10 digits
            ("+8491234567", None),
            ("+849123456789", None),
            ("+840912345678", None),
            ("0084912345678", None),
            ("912345678", None),
            ("０９１２３４５６７８", None), // full-width digits
            ("09١2345678", None),           // Arabic-Indic digit
            ("", None),
            ("0", None),
            ("+84", None),
            ("84", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalise_phone(input).as_deref(), *want, "input {input:?}");
        }
    }

    #[test]
    fn bytes_form_agrees() {
        assert_eq!(normalise_phone_bytes("+84987654321"), Some(*b"0987654321"));
        assert_eq!(normalise_phone_bytes("+84 987654321"), None);
    }
}
