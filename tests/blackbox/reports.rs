//! Issues 5 and 6: `d06 report daily` and `d06 report hotline`, run as the
//! real binary against what the real app wrote to ClickHouse, compared byte
//! for byte with hand-checked fixtures (`tests/fixtures/reports/`, whose
//! README derives every number from the events below).
//!
//! The fixtures are never rewritten by the test: on a mismatch it saves what
//! it got under the system temp directory and fails; replacing a fixture is
//! a deliberate edit, with its README brought up to date.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::events::{self, citizen, phone, Place};
use crate::harness::{spawn_app, App, AppOptions, Producer};

const DAILY_MD: &str = include_str!("../fixtures/reports/daily-2024-04-20.md");
const DAILY_HTML: &str = include_str!("../fixtures/reports/daily-2024-04-20.html");
const DAILY_688_MD: &str = include_str!("../fixtures/reports/daily-2024-04-20-688.md");
const HOTLINE_APRIL: &str = include_str!("../fixtures/reports/hotline-2024-04.tsv");
const HOTLINE_APRIL_688: &str = include_str!("../fixtures/reports/hotline-2024-04-688.tsv");
const HOTLINE_25396: &str = include_str!("../fixtures/reports/hotline-2024-04-17-20-25396.tsv");

// Topic indexes in `TestTopics::sources()`.
const CCCD: usize = 0;
const VNEID: usize = 1;
const SIM: usize = 2;
const HOTLINE: usize = 3;

