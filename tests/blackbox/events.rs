//! Building contract-v1 messages for tests.

#![allow(dead_code)]

/// A commune and its district (pre-2025 GSO codes), one per district.
pub const COMMUNES: [(&str, &str); 11] = [
    ("25216", "688"),
    ("25195", "689"),
    ("25320", "690"),
    ("25222", "691"),
    ("25270", "692"),
    ("25308", "693"),
    ("25327", "694"),
    ("25363", "695"),
    ("25396", "696"),
    ("25432", "697"),
    ("25240", "698"),
];

/// Where an event says it happened.
#[derive(Clone, Copy, Debug)]
pub enum Place<'a> {
    Commune(&'a str),
    District(&'a str),
    Both(&'a str, &'a str),
}

fn place(p: Place<'_>) -> String {
    match p {
        Place::Commune(c) => format!(r#""commune_code":"{c}""#),
        Place::District(d) => format!(r#""district_code":"{d}""#),
        Place::Both(c, d) => format!(r#""commune_code":"{c}","district_code":"{d}""#),
    }
}

/// One event as JSON; `body` is the type-specific fields (`"stage":"received"`).
pub fn event(ty: &str, id: &str, at: &str, p: Place<'_>, subject: &str, body: &str) -> String {
    let source = match ty {
        "cccd.application" => "c06-cccd",
        "vneid.account" => "c06-vneid",
        "hotline.ticket" => "hotline-1022",
        _ => "viettel",
    };
    format!(
        r#"{{"schema":"d06.event.v1","event_id":"{id}","type":"{ty}","occurred_at":"{at}","source":"{source}",{},"subject":"{subject}",{body}}}"#,
        place(p)
    )
}

pub fn cccd(id: &str, at: &str, p: Place<'_>, subject: &str, stage: &str) -> String {
    event("cccd.application", id, at, p, subject, &format!(r#""stage":"{stage}","channel":"station""#))
}

pub fn vneid(id: &str, at: &str, p: Place<'_>, subject: &str, stage: &str, level: u8) -> String {
    event("vneid.account", id, at, p, subject, &format!(r#""stage":"{stage}","level":{level}"#))
}

pub fn swap(id: &str, at: &str, p: Place<'_>, phone: &str, device: &str) -> String {
    event(
        "sim.swap",
        id,
        at,
        p,
        phone,
        &format!(r#""carrier":"viettel","from_tech":"2g","to_tech":"4g","device":"{device}""#),
    )
}

pub fn signature(id: &str, at: &str, p: Place<'_>, phone: &str, stage: &str) -> String {
    event("sim.signature", id, at, p, phone, &format!(r#""carrier":"vinaphone","stage":"{stage}""#))
}

pub fn ticket(id: &str, at: &str, p: Place<'_>, ticket: &str, status: &str, level: &str) -> String {
    event("hotline.ticket", id, at, p, ticket, &format!(r#""status":"{status}","level":"{level}""#))
}

/// A 12-digit citizen id derived from `n`.
pub fn citizen(n: u64) -> String {
    format!("0702{:08}", n % 100_000_000)
}

/// A Vietnamese mobile number derived from `n` (`09…`).
pub fn phone(n: u64) -> String {
    format!("09{:08}", n % 100_000_000)
}
