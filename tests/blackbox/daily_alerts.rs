//! Issue 6: the daily alert job (the `alerts` crate) end to end. The real app
//! writes ClickHouse from real events; `d06 alerts send --day` (the job's
//! `send_for_day`, run by hand) posts to a real, PRIVATE Alertmanager, which
//! routes with the project's own tree (`deploy/local/alertmanager.yml`, its
//! webhook address pointed at a listener of this test on a free port).
//! Everything here has its own port, so parallel tests do not collide on
//! 9099 or 9093.
//!
//! The plan is the test's own (every district weighs 1; only CCCD has a
//! target: 10 per district, all of it by 20/4, so a district is expected to
//! have k by the end of 10/4 + k days). On 12/4 (k = 2) district 688 has 1
//! (lagging: 1 < 0.95 × 2), 689 has 2 (on plan), the nine others 0.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};

use crate::events::{self, citizen, Place};
use crate::harness::{spawn_app, App, AppOptions, Producer};
use crate::webhook::{Delivery, Webhooks};

pub(crate) const DAY: &str = "2024-04-12";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// 10/4–30/4/2024; cccd 110 (10 per district) by 20/4; no other target.
pub(crate) fn plan_toml() -> String {
    let weights: String = (688..=698).map(|c| format!("\"{c}\" = 1\n")).collect();
    format!(
        "name = \"Kiểm thử cảnh báo hằng ngày\"\nstart = 2024-04-10\nend = 2024-04-30\ntime_zone = \"Asia/Ho_Chi_Minh\"\n\
         [district_weights]\n{weights}\n[indicators.cccd]\ntarget = 110\nbaseline = 0\n\
         milestones = [ {{ date = 2024-04-20, share = 1.0 }} ]\n"
    )
}

/// A private Alertmanager (clustering off) on a free port, routing with
/// `deploy/local/alertmanager.yml` to the test's webhook port.
pub(crate) struct Alertmanager {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    pub(crate) async fn start(webhook_port: u16) -> Alertmanager {
        let dir = tempfile::tempdir().expect("tempdir");
        let routing = std::fs::read_to_string(repo().join("deploy/local/alertmanager.yml")).expect("local routing");
        assert!(routing.contains("127.0.0.1:9099/district/688"), "the local routing changed its webhook address");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, routing.replace("127.0.0.1:9099", &format!("127.0.0.1:{webhook_port}")))
            .expect("config");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).expect("log");
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("prometheus-alertmanager not found on PATH: run `bash deploy/local/install.sh`");
        let am = Alertmanager { child, port, dir, http: reqwest::Client::new() };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = am.http.get(format!("{}/-/ready", am.url())).send().await {
                if r.status().is_success() {
                    return am;
                }
            }
            assert!(Instant::now() < deadline, "private Alertmanager not ready in 30 s:\n{}", am.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// `alertmanager_alerts_received_total`, all series: alerts posted to it so far.
    pub(crate) async fn alerts_received(&self) -> f64 {
        let text =
            self.http.get(format!("{}/metrics", self.url())).send().await.expect("metrics").text().await.expect("text");
        text.lines()
            .filter(|l| l.starts_with("alertmanager_alerts_received_total"))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    }
}

