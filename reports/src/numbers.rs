//! Numbers the Vietnamese way: `.` between thousands, `,` before decimals.

/// An integer the Vietnamese way: `1.234.567`, `-12`.
pub fn vi_int(n: i64) -> String {
    grouped(n < 0, n.unsigned_abs())
}

/// A count the Vietnamese way: `1.493`.
pub fn vi_count(n: u64) -> String {
    grouped(false, n)
}

/// `magnitude` with `.` between thousands, after a `-` if `negative`.
fn grouped(negative: bool, magnitude: u64) -> String {
    let digits = magnitude.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if negative {
        out.push('-');
    }
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(ch);
    }
    out
}

/// Hundredths of a percent as `12,34%` (thousands grouped: `1.234,50%`).
pub(crate) fn hundredths(h: i128) -> String {
    let sign = if h < 0 { "-" } else { "" };
    let a = h.unsigned_abs();
    let whole = i64::try_from(a / 100).unwrap_or(i64::MAX);
    format!("{sign}{},{:02}%", vi_int(whole), a % 100)
}

/// `num / den` as a percentage, two decimals rounded half up (away from
/// zero); `—` when `den` is 0.
pub fn percent(num: i128, den: u64) -> String {
    if den == 0 {
        return "—".to_owned();
    }
    let den = i128::from(den);
    let scaled = num.abs() * 10_000;
    let h = (2 * scaled + den) / (2 * den);
    hundredths(if num < 0 { -h } else { h })
}

/// An average ratio (0..=1) as a percentage, two decimals.
pub(crate) fn average_percent(r: f64) -> String {
    hundredths((r * 10_000.0).round() as i128)
}