/// The events of the fixtures (README "Events"), as (topic index, message).
fn stream() -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let t = |day: u32, hm: &str| format!("2024-04-{day:02}T{hm}:00+07:00");
    // District 690 (Thị xã Bình Long), commune 25320: 8 CCCD applications a
    // day on 11/4–15/4, 2 on 20/4 (the second is the newest event of all).
    let bl = Place::Commune("25320");
    for day in 11..=15u32 {
        for i in 0..8u64 {
            let n = 1 + u64::from(day - 11) * 8 + i;
            out.push((CCCD, events::cccd(&format!("c690-{n}"), &t(day, "09:00"), bl, &citizen(n), "received")));
        }
    }
    out.push((CCCD, events::cccd("c690-41", &t(20, "15:00"), bl, &citizen(41), "received")));
    out.push((CCCD, events::cccd("c690-42", &t(20, "16:00"), bl, &citizen(42), "received")));

    // District 688 (Thị xã Phước Long), commune 25216.
    let pl = Place::Commune("25216");
    for n in 101..=103u64 {
        out.push((CCCD, events::cccd(&format!("c688-{n}"), &t(12, "09:00"), pl, &citizen(n), "received")));
    }
    out.push((CCCD, events::cccd("c688-101", &t(12, "09:00"), pl, &citizen(101), "received"))); // duplicate id
    out.push((CCCD, events::cccd("c688-102b", &t(20, "09:30"), pl, &citizen(102), "received"))); // counted on 12/4
    out.push((CCCD, events::cccd("c688-104", &t(19, "09:00"), pl, &citizen(104), "received")));
    out.push((CCCD, events::cccd("c688-105", &t(20, "09:00"), pl, &citizen(105), "received")));
    out.push((CCCD, events::cccd("c688-106", &t(20, "09:00"), pl, &citizen(106), "issued"))); // not a `received`
    out.push((VNEID, events::vneid("v688-101", &t(20, "10:00"), pl, &citizen(101), "activated", 2)));
    out.push((VNEID, events::vneid("v688-102", &t(20, "10:05"), pl, &citizen(102), "activated", 2)));
    out.push((VNEID, events::vneid("v688-103", &t(20, "10:10"), pl, &citizen(103), "activated", 1))); // level 1
    out.push((VNEID, events::vneid("v688-104", &t(20, "10:15"), pl, &citizen(104), "registered", 2)));
    out.push((SIM, events::swap("w688-4", &t(14, "11:00"), pl, &phone(4), "feature_phone")));
    out.push((SIM, events::signature("s688-1", &t(15, "10:00"), pl, &phone(1), "installed")));
    out.push((SIM, events::signature("s688-2", &t(16, "10:00"), pl, &phone(2), "installed")));
    out.push((SIM, events::signature("s688-2r", &t(20, "11:00"), pl, &phone(2), "revoked")));
    out.push((SIM, events::swap("w688-3", &t(20, "12:00"), pl, &phone(3), "smartphone")));

    // District 692 (Huyện Lộc Ninh), commune 25270: 20 applications on 16/4.
    for n in 201..=220u64 {
        let place = Place::Commune("25270");
        out.push((CCCD, events::cccd(&format!("c692-{n}"), &t(16, "09:00"), place, &citizen(n), "received")));
    }

    // District 696 (Huyện Bù Đăng): one in commune 25396, one naming the district only.
    out.push((CCCD, events::cccd("c696-301", &t(18, "09:00"), Place::Commune("25396"), &citizen(301), "received")));
    out.push((CCCD, events::cccd("c696-302", &t(20, "08:00"), Place::District("696"), &citizen(302), "received")));

    // 1022 tickets H1–H8 (README "Hotline").
    let tk = |id: &str, at: String, p: Place<'_>, ticket: &str, status: &str, level: &str| {
        (HOTLINE, events::ticket(id, &at, p, ticket, status, level))
    };
    let (a, b) = (Place::Commune("25216"), Place::Commune("25396"));
    out.extend([
        tk("h7-r", "2024-03-29T09:00:00+07:00".into(), a, "H7", "received", "specialist"),
        tk("h7-a", "2024-03-29T10:00:00+07:00".into(), a, "H7", "answered", "specialist"),
        tk("h1-r", t(15, "08:00"), a, "H1", "received", "specialist"),
        tk("h1-a", t(15, "09:00"), a, "H1", "answered", "specialist"),
        tk("h2-r", t(16, "08:00"), a, "H2", "received", "specialist"),
        tk("h2-f", t(16, "09:00"), a, "H2", "forwarded", "specialist"),
        tk("h2-s", t(17, "10:00"), a, "H2", "resolved", "specialist"),
        tk("h3-r", t(17, "09:00"), b, "H3", "received", "specialist"),
        tk("h3-s", t(17, "09:05"), b, "H3", "spam", "specialist"),
        tk("h4-r", t(19, "14:00"), b, "H4", "received", "specialist"),
        tk("h5-r", t(10, "08:00"), Place::Commune("25270"), "H5", "received", "leadership"),
        tk("h6-r", t(19, "07:30"), Place::District("694"), "H6", "received", "specialist"),
        tk("h6-a", t(19, "07:45"), Place::District("694"), "H6", "answered", "specialist"),
        tk("h8-r", t(20, "10:00"), a, "H8", "received", "specialist"),
        tk("h8-f", t(20, "10:30"), a, "H8", "forwarded", "specialist"),
    ]);
    out
}

/// Runs `d06 report ARGS --config <the app's config>`; stdout, or a panic with stderr.
pub(crate) fn report(app: &App, args: &[&str]) -> Result<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_d06"))
        .arg("report")
        .args(args)
        .arg("--config")
        .arg(&app.config_path)
        .output()
        .expect("run d06 report");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("UTF-8 report"))
    } else {
        Err(stderr)
    }
}

