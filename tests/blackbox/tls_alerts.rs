//! Issue 14: the daily alerts to two real Alertmanagers (0.25) serving HTTPS
//! only, with basic auth (`--web.config.file`: the test CA's certificate, a
//! bcrypt hash made here with `htpasswd` of a password made here), one of
//! them down. d06 reads ClickHouse over HTTPS too (`tls.rs`). The alert set
//! expected is worked out by hand from the plan of `daily_alerts.rs` (every
//! district weighs 1, CCCD 10 per district by 20/4): on 12/4 every district
//! but 689 lags.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::daily_alerts::{plan_toml, send, DAY};
use crate::events::{self, citizen, Place};
use crate::harness::{spawn_app, AppOptions, Producer};
use crate::tls::TlsStack;

const USER: &str = "d06";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// A private Alertmanager on a free port: HTTPS and basic auth only, a
/// receiver that drops every notification (what it received is read from its API).
struct TlsAlertmanager {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for TlsAlertmanager {
    fn drop(&mut self) {
        self.stop();
    }
}

impl TlsAlertmanager {
    async fn start(tls: &TlsStack, password: &str) -> TlsAlertmanager {
        let dir = tempfile::tempdir().expect("tempdir");
        let hash = Command::new("htpasswd")
            .args(["-nbBC", "10", USER, password])
            .output()
            .expect("htpasswd (apache2-utils) not found: run `bash deploy/local/install.sh`");
        assert!(hash.status.success(), "htpasswd: {}", String::from_utf8_lossy(&hash.stderr));
        let hash = String::from_utf8_lossy(&hash.stdout).trim().trim_start_matches(&format!("{USER}:")).to_owned();
        let certs = tls.ca().parent().expect("tls dir").to_path_buf();
        let web = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  {USER}: '{hash}'\n",
            certs.join("server.pem").display(),
            certs.join("server.key").display()
        );
        std::fs::write(dir.path().join("web.yml"), web).expect("web config");
        std::fs::write(dir.path().join("am.yml"), "route:\n  receiver: drop\nreceivers:\n  - name: drop\n")
            .expect("config");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).expect("log");
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", dir.path().join("am.yml").display()))
            .arg(format!("--web.config.file={}", dir.path().join("web.yml").display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("prometheus-alertmanager not found on PATH: run `bash deploy/local/install.sh`");
        let am = TlsAlertmanager { child: Some(child), port, dir };
        let http = tls.http();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http.get(format!("{}/-/ready", am.url())).basic_auth(USER, Some(password)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return am;
            }
            assert!(Instant::now() < deadline, "TLS Alertmanager not ready in 30 s:\n{}", am.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The alerts it holds: (district, indicator, day) sorted.
    async fn alerts(&self, tls: &TlsStack, password: &str) -> Vec<(String, String, String)> {
        let r = tls
            .http()
            .get(format!("{}/api/v2/alerts", self.url()))
            .basic_auth(USER, Some(password))
            .send()
            .await
            .expect("GET alerts");
        assert!(r.status().is_success(), "{}", r.status());
        let v: serde_json::Value = r.json().await.expect("json");
        let mut out: Vec<(String, String, String)> = v
            .as_array()
            .expect("array")
            .iter()
            .map(|a| {
                let l = |k: &str| a["labels"][k].as_str().unwrap_or("").to_owned();
                assert_eq!(l("alertname"), "D06DailyDistrictLag", "{a}");
                (l("district"), l("indicator"), l("day"))
            })
            .collect();
        out.sort();
        out
    }
}

/// `text` without ANSI colour codes.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_alerts_reach_an_https_alertmanager_with_basic_auth_while_its_replica_is_down() {
    let tls = TlsStack::from_env();
    let password = format!("am-{:x}", rand::random::<u64>());
    let up = TlsAlertmanager::start(&tls, &password).await;
    let mut down = TlsAlertmanager::start(&tls, &password).await;
    down.stop();

    // Without credentials, or with a wrong password, the live one refuses.
    let http = tls.http();
    let anonymous = http.get(format!("{}/api/v2/alerts", up.url())).send().await.expect("GET");
    assert_eq!(anonymous.status(), 401);
    let wrong =
        http.get(format!("{}/api/v2/alerts", up.url())).basic_auth(USER, Some("nope")).send().await.expect("GET");
    assert_eq!(wrong.status(), 401);

    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.toml");
    std::fs::write(&plan, plan_toml()).expect("plan");
    let password_file = dir.path().join("am.password");
    std::fs::write(&password_file, format!("{password}\n")).expect("password file");
    let alerts_toml = format!(
        "[plan]\nfile = {plan:?}\n[alerts]\nalertmanager_url = [{:?}, {:?}]\nusername = \"{USER}\"\n\
         password_file = {password_file:?}\nca_file = {ca:?}\n",
        down.url(),
        up.url(),
        plan = plan.display().to_string(),
        password_file = password_file.display().to_string(),
        ca = tls.ca().display().to_string(),
    );
    let app = spawn_app(tls.with_clickhouse(AppOptions {
        partitions: 1,
        shards: 2,
        extra_toml: alerts_toml,
        ..AppOptions::default()
    }))
    .await;
    let msgs = [
        events::cccd("ta-688-1", "2024-04-11T09:00:00+07:00", Place::Commune("25216"), &citizen(1), "received"),
        events::cccd("ta-689-1", "2024-04-11T10:00:00+07:00", Place::Commune("25195"), &citizen(2), "received"),
        events::cccd("ta-689-2", "2024-04-12T10:00:00+07:00", Place::Commune("25195"), &citizen(3), "received"),
    ];
    let producer = Producer::new();
    for m in &msgs {
        producer.send(&app.topics.cccd, 0, None, m.as_bytes()).await;
    }
    app.wait_consumed(msgs.len() as u64, Duration::from_secs(60)).await;
    let sql = "SELECT sum(gained), max(day) FROM coverage_daily WHERE area_level = 'province'";
    app.wait_for("12/4 in the TLS ClickHouse", Duration::from_secs(60), || async {
        tls.query(&app.database, sql).await == format!("3\t{DAY}\n")
    })
    .await;

    let (ok, stdout, stderr) = send(&app, DAY).await;
    let stderr = plain(&stderr);
    assert!(ok, "d06 alerts send failed:\n{stderr}");
    let lagging = ["688", "690", "691", "692", "693", "694", "695", "696", "697", "698"];
    let mut want: String = lagging.iter().map(|c| format!("{c}\tcccd\n")).collect();
    want.push_str(&format!("10 daily alert(s) sent for {DAY}\n"));
    assert_eq!(stdout, want, "{stderr}");
    // The replica that is down is named in a warning; the post still counts.
    assert!(
        stderr.contains("an Alertmanager did not take the daily alerts") && stderr.contains(&down.url()),
        "{stderr}"
    );
    assert!(stderr.contains("accepted_by=1") && stderr.contains("failed=1"), "{stderr}");
    assert!(!stderr.contains(&password), "the password is in the log");

    let got = up.alerts(&tls, &password).await;
    let expected: Vec<(String, String, String)> =
        lagging.iter().map(|c| (c.to_string(), "cccd".to_owned(), DAY.to_owned())).collect();
    assert_eq!(got, expected, "{}", up.log());
    let recorded = tls.query(&app.database, &format!("SELECT count() FROM alerts FINAL WHERE day = '{DAY}'")).await;
    assert_eq!(recorded, "10\n");
}