/// `d06 alerts send --day DAY --config <the app's config>`: (success, stdout, stderr).
pub(crate) async fn send(app: &App, day: &str) -> (bool, String, String) {
    let config: PathBuf = app.config_path.clone();
    let day = day.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_d06"))
            .args(["alerts", "send", "--day", &day, "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .output()
            .expect("run d06 alerts send")
    })
    .await
    .expect("join");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn label(alert: &Value, name: &str) -> String {
    alert["labels"][name].as_str().unwrap_or("").to_owned()
}

/// The districts named in the province's notifications so far. Alertmanager
/// may flush the province's group before it has dispatched every alert of
/// one post (group_wait is 1 s locally, and the machine may be busy); the
/// rest then follows group_interval (5 s) later, in a second notification.
fn province_districts(got: &[Delivery]) -> Vec<String> {
    let set: std::collections::BTreeSet<String> =
        got.iter().filter(|d| d.path == "/province").flat_map(|d| d.alerts()).map(|a| label(a, "district")).collect();
    set.into_iter().collect()
}

/// Long enough for a straggling notification: group_interval (5 s) and a margin.
const LINGER: Duration = Duration::from_secs(7);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_job_alerts_a_lagging_district_once_and_not_one_on_plan() {
    let mut hooks = Webhooks::listen("127.0.0.1:0", None).await;
    let am = Alertmanager::start(hooks.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.toml");
    std::fs::write(&plan, plan_toml()).expect("plan");
    let app = spawn_app(AppOptions {
        partitions: 1,
        shards: 2,
        extra_toml: format!(
            "[plan]\nfile = \"{}\"\n[alerts]\nalertmanager_url = \"{}\"\nreport_url = \"http://ioc.example/d06/daily\"\n",
            plan.display(),
            am.url()
        ),
        ..AppOptions::default()
    })
    .await;

    // 688 (commune 25216): one application on 11/4. 689 (25195): one on 11/4, one on 12/4
    // (the newest event: with the event clock "today" is 12/4).
    let msgs = [
        events::cccd("da-688-1", "2024-04-11T09:00:00+07:00", Place::Commune("25216"), &citizen(1), "received"),
        events::cccd("da-689-1", "2024-04-11T10:00:00+07:00", Place::Commune("25195"), &citizen(2), "received"),
        events::cccd("da-689-2", "2024-04-12T10:00:00+07:00", Place::Commune("25195"), &citizen(3), "received"),
    ];
    let producer = Producer::new();
    for m in &msgs {
        producer.send(&app.topics.cccd, 0, None, m.as_bytes()).await;
    }
    app.wait_consumed(msgs.len() as u64, Duration::from_secs(60)).await;
    app.wait_for("12/4 in ClickHouse", Duration::from_secs(60), || async {
        app.clickhouse("SELECT sum(gained), max(day) FROM coverage_daily WHERE area_level = 'province'").await
            == format!("3\t{DAY}\n")
    })
    .await;

    // --- first run: every lagging district, once -----------------------------
    let (ok, stdout, stderr) = send(&app, DAY).await;
    assert!(ok, "d06 alerts send failed:\n{stderr}");
    let lagging = ["688", "690", "691", "692", "693", "694", "695", "696", "697", "698"];
    let mut want: String = lagging.iter().map(|c| format!("{c}\tcccd\n")).collect();
    want.push_str(&format!("10 daily alert(s) sent for {DAY}\n"));
    assert_eq!(stdout, want, "{stderr}");

    let got = hooks
        .collect(Duration::from_secs(30), LINGER, |got| {
            got.iter().any(|d| d.path == "/district/688") && province_districts(got) == lagging
        })
        .await;
    let at = |path: &str| got.iter().filter(|d| d.path == path).collect::<Vec<_>>();
    let d688 = at("/district/688");
    assert_eq!(d688.len(), 1, "688 gets exactly one notification: {got:#?}\n{}", am.log());
    let alerts = d688[0].alerts();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(
        a["labels"],
        json!({"alertname": "D06DailyDistrictLag", "district": "688", "province": "70", "indicator": "cccd", "severity": "warning", "day": DAY})
    );
    assert_eq!(a["status"], "firing");
    assert_eq!(a["startsAt"], "2024-04-12T10:00:00Z", "the day's 17:00 local, not the time of sending");
    assert_eq!(a["generatorURL"], "http://ioc.example/d06/daily?day=2024-04-12&area=688");
    assert_eq!(a["annotations"]["summary"], "Thị xã Phước Long (688) chậm tiến độ “4 phủ” ngày 12/04/2024: CCCD");
    // 1 of 10, expected 2 (k = 2); expected ≤ 1 last on 11/4: 1 day behind; nothing today;
    // ETA: 1 in the last 7 days, 9 to go → ⌈9 × 7 / 1⌉ = 63 days → 14/6/2024. Averages:
    // 689 0.2, 688 0.1, the others 0 → 688 is second.
    let description = a["annotations"]["description"].as_str().unwrap_or("");
    assert!(
        description.starts_with(
            "Thị xã Phước Long (mã 688) chậm so với kế hoạch ngày 12/04/2024 ở 1 chỉ tiêu \
             (chậm: đạt dưới 95% số kế hoạch, hoặc chậm từ 3 ngày trở lên).\n\
             - CCCD: đạt 1/10 (10,00%), kế hoạch đến hết ngày 2 (20,00%), chậm 1 ngày, tăng trong ngày 0, \
             dự kiến đạt chỉ tiêu: 14/06/2024.\n\
             Xếp hạng 2/11 huyện, thị xã, thành phố trong tỉnh (theo bình quân tỷ lệ đạt).\n\n\
             # Tiến độ “4 phủ” ngày 12/04/2024 — Thị xã Phước Long\n"
        ),
        "{description}"
    );
    assert!(
        description.contains(
            "\n| 688 | Thị xã Phước Long | 1/10 | 10,00% | 20,00% | 1 | 0 | 0/0 | — | — | 0 | 0 | 0/0 | — | — | 0 | 0 | \
             0/0 | — | — | 0 | 0 | 0/0 | — | — | 0 | 0 | 10,00% | 2/11 |\n"
        ),
        "the row of `d06 report daily --area 688`: {description}"
    );
    assert!(description.ends_with("\nXem báo cáo: http://ioc.example/d06/daily?day=2024-04-12&area=688\n"));
    assert!(at("/district/689").is_empty(), "689 is on plan: {got:#?}");
    assert!(got.iter().flat_map(Delivery::alerts).all(|a| label(a, "district") != "689"), "{got:#?}");
    // The province's summary lists the ten lagging districts; every other one gets its own.
    assert_eq!(province_districts(&got), lagging, "{got:#?}");
    for code in &lagging[1..] {
        assert_eq!(at(&format!("/district/{code}")).len(), 1, "{code}: {got:#?}");
    }
    assert_eq!(am.alerts_received().await, 10.0);

    let recorded_sql = format!("SELECT district, indicator FROM alerts FINAL WHERE day = '{DAY}' ORDER BY district");
    let recorded = || app.clickhouse(&recorded_sql);
    let want_rows: String = lagging.iter().map(|c| format!("{c}\tcccd\n")).collect();
    assert_eq!(recorded().await, want_rows);

    // --- second run (a restart at 17:00:30): nothing is posted again ------------
    let (ok, stdout, stderr) = send(&app, DAY).await;
    assert!(ok, "second run failed:\n{stderr}");
    assert_eq!(stdout, format!("0 daily alert(s) sent for {DAY}\n"), "{stderr}");
    assert_eq!(am.alerts_received().await, 10.0, "the second run must not post at all");
    let late = hooks.collect(Duration::from_secs(4), Duration::ZERO, |_| false).await;
    assert!(late.is_empty(), "no notification after the second run: {late:#?}");
    assert_eq!(recorded().await, want_rows);

    // A day outside the campaign is refused.
    let (ok, _, stderr) = send(&app, "2024-05-01").await;
    assert!(!ok && stderr.contains("outside the campaign"), "{stderr}");
}

#[test]
fn no_prometheus_rule_competes_with_the_daily_job() {
    // D06DailyDistrictLag comes from d06's daily job only: a rule of that
    // name would send a second, differently worded report on the same routes.
    let dir = repo().join("deploy/prometheus/rules");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("rules dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("rule file");
        files += 1;
        assert!(!text.contains("alert: D06DailyDistrictLag"), "{} defines D06DailyDistrictLag", path.display());
    }
    assert!(files >= 2, "{}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_d06_run_the_job_sends_at_send_at_and_a_restart_does_not_send_again() {
    use chrono::{Days, TimeZone, Timelike};
    let vn = chrono_tz::Asia::Ho_Chi_Minh;
    // Keep clear of local midnight: "today" must not change under the test.
    loop {
        let left = 86_400 - Utc::now().with_timezone(&vn).num_seconds_from_midnight();
        if left > 240 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(u64::from(left) + 2)).await;
    }
    let now = Utc::now().with_timezone(&vn);
    let today = now.date_naive();
    // The first whole minute at least 30 s away.
    let at = (now + chrono::TimeDelta::seconds(90)).time();
    let send_at = format!("{:02}:{:02}", at.hour(), at.minute());
    let starts_at =
        vn.from_local_datetime(&today.and_hms_opt(at.hour(), at.minute(), 0).unwrap()).unwrap().with_timezone(&Utc);

    let mut hooks = Webhooks::listen("127.0.0.1:0", None).await;
    let am = Alertmanager::start(hooks.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.toml");
    // Today is day 2 of the campaign (k = 2): every district is expected to have 2.
    let start = today.checked_sub_days(Days::new(2)).unwrap();
    let plan_text = plan_toml()
        .replace("start = 2024-04-10", &format!("start = {start}"))
        .replace("end = 2024-04-30", &format!("end = {}", start.checked_add_days(Days::new(20)).unwrap()))
        .replace("date = 2024-04-20", &format!("date = {}", start.checked_add_days(Days::new(10)).unwrap()));
    std::fs::write(&plan, plan_text).expect("plan");
    let mut app = spawn_app(AppOptions {
        partitions: 1,
        shards: 2,
        clock: "wall",
        extra_toml: format!(
            "[plan]\nfile = \"{}\"\n[alerts]\nenabled = true\nalertmanager_url = \"{}\"\nsend_at = \"{send_at}\"\n",
            plan.display(),
            am.url()
        ),
        ..AppOptions::default()
    })
    .await;
    // 689 on plan (2 of 2); the ten others have nothing.
    let earlier = (now - chrono::TimeDelta::hours(1)).to_rfc3339();
    let producer = Producer::new();
    for (i, id) in ["dr-689-1", "dr-689-2"].iter().enumerate() {
        let m = events::cccd(id, &earlier, Place::Commune("25195"), &citizen(10 + i as u64), "received");
        producer.send(&app.topics.cccd, 0, None, m.as_bytes()).await;
    }
    app.wait_consumed(2, Duration::from_secs(60)).await;
    let gauge = |m: &crate::harness::Metrics, name: &str| m.get(name, &[]).unwrap_or(-1.0);
    if Utc::now() < starts_at {
        let m = app.metrics().await;
        assert_eq!(gauge(&m, "d06_daily_alerts_due_timestamp_seconds"), starts_at.timestamp() as f64);
        assert_eq!(gauge(&m, "d06_daily_alerts_last_success_timestamp_seconds"), 0.0);
    }

    let lagging = ["688", "690", "691", "692", "693", "694", "695", "696", "697", "698"];
    let got = hooks
        .collect(Duration::from_secs(150), LINGER, |got| {
            got.iter().any(|d| d.path == "/district/688") && province_districts(got) == lagging
        })
        .await;
    let d688: Vec<&Delivery> = got.iter().filter(|d| d.path == "/district/688").collect();
    assert_eq!(d688.len(), 1, "send_at {send_at}: {got:#?}\n{}", app.log_tail(30));
    let a = &d688[0].alerts()[0];
    assert_eq!(label(a, "day"), today.to_string());
    assert_eq!(label(a, "indicator"), "cccd");
    assert_eq!(a["startsAt"], starts_at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    assert!(Utc::now() >= starts_at, "not sent before {send_at}");
    assert!(got.iter().all(|d| d.path != "/district/689"), "{got:#?}");
    assert_eq!(am.alerts_received().await, 10.0);
    let rows =
        app.clickhouse(&format!("SELECT count(), uniqExact(district) FROM alerts FINAL WHERE day = '{today}'")).await;
    assert_eq!(rows, "10\t10\n");
    // Done: the success is recorded and the next due time is tomorrow's
    // (what the rule D06DailyAlertsNotSent compares).
    app.wait_for("the daily alerts' success on /metrics", Duration::from_secs(30), || async {
        let m = app.metrics().await;
        gauge(&m, "d06_daily_alerts_last_success_timestamp_seconds") >= starts_at.timestamp() as f64
            && gauge(&m, "d06_daily_alerts_due_timestamp_seconds") == (starts_at.timestamp() + 86_400) as f64
    })
    .await;

    // Restarted after sending: today is due again at start-up, the records say it is done.
    app.stop();
    app.start().await;
    app.wait_for("the day checked again after the restart", Duration::from_secs(60), || async {
        app.log().matches("no district to alert").count() == 1
    })
    .await;
    assert_eq!(am.alerts_received().await, 10.0, "nothing posted after the restart");
    let late = hooks.collect(Duration::from_secs(3), Duration::ZERO, |_| false).await;
    assert!(late.is_empty(), "{late:#?}");
}