/// Byte-for-byte comparison with a fixture; on a mismatch the output is saved
/// for inspection (never over the fixture) and the first differing line shown.
fn assert_fixture(name: &str, got: &str, want: &str) {
    if got == want {
        return;
    }
    let saved = std::env::temp_dir().join(format!("d06-report-{}-{name}", std::process::id()));
    std::fs::write(&saved, got).expect("save the actual report");
    let line = got.lines().zip(want.lines()).position(|(g, w)| g != w);
    let detail = match line {
        Some(i) => format!(
            "first difference on line {}:\n  got:  {}\n  want: {}",
            i + 1,
            got.lines().nth(i).unwrap_or_default(),
            want.lines().nth(i).unwrap_or_default()
        ),
        None => format!(
            "{} lines got, {} wanted (or a trailing newline differs)",
            got.lines().count(),
            want.lines().count()
        ),
    };
    panic!(
        "report differs from tests/fixtures/reports/{name}; actual output saved to {}\n{detail}",
        Path::new(&saved).display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_and_hotline_reports_match_the_hand_checked_fixtures() {
    let app = spawn_app(AppOptions { partitions: 1, shards: 2, ..AppOptions::default() }).await;
    let producer = Producer::new();
    let topics: Vec<String> = app.topics.sources().iter().map(|s| s.to_string()).collect();
    let msgs = stream();
    assert_eq!(msgs.len(), 96);
    for (t, m) in &msgs {
        producer.send(&topics[*t], 0, None, m.as_bytes()).await;
    }
    app.wait_consumed(msgs.len() as u64, Duration::from_secs(60)).await;

    // Wait until ClickHouse holds the final figures: every gain and loss
    // (README totals) and the hotline classified as of T = 20/4 16:00.
    app.wait_for("coverage in ClickHouse", Duration::from_secs(60), || async {
        app.clickhouse("SELECT sum(gained), sum(lost), max(day) FROM coverage_daily WHERE area_level = 'province'")
            .await
            == "76\t1\t2024-04-20\n"
    })
    .await;
    app.wait_for("hotline in ClickHouse", Duration::from_secs(60), || async {
        app.clickhouse(
            "SELECT sum(received), sum(processed), sum(in_progress), sum(spam), sum(overdue_specialist), \
             sum(overdue_leadership), sum(answered), sum(forwarded) FROM hotline_daily WHERE area_level = 'province'",
        )
        .await
            == "8\t3\t2\t1\t1\t1\t3\t2\n"
    })
    .await;

    let daily = |extra: &[&str]| {
        let mut args = vec!["daily", "--day", "2024-04-20"];
        args.extend_from_slice(extra);
        report(&app, &args).unwrap_or_else(|e| panic!("d06 report daily {extra:?} failed: {e}"))
    };
    assert_fixture("daily-2024-04-20.md", &daily(&[]), DAILY_MD);
    assert_fixture("daily-2024-04-20.md", &daily(&["--format", "markdown"]), DAILY_MD);
    assert_fixture("daily-2024-04-20.html", &daily(&["--format", "html"]), DAILY_HTML);
    assert_fixture("daily-2024-04-20-688.md", &daily(&["--area", "688"]), DAILY_688_MD);

    let hotline = |args: &[&str]| {
        let mut all = vec!["hotline"];
        all.extend_from_slice(args);
        report(&app, &all).unwrap_or_else(|e| panic!("d06 report hotline {args:?} failed: {e}"))
    };
    assert_fixture("hotline-2024-04.tsv", &hotline(&["--from", "2024-04-01", "--to", "2024-04-30"]), HOTLINE_APRIL);
    assert_fixture(
        "hotline-2024-04-688.tsv",
        &hotline(&["--from", "2024-04-01", "--to", "2024-04-30", "--area", "688"]),
        HOTLINE_APRIL_688,
    );
    assert_fixture(
        "hotline-2024-04-17-20-25396.tsv",
        &hotline(&["--from", "2024-04-17", "--to", "2024-04-20", "--area", "25396"]),
        HOTLINE_25396,
    );

    // The pipeline's "today" is 20/4: a later day is refused, not shown as zeros.
    let err = report(&app, &["daily", "--day", "2024-04-21"]).expect_err("21/4 is not in ClickHouse yet");
    assert!(err.contains("has not reached"), "{err}");
    // A commune is not a row of the daily table; an unknown code is refused.
    let err = report(&app, &["daily", "--day", "2024-04-20", "--area", "25216"]).expect_err("commune");
    assert!(err.contains("not a district code"), "{err}");
    let err =
        report(&app, &["hotline", "--from", "2024-04-01", "--to", "2024-04-30", "--area", "999"]).expect_err("unknown");
    assert!(err.contains("is not a province, district or commune code"), "{err}");
}
