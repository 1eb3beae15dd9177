//! The daily alerts' tests: the schedule, the configuration, the messages,
//! the job without services.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::config::*;
use super::job::*;
use super::message::*;
use super::schedule::*;
use aggregator::coverage::LagRule;
use aggregator::plan::Plan;
use aggregator::{AreaLevel, Geography, GeographyVersion, Indicator};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use reports::fixtures::{d, rows, setup, setup_vneid_unknown};
use reports::DailyTable;
use secrecy::ExposeSecret;
use sinks::clickhouse::ClickHouseConfig;
use tokio_util::sync::CancellationToken;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap()
}

const VN: Tz = chrono_tz::Asia::Ho_Chi_Minh;

/// The campaign 10/4–30/4/2024 of the report's fixture.
fn plan() -> Plan {
    setup().1
}

#[test]
fn the_send_instant_is_local_time_and_dst_gaps_and_overlaps_resolve_forward_and_early() {
    // UTC+7 all year: 17:00 is 10:00 UTC, every day.
    assert_eq!(local_instant(d(4, 12), hm(17, 0), VN), utc("2024-04-12T10:00:00Z"));
    assert_eq!(local_instant(d(12, 31), hm(0, 0), VN), utc("2024-12-30T17:00:00Z"));
    let berlin = chrono_tz::Europe::Berlin;
    // 31/3/2024 02:00 → 03:00: 02:30 does not exist; the first instant after the gap is 03:00 CEST.
    let spring = NaiveDate::from_ymd_opt(2024, 3, 31).unwrap();
    assert_eq!(local_instant(spring, hm(2, 30), berlin), utc("2024-03-31T01:00:00Z"));
    // 27/10/2024 03:00 → 02:00: 02:30 happens twice; the first is 02:30 CEST.
    let autumn = NaiveDate::from_ymd_opt(2024, 10, 27).unwrap();
    assert_eq!(local_instant(autumn, hm(2, 30), berlin), utc("2024-10-27T00:30:00Z"));
}

#[test]
fn next_send_across_days_and_restarts() {
    let p = plan();
    let at17 = hm(17, 0);
    let next = |now: &str, done: Option<NaiveDate>| next_send(&p, VN, at17, utc(now), done);
    let n = |day: NaiveDate, at: &str, deadline: &str| Some(Next { day, at: utc(at), deadline: utc(deadline) });
    // 12/4 09:00 local: today at 17:00 (10:00 UTC); the day ends at 17:00 UTC.
    assert_eq!(next("2024-04-12T02:00:00Z", None), n(d(4, 12), "2024-04-12T10:00:00Z", "2024-04-12T17:00:00Z"));
    // Up at 16:59 local, nothing done yet: wait for 17:00.
    assert_eq!(next("2024-04-12T09:59:00Z", None), n(d(4, 12), "2024-04-12T10:00:00Z", "2024-04-12T17:00:00Z"));
    // Restarted at 17:01 (or at 17:00:30 after sending): today is due at once
    // (the ClickHouse record decides whether anything is left to send).
    let restarted = next("2024-04-12T10:01:00Z", None).unwrap();
    assert_eq!((restarted.day, restarted.at <= utc("2024-04-12T10:01:00Z")), (d(4, 12), true));
    // Still due at 23:59 local; at 00:00 local the next day has begun (UTC still says the 12th).
    assert_eq!(next("2024-04-12T16:59:59Z", None).unwrap().day, d(4, 12));
    assert_eq!(next("2024-04-12T17:00:00Z", None), n(d(4, 13), "2024-04-13T10:00:00Z", "2024-04-13T17:00:00Z"));
    // Once today is done: tomorrow, whatever the hour.
    assert_eq!(
        next("2024-04-12T10:00:05Z", Some(d(4, 12))),
        n(d(4, 13), "2024-04-13T10:00:00Z", "2024-04-13T17:00:00Z")
    );
    assert_eq!(next("2024-04-12T02:00:00Z", Some(d(4, 12))).unwrap().day, d(4, 13));
    // Before the campaign: its first day. After it, or its last day done: nothing.
    assert_eq!(next("2024-03-01T02:00:00Z", None), n(d(4, 10), "2024-04-10T10:00:00Z", "2024-04-10T17:00:00Z"));
    assert_eq!(next("2024-04-30T09:00:00Z", None).unwrap().day, d(4, 30));
    assert_eq!(next("2024-04-30T11:00:00Z", Some(d(4, 30))), None);
    assert_eq!(next("2024-05-01T02:00:00Z", None), None);
}

#[test]
fn ends_at_is_a_day_after_the_send_instant_or_after_now_for_a_past_day() {
    let start = utc("2024-04-12T10:00:00Z");
    assert_eq!(ends_at(start, utc("2024-04-12T10:00:03Z")), utc("2024-04-13T10:00:00Z"));
    // Caught up at 23:00 local: still tomorrow 17:00.
    assert_eq!(ends_at(start, utc("2024-04-12T16:00:00Z")), utc("2024-04-13T10:00:00Z"));
    // A replay of 12/4/2024 run in 2026: active for 24 h from now.
    assert_eq!(ends_at(start, utc("2026-01-05T08:00:00Z")), utc("2026-01-06T08:00:00Z"));
}

#[test]
fn retries_back_off_from_1s_to_5min() {
    use backon::BackoffBuilder;
    // backon computes in f32 seconds: round to the second.
    let s: Vec<u64> = RETRY.build().take(11).map(|d| d.as_secs_f64().round() as u64).collect();
    assert_eq!(s, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert_eq!(RETRY.build().nth(10_000), Some(MAX_RETRY), "no limit on attempts");
}

#[test]
fn config_defaults_parse_and_validation() {
    let c = AlertsConfig::default();
    assert_eq!(
        (c.enabled, c.alertmanager_url.0.as_slice(), c.send_at.0, c.rule, c.report_url.as_deref(), c.severity.as_str()),
        (false, ["http://127.0.0.1:9093".to_owned()].as_slice(), hm(17, 0), None, None, "warning")
    );
    c.validate().unwrap();
    let c: AlertsConfig = toml::from_str(
        "enabled = true\nsend_at = \"07:30\"\nreport_url = \"https://ioc.example/d06?x=1\"\n[rule]\ntolerance = 0.1\n",
    )
    .unwrap();
    assert_eq!(c.send_at, LocalTime(hm(7, 30)));
    assert_eq!(c.rule, Some(LagRule { tolerance: 0.1, days_behind: 3 }));
    c.validate().unwrap();
    // The file's rule wins; without one, the pipeline's.
    let pipeline = LagRule { tolerance: 0.2, days_behind: 5 };
    assert_eq!(c.clone().with_default_rule(pipeline).rule, Some(LagRule { tolerance: 0.1, days_behind: 3 }));
    assert_eq!(AlertsConfig::default().with_default_rule(pipeline).rule, Some(pipeline));
    for bad in ["7:30", "24:00", "17:60", "17h00", "17:00:00", ""] {
        let err = toml::from_str::<AlertsConfig>(&format!("send_at = \"{bad}\"")).unwrap_err().to_string();
        assert!(err.contains("is not a local time"), "{bad}: {err}");
    }
    assert!(toml::from_str::<AlertsConfig>("sendat = \"17:00\"").unwrap_err().to_string().contains("sendat"));
    let urls = |u: &[&str]| AlertmanagerUrls(u.iter().map(|s| s.to_string()).collect());
    let https = AlertsConfig { alertmanager_url: urls(&["https://u:pw-secret@am:9093"]), ..AlertsConfig::default() };
    https.validate().unwrap();
    let tcp = AlertsConfig { alertmanager_url: urls(&["am:9093", "tcp://u:pw-secret@am"]), ..AlertsConfig::default() };
    let err = tcp.validate().unwrap_err().to_string();
    assert!(err.contains("must be an http:// or https:// URL") && !err.contains("pw-secret"), "{err}");
    let twice = AlertsConfig { alertmanager_url: urls(&["http://a:9093", "http://a:9093"]), ..AlertsConfig::default() };
    assert!(twice.validate().unwrap_err().to_string().contains("listed twice"));
    let none = AlertsConfig { alertmanager_url: urls(&[]), ..AlertsConfig::default() };
    assert!(none.validate().is_err());
    let no_severity = AlertsConfig { severity: " ".into(), ..AlertsConfig::default() };
    assert!(no_severity.validate().is_err());
    assert_eq!(format!("{:?}", LocalTime(hm(7, 5))), "\"07:05\"");
}

#[test]
fn one_or_many_urls_and_one_kind_of_credentials() {
    let one: AlertsConfig = toml::from_str("alertmanager_url = \"https://am:9093\"").unwrap();
    assert_eq!(one.alertmanager_url.0, ["https://am:9093"]);
    let two: AlertsConfig = toml::from_str("alertmanager_url = [\"https://a:9093\", \"https://b:9093\"]").unwrap();
    assert_eq!(two.alertmanager_url.0, ["https://a:9093", "https://b:9093"]);
    assert_eq!(toml::to_string(&one).unwrap().lines().next(), Some("enabled = false"));
    assert!(toml::to_string(&one).unwrap().contains("alertmanager_url = \"https://am:9093\""));
    assert!(toml::to_string(&two).unwrap().contains("alertmanager_url = [\"https://a:9093\", \"https://b:9093\"]"));

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "am-secret\n").unwrap();
    let basic = AlertsConfig {
        username: Some("d06".into()),
        password_file: Some(secret.clone()),
        alertmanager_url: AlertmanagerUrls(vec!["https://u:url-secret@am:9093".into()]),
        ..AlertsConfig::default()
    };
    basic.validate().unwrap();
    match basic.credentials().unwrap() {
        Credentials::Basic { user, password } => {
            assert_eq!((user.as_str(), password.expose_secret()), ("d06", "am-secret"))
        }
        other => panic!("{other:?}"),
    }
    let shown = format!("{basic:?} {}", toml::to_string(&basic.redacted()).unwrap());
    assert!(!shown.contains("am-secret") && !shown.contains("url-secret"), "{shown}");
    let bearer = AlertsConfig { bearer_token_file: Some(secret.clone()), ..AlertsConfig::default() };
    assert!(matches!(bearer.credentials().unwrap(), Credentials::Bearer(t) if t.expose_secret() == "am-secret"));
    let both = AlertsConfig { bearer_token_file: Some(secret.clone()), ..basic.clone() };
    assert!(both.validate().unwrap_err().to_string().contains("keep one"));
    let no_user = AlertsConfig { username: None, ..basic.clone() };
    assert!(no_user.validate().unwrap_err().to_string().contains("without username"));
    let no_ca = AlertsConfig { ca_file: Some(dir.path().join("absent.pem")), ..AlertsConfig::default() };
    assert!(no_ca.validate().unwrap_err().to_string().contains("ca_file: cannot read"));
}

#[test]
fn shares_the_vietnamese_way() {
    assert_eq!(share_percent(0.95), "95%");
    assert_eq!(share_percent(0.975), "97,5%");
    assert_eq!(share_percent(0.9125), "91,25%");
    assert_eq!(share_percent(1.0), "100%");
}

/// The report's fixture on 16/4 (hand-checked in the `reports` crate's tests):
/// district cccd target 10, expected 3; vneid target 2, expected 1.
fn table_16_4() -> DailyTable {
    let (g, p) = setup();
    DailyTable::build(&g, &p, &rows(&g, &p), d(4, 16)).unwrap()
}

fn window() -> (DateTime<Utc>, DateTime<Utc>) {
    (utc("2024-04-16T10:00:00Z"), utc("2024-04-17T10:00:00Z"))
}

#[test]
fn one_alert_per_lagging_district_with_sorted_indicators() {
    let t = table_16_4();
    let alerts = build_alerts(&t, &LagRule::default(), d(4, 16), window(), "warning", None, &BTreeSet::new());
    let got: Vec<(&str, &str)> = alerts.iter().map(|a| (a.district.as_str(), a.indicator_label())).collect();
    // 688 (cccd 4 ≥ 3, vneid 1 ≥ 1), 690 (3, 1) and 692 (4, 1) are on plan.
    // 689: cccd 12, vneid 0 < 0.95. 691: cccd 2 < 2.85, vneid 0.
    // 693–698: nothing at all.
    let mut want = vec![("689", "vneid"), ("691", "cccd,vneid")];
    want.extend(["693", "694", "695", "696", "697", "698"].map(|c| (c, "cccd,vneid")));
    assert_eq!(got, want);
    let a = &alerts[1];
    assert_eq!(a.indicators, [Indicator::Cccd, Indicator::Vneid]);
    assert_eq!(
        a.labels,
        BTreeMap::from(
            [
                ("alertname", "D06DailyDistrictLag"),
                ("district", "691"),
                ("province", "70"),
                ("indicator", "cccd,vneid"),
                ("severity", "warning"),
                ("day", "2024-04-16"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        )
    );
    // A looser rule (34 %, 3 days): 691's cccd 2 ≥ 0.66 × 3 = 1.98 and 2 days behind is
    // on plan; its vneid 0 < 0.66 still lags, and so does everything of 693–698.
    let loose = LagRule { tolerance: 0.34, days_behind: 3 };
    let got: Vec<(String, String)> = build_alerts(&t, &loose, d(4, 16), window(), "warning", None, &BTreeSet::new())
        .iter()
        .map(|a| (a.district.clone(), a.indicator_label().to_owned()))
        .collect();
    assert_eq!(
        got[..3],
        [("689", "vneid"), ("691", "vneid"), ("693", "cccd,vneid")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(got.len(), 8);
    // A rule that only counts days (tolerance 1 ⇒ never short by ratio): 693–698 are 6 days
    // behind on cccd, 2 on vneid; 689 and 691 only 2 days: only the six, on cccd alone.
    let days_only = LagRule { tolerance: 1.0, days_behind: 3 };
    let got: Vec<(String, String)> =
        build_alerts(&t, &days_only, d(4, 16), window(), "warning", None, &BTreeSet::new())
            .iter()
            .map(|a| (a.district.clone(), a.indicator_label().to_owned()))
            .collect();
    assert_eq!(got, ["693", "694", "695", "696", "697", "698"].map(|c| (c.to_owned(), "cccd".to_owned())));
}

#[test]
fn districts_already_recorded_are_not_alerted_again() {
    let t = table_16_4();
    let already: BTreeSet<String> = ["689", "693", "698"].map(str::to_owned).into();
    let alerts = build_alerts(&t, &LagRule::default(), d(4, 16), window(), "warning", None, &already);
    let got: Vec<&str> = alerts.iter().map(|a| a.district.as_str()).collect();
    assert_eq!(got, ["691", "694", "695", "696", "697"]);
}

#[test]
fn the_message_names_every_lagging_indicator_with_its_figures_and_the_rank() {
    let t = table_16_4();
    let alerts = build_alerts(
        &t,
        &LagRule::default(),
        d(4, 16),
        window(),
        "critical",
        Some("https://ioc.example/d06/daily"),
        &BTreeSet::new(),
    );
    let a = alerts.iter().find(|a| a.district == "691").unwrap();
    assert_eq!(a.labels["severity"], "critical");
    assert_eq!(
        a.annotations["summary"],
        "Huyện Bù Gia Mập (691) chậm tiến độ “4 phủ” ngày 16/04/2024: CCCD, ĐDĐT mức 2"
    );
    // cccd: 2 (gained 11/4) of 10, expected 3 on 16/4; expected ≤ 2 last on 14/4 → 2 days.
    // ETA: net gain over 10/4–16/4 is 2 → 8 more need ⌈8 × 7 / 2⌉ = 28 days → 14/5/2024.
    // vneid: 0 of 2, expected 1; expected 0 last on 14/4 → 2 days; no gain → no ETA.
    // Rank: average (0.2 + 0) / 2 = 0.1, fifth of eleven (the `reports` crate's tests).
    let description = &a.annotations["description"];
    let want = "\
Huyện Bù Gia Mập (mã 691) chậm so với kế hoạch ngày 16/04/2024 ở 2 chỉ tiêu (chậm: đạt dưới 95% số kế hoạch, hoặc chậm từ 3 ngày trở lên).
- CCCD: đạt 2/10 (20,00%), kế hoạch đến hết ngày 3 (30,00%), chậm 2 ngày, tăng trong ngày 0, dự kiến đạt chỉ tiêu: 14/05/2024.
- ĐDĐT mức 2: đạt 0/2 (0,00%), kế hoạch đến hết ngày 1 (50,00%), chậm 2 ngày, tăng trong ngày 0, dự kiến đạt chỉ tiêu: chưa xác định.
Xếp hạng 5/11 huyện, thị xã, thành phố trong tỉnh (theo bình quân tỷ lệ đạt).

# Tiến độ “4 phủ” ngày 16/04/2024 — Huyện Bù Gia Mập
";
    assert!(description.starts_with(want), "{description}");
    // The district's row of `d06 report daily --area 691`, then the link.
    let g = Geography::load(GeographyVersion::Pre2025).unwrap();
    let md = t.markdown(g.find(AreaLevel::District, "691"));
    assert!(
        md.contains("\n| 691 | Huyện Bù Gia Mập | 2/10 | 20,00% | 30,00% | 2 | 0 | 0/2 | 0,00% | 50,00% | 2 | 0 |"),
        "{md}"
    );
    assert!(
        description.ends_with(&format!("{md}\nXem báo cáo: https://ioc.example/d06/daily?day=2024-04-16&area=691\n"))
    );
    assert_eq!(a.annotations["link"], "https://ioc.example/d06/daily?day=2024-04-16&area=691");

    // One indicator, a gain today, and a base URL that already has a query.
    let alerts =
        build_alerts(&t, &LagRule::default(), d(4, 16), window(), "warning", Some("http://x/r?k=1"), &BTreeSet::new());
    let a = alerts.iter().find(|a| a.district == "689").unwrap();
    assert_eq!(a.annotations["summary"], "Thành phố Đồng Xoài (689) chậm tiến độ “4 phủ” ngày 16/04/2024: ĐDĐT mức 2");
    assert!(a.annotations["description"].starts_with(
        "Thành phố Đồng Xoài (mã 689) chậm so với kế hoạch ngày 16/04/2024 ở 1 chỉ tiêu (chậm: đạt dưới 95% số kế hoạch, hoặc chậm từ 3 ngày trở lên).\n\
         - ĐDĐT mức 2: đạt 0/2 (0,00%), kế hoạch đến hết ngày 1 (50,00%), chậm 2 ngày, tăng trong ngày 0, dự kiến đạt chỉ tiêu: chưa xác định.\n\
         Xếp hạng 1/11 huyện, thị xã, thành phố trong tỉnh (theo bình quân tỷ lệ đạt).\n\n"
    ));
    assert_eq!(a.annotations["link"], "http://x/r?k=1&day=2024-04-16&area=689");
    // Without report_url: no link anywhere.
    let plain = build_alerts(&t, &LagRule::default(), d(4, 16), window(), "warning", None, &BTreeSet::new());
    assert!(plain
        .iter()
        .all(|a| !a.annotations.contains_key("link") && !a.annotations["description"].contains("Xem báo cáo")));
    assert!(plain[0].to_json().get("generatorURL").is_none());
}

#[test]
fn the_rank_says_which_indicators_its_average_leaves_out() {
    let (g, p) = setup_vneid_unknown();
    let t = DailyTable::build(&g, &p, &rows(&g, &p), d(4, 16)).unwrap();
    let alerts = build_alerts(&t, &LagRule::default(), d(4, 16), window(), "warning", None, &BTreeSet::new());
    // 691 lags on cccd only now (its vneid baseline is unknown: never behind).
    // Averages (the `reports` crate's tests): 689 1.0, 688 0.45, 692 0.4,
    // 690 0.3, 691 0.2 → fifth.
    let a = alerts.iter().find(|a| a.district == "691").unwrap();
    assert_eq!(a.indicators, [Indicator::Cccd]);
    assert!(
        a.annotations["description"].contains(
            "\nXếp hạng 5/11 huyện, thị xã, thành phố trong tỉnh \
             (theo bình quân tỷ lệ đạt, không tính ĐDĐT mức 2 chưa có số liệu nền).\n\n"
        ),
        "{}",
        a.annotations["description"]
    );
    // 688 knows its vneid baseline: nothing left out, nothing said.
    let a = alerts.iter().find(|a| a.district == "688");
    assert!(a.is_none_or(|a| a.annotations["description"].contains("(theo bình quân tỷ lệ đạt).\n")));
}

#[test]
fn the_posted_json_is_alertmanager_v2_with_deterministic_times() {
    let t = table_16_4();
    let alerts =
        build_alerts(&t, &LagRule::default(), d(4, 16), window(), "warning", Some("http://r/"), &BTreeSet::new());
    let v = alerts[0].to_json();
    assert_eq!(v["startsAt"], "2024-04-16T10:00:00Z");
    assert_eq!(v["endsAt"], "2024-04-17T10:00:00Z");
    assert_eq!(v["labels"]["alertname"], "D06DailyDistrictLag");
    assert_eq!(v["labels"]["district"], "689");
    assert_eq!(v["generatorURL"], "http://r/?day=2024-04-16&area=689");
    assert_eq!(v["annotations"]["summary"], alerts[0].annotations["summary"]);
    // Built again (another instance, a retry): the very same alert.
    let again =
        build_alerts(&t, &LagRule::default(), d(4, 16), window(), "warning", Some("http://r/"), &BTreeSet::new());
    assert_eq!(again, alerts);
}

#[tokio::test]
async fn nothing_is_sent_outside_the_campaign_and_no_service_is_contacted() {
    let (g, p) = setup();
    let job = DailyAlerts::new(
        AlertsConfig {
            alertmanager_url: AlertmanagerUrls(vec!["http://127.0.0.1:9".into()]),
            enabled: true,
            ..AlertsConfig::default()
        },
        ClickHouseConfig { url: "http://127.0.0.1:9".into(), ..ClickHouseConfig::default() },
        Arc::new(p),
        Arc::new(g),
        VN,
        Clock::Wall,
    );
    // Port 9 refuses connections: any contact would be an error.
    assert_eq!(job.send_for_day(d(4, 9)).await.unwrap(), []);
    assert_eq!(job.send_for_day(NaiveDate::from_ymd_opt(2024, 5, 1).unwrap()).await.unwrap(), []);
    // On a campaign day the unreachable ClickHouse is an error (retried by `run`).
    assert!(job.send_for_day(d(4, 16)).await.is_err());
}

#[tokio::test]
async fn a_disabled_job_waits_for_shutdown() {
    let (g, p) = setup();
    let job = DailyAlerts::new(
        AlertsConfig::default(),
        ClickHouseConfig::default(),
        Arc::new(p),
        Arc::new(g),
        VN,
        Clock::Wall,
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(job.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!task.is_finished());
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap().unwrap();
}
