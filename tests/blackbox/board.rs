//! Issue 7: the IOC wall board in a real browser.
//!
//! Debian's `chromium`, headless, driven over the Chrome DevTools protocol
//! on a pipe (`--remote-debugging-pipe`: NUL-separated JSON on the browser's
//! fds 3 and 4, wired up by `bash` redirections), so no websocket client is
//! needed. The tests poll the live DOM with `Runtime.evaluate`, which is what
//! makes "updates without a reload" checkable: the page is loaded once, new
//! snapshots are published, and the same page (a marker set in its `window`
//! survives) shows them.
//!
//! `D06_TEST_CHROMIUM` overrides the browser binary (default `chromium`).
//! The screenshot lands in `target/test-artifacts/board.png`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use aggregator::{AreaLevel, Geography, GeographyVersion, Indicator};
use serde_json::{json, Value};
use sinks::board::{
    label, pace_note, AreaBoard, Board, BoardSnapshot, HotlineBoard, IndicatorBoard, ProvinceLink, ReplayBoard,
};
use sinks::{Health, HttpServer, Metrics};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------
// A minimal CDP client over --remote-debugging-pipe.

/// A headless Chromium with one page attached.
pub struct Chromium {
    child: Child,
    stdin: ChildStdin,
    rx: mpsc::Receiver<Value>,
    next_id: u64,
    session: Option<String>,
    /// Protocol events seen so far (method, params).
    pub events: Vec<(String, Value)>,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Starts the browser (1920×1080) and attaches to a blank page.
    pub fn start() -> Chromium {
        let bin = std::env::var("D06_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(profile.path().join("chromium.log")).expect("log");
        let mut child = Command::new("bash")
            .arg("-c")
            // fd 3: commands in (our stdin pipe); fd 4: answers out (our stdout pipe).
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(&bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--mute-audio",
                "--window-size=1920,1080",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().join("profile").display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("bash");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 64 * 1024];
            loop {
                let n = match stdout.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|&b| b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg[..end]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut c = Chromium { child, stdin, rx, next_id: 0, session: None, events: Vec::new(), _profile: profile };
        let targets = c.call_with_timeout("Target.getTargets", json!({}), Duration::from_secs(30)).unwrap_or_else(|e| {
            panic!("{bin} did not answer on the DevTools pipe ({e}); install it with `bash deploy/local/install.sh` (Debian package chromium)")
        });
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["type"] == "page"))
            .map(|t| t["targetId"].clone())
            .expect("a page target");
        let attached = c.call("Target.attachToTarget", json!({ "targetId": page, "flatten": true }));
        c.session = Some(attached["sessionId"].as_str().expect("sessionId").to_owned());
        c.call("Runtime.enable", json!({}));
        c.call("Network.enable", json!({}));
        c.call("Page.enable", json!({}));
        c.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": false }),
        );
        c
    }

    fn call_with_timeout(&mut self, method: &str, params: Value, timeout: Duration) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("json");
        bytes.push(0);
        self.stdin.write_all(&bytes).and_then(|()| self.stdin.flush()).map_err(|e| format!("write: {e}"))?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.rx.recv_timeout(left).map_err(|e| format!("{method}: no answer: {e}"))?;
            if m["id"] == id {
                if let Some(err) = m.get("error") {
                    return Err(format!("{method}: {err}"));
                }
                return Ok(m["result"].clone());
            }
            if let Some(name) = m["method"].as_str() {
                self.events.push((name.to_owned(), m["params"].clone()));
            }
        }
    }

    /// One protocol command on the page; panics on an error.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.call_with_timeout(method, params, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Evaluates `expr` in the page and returns its value (JSON).
    pub fn eval(&mut self, expr: &str) -> Value {
        let r =
            self.call("Runtime.evaluate", json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }));
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("page threw evaluating {expr}: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is `true`. An exception counts as not yet, and
    /// so does the evaluation refused ("Inspected target navigated or
    /// closed", seen in CI right after a click that navigates): the page
    /// may be between documents.
    pub fn wait_until(&mut self, what: &str, expr: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let params = json!({ "expression": expr, "returnByValue": true });
            let r = self
                .call_with_timeout("Runtime.evaluate", params, Duration::from_secs(30))
                .unwrap_or_else(|e| json!(e));
            if r["result"]["value"] == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} ({expr}): last {r}; page errors: {:?}",
                self.errors()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn navigate(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({ "url": url }));
        assert!(r.get("errorText").is_none(), "navigating to {url}: {r}");
    }

    /// A PNG of the viewport.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        base64_decode(r["data"].as_str().expect("screenshot data"))
    }

    /// Uncaught exceptions and `console.error` calls seen so far.
    pub fn errors(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|(m, p)| match m.as_str() {
                "Runtime.exceptionThrown" => Some(p["exceptionDetails"].to_string()),
                "Runtime.consoleAPICalled" if p["type"] == "error" => Some(p["args"].to_string()),
                _ => None,
            })
            .collect()
    }

    /// URLs of every request the page made so far.
    pub fn requests(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|(m, _)| m == "Network.requestWillBeSent")
            .filter_map(|(_, p)| p["request"]["url"].as_str().map(str::to_owned))
            .collect()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        self.session = None;
        let _ = self.call_with_timeout("Browser.close", json!({}), Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    }
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &c)| acc | val(c) << (18 - 6 * i));
        let [_, a, b, c] = n.to_be_bytes();
        out.extend_from_slice(&[a, b, c][..chunk.len() - 1]);
    }
    out
}

/// `target/test-artifacts/NAME` of this workspace.
pub fn artifact(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir.join(name)
}

/// Vietnamese digit grouping, as the page shows numbers.
fn vn(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    if n < 0 {
        format!("−{out}")
    } else {
        out
    }
}

/// A rate as the page writes it: one decimal (comma) below 100, whole and
/// grouped above.
fn vn_rate(x: f64) -> String {
    if x.abs() >= 100.0 {
        return vn(x.round() as i64);
    }
    let tenths = (x * 10.0).round() as i64;
    let (sign, t) = if tenths < 0 { ("−", -tenths) } else { ("", tenths) };
    if t % 10 == 0 {
        format!("{sign}{}", t / 10)
    } else {
        format!("{sign}{},{}", t / 10, t % 10)
    }
}

/// Everything the tests read back from the page, in one evaluation.
const READ_BOARD: &str = r#"(() => {
  const q = (el, id) => el.querySelector('[data-testid="' + id + '"]');
  const num = (el, id) => { const e = q(el, id); return e ? { value: Number(e.dataset.value), text: e.textContent } : null; };
  const cells = row => [...row.querySelectorAll('[data-testid="cell"]')].map(c => ({
    indicator: c.dataset.indicator, status: c.dataset.status, border: getComputedStyle(c).borderLeftColor,
    covered: num(c, 'covered'), target: num(c, 'target'), expected: num(c, 'expected'),
    days_behind: num(c, 'days-behind'), gained_today: num(c, 'gained-today'),
  }));
  const area = row => ({
    area: row.dataset.area, rank: Number(row.dataset.rank), name: q(row, 'area-name').textContent,
    title: q(row, 'area-name').title, cells: cells(row),
  });
  const hl = {};
  for (const k of ['received', 'in_progress', 'overdue_specialist', 'overdue_leadership', 'processed', 'spam'])
    hl[k] = num(document, 'hotline-' + k);
  return {
    messages: Number(document.body.dataset.messages || 0),
    conn: document.getElementById('conn').dataset.state,
    conn_text: document.getElementById('conn-text').textContent,
    today: document.getElementById('today').textContent,
    updated_at: document.getElementById('updated-at').textContent,
    headers: [...document.querySelectorAll('th.ind')].map(th => th.textContent),
    province: area(q(document, 'province-row')),
    districts: [...document.querySelectorAll('[data-testid="district-row"]')].map(area),
    hotline: hl,
    ranking: [...document.querySelectorAll('[data-testid="ranking-item"]')].map(li => li.dataset.area),
    tier: q(document, 'tier').textContent,
    overdue: [...document.querySelectorAll('[data-testid="overdue-item"]')].map(e => [e.dataset.area, Number(e.dataset.value), e.textContent]),
    overdue_text: q(document, 'overdue-list').textContent,
    waiting: !document.getElementById('waiting').hidden,
  };
})()"#;

/// Checks every number of one area's row against what was published.
fn assert_area(dom: &Value, want: &AreaBoard) {
    assert_eq!(dom["area"], want.code.as_str());
    assert_eq!(dom["rank"], want.rank);
    assert_eq!(dom["title"], want.name.as_str());
    // Shown as "Thị xã" (small) over "Phước Long" (large).
    let short =
        ["Thành phố ", "Thị xã ", "Huyện ", "Tỉnh "].iter().fold(want.name.as_str(), |n, p| n.trim_start_matches(p));
    let name = dom["name"].as_str().unwrap();
    assert!(name.ends_with(short), "{name} vs {}", want.name);
    let cells = dom["cells"].as_array().unwrap();
    assert_eq!(cells.len(), want.indicators.len(), "{}", want.code);
    for (c, w) in cells.iter().zip(&want.indicators) {
        let at = format!("{} {}", want.code, w.indicator);
        assert_eq!(c["indicator"], w.indicator.as_str(), "{at}");
        assert_eq!(c["covered"]["value"], w.covered, "{at}");
        assert_eq!(c["covered"]["text"], vn(w.covered), "{at}");
        assert_eq!(c["target"]["value"], w.target, "{at}");
        assert_eq!(c["target"]["text"], vn(w.target as i64), "{at}");
        assert_eq!(c["expected"]["value"], w.expected, "{at}");
        assert_eq!(c["days_behind"]["value"], w.days_behind, "{at}");
        let lag = if !w.baseline_known {
            // The fixture's paces are whole numbers: the page shows them grouped.
            format!(
                "Chưa có số liệu nền — tốc độ {}/ngày, cần {}",
                vn(w.pace_per_day as i64),
                vn(w.needed_per_day as i64)
            )
        } else if w.days_behind == 0 {
            "Đúng kế hoạch".to_owned()
        } else {
            format!("Chậm {} ngày", w.days_behind)
        };
        assert_eq!(c["days_behind"]["text"], lag, "{at}");
        assert_eq!(c["gained_today"]["value"], w.gained_today, "{at}");
        assert_eq!(c["gained_today"]["text"], format!("Hôm nay +{}", vn(w.gained_today as i64)), "{at}");
        let (status, colour) = match (w.baseline_known, w.lagging, w.days_behind) {
            (false, _, _) => ("unknown", "rgb(96, 165, 250)"),
            (true, true, _) => ("lag", "rgb(239, 68, 68)"),
            (true, false, 0) => ("ok", "rgb(34, 197, 94)"),
            (true, false, _) => ("behind", "rgb(245, 165, 36)"),
        };
        assert_eq!(c["status"], status, "{at}");
        assert_eq!(c["border"], colour, "{at}");
    }
}

/// Checks the whole page against a snapshot.
fn assert_board(dom: &Value, want: &BoardSnapshot) {
    assert!(!dom["waiting"].as_bool().unwrap(), "still waiting for data");
    let headers: Vec<&str> = Indicator::ALL.iter().map(|&i| label(i)).collect();
    assert_eq!(dom["headers"], json!(headers));
    assert_area(&dom["province"], &want.province);
    let districts = dom["districts"].as_array().unwrap();
    assert_eq!(districts.len(), want.districts.len());
    for (d, w) in districts.iter().zip(&want.districts) {
        assert_area(d, w);
    }
    for (k, v) in [
        ("received", want.hotline.received),
        ("in_progress", want.hotline.in_progress),
        ("overdue_specialist", want.hotline.overdue_specialist),
        ("overdue_leadership", want.hotline.overdue_leadership),
        ("processed", want.hotline.processed),
        ("spam", want.hotline.spam),
    ] {
        assert_eq!(dom["hotline"][k]["value"], v, "hotline {k}");
        assert_eq!(dom["hotline"][k]["text"], vn(v as i64), "hotline {k}");
    }
    // Districts with overdue tickets, most first.
    let mut late: Vec<(&str, u64)> = want
        .districts
        .iter()
        .map(|d| (d.code.as_str(), d.hotline.overdue_specialist + d.hotline.overdue_leadership))
        .filter(|&(_, n)| n > 0)
        .collect();
    late.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let shown: Vec<(&str, u64)> =
        dom["overdue"].as_array().unwrap().iter().map(|e| (e[0].as_str().unwrap(), e[1].as_u64().unwrap())).collect();
    assert_eq!(shown, late);
    if late.is_empty() {
        assert_eq!(dom["overdue_text"], "Không có phiếu quá hạn");
    }
    let mut by_rank: Vec<&AreaBoard> = want.districts.iter().collect();
    by_rank.sort_by_key(|d| d.rank);
    let ranking: Vec<&str> = by_rank.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(dom["ranking"], json!(ranking));
    // "Xếp hạng huyện", or after the 2025 reform "Xếp hạng xã".
    assert_eq!(dom["tier"], want.tier.as_str());
}

// ---------------------------------------------------------------------------
// A hand-made campaign: 11 districts with names from the embedded geography.

/// Province-wide targets of the 2024 plan (deploy/plans/binh-phuoc-2024.toml).
const TARGETS: [u64; 5] = [7_101, 334_507, 777_150, 431_750, 211_000];

/// Day 25 of the campaign (4/5/2024); `step` = 0, 1, 2 for successive snapshots.
fn campaign(step: u64) -> BoardSnapshot {
    let geo = Geography::load(GeographyVersion::Pre2025).unwrap();
    let districts: Vec<_> = geo.of_level(AreaLevel::District).map(|id| geo.area(id).clone()).collect();
    assert_eq!(districts.len(), 11);
    let weights = [7u64, 8, 6, 8, 16, 7, 13, 11, 16, 9, 10]; // communes per district, as the plan splits
    let mut boards: Vec<AreaBoard> = districts
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let indicators = Indicator::ALL
                .iter()
                .enumerate()
                .map(|(j, &ind)| {
                    let target = TARGETS[j] * weights[i] / 111;
                    // Day 25 of 90 with 30 % by day 30: expected = target × 25 %.
                    let expected = target / 4;
                    // Districts run from 70 % to 120 % of plan, varied by indicator.
                    let pace = match 70 + ((i * 7 + j * 3) % 11) as u64 * 5 {
                        95 => 97, // within the 5 % tolerance: amber, not red
                        p => p,
                    };
                    // The plan asks for 1 % of the target a day (30 % in 30 days);
                    // each district gains at its own pace, some nothing today.
                    let per_day = target / 100;
                    let gained_today = if (i + j) % 6 == 0 { 0 } else { per_day * pace / 100 + step };
                    let covered = (expected * pace / 100 + step * gained_today) as i64;
                    let expected = expected + step * per_day;
                    let short = (expected as i64 - covered).max(0) as u64;
                    // SIM signatures: the plan does not know the baseline
                    // (as in the 2024 plan): never behind, the pace shown.
                    let known = ind != Indicator::SimSignature;
                    let days_behind = if known { short.div_ceil(per_day.max(1)) as u32 } else { 0 };
                    let lagging = known && ((covered as f64) < expected as f64 * 0.95 || days_behind >= 3);
                    let pace_per_day = (per_day * pace / 100) as f64;
                    IndicatorBoard {
                        indicator: ind.as_str().into(),
                        label: label(ind).into(),
                        covered,
                        target,
                        expected,
                        days_behind,
                        gained_today,
                        eta: (known && covered >= expected as i64).then(|| "2024-06-30".into()),
                        lagging,
                        baseline_known: known,
                        pace_per_day,
                        needed_per_day: per_day as f64,
                        note: (!known).then(|| pace_note(pace_per_day, per_day as f64)),
                    }
                })
                .collect();
            let n = i as u64;
            let hotline = HotlineBoard {
                received: 40 + 9 * n + step * 3,
                in_progress: 3 + n % 4 + step,
                overdue_specialist: u64::from(i % 3 == 0) + u64::from(i == 4),
                overdue_leadership: u64::from(i == 4),
                processed: 30 + 8 * n,
                spam: n % 2 + 1,
            };
            AreaBoard { code: d.code.clone(), name: d.name.clone(), rank: 0, indicators, hotline }
        })
        .collect();
    // Rank as d06 does: by the mean of covered / target capped at 100 % over
    // the indicators whose baseline is known (not SIM signatures here), best first.
    let share = |a: &AreaBoard| {
        a.indicators
            .iter()
            .filter(|c| c.baseline_known)
            .map(|c| (c.covered as f64 / c.target as f64).min(1.0))
            .sum::<f64>()
    };
    let mut order: Vec<usize> = (0..boards.len()).collect();
    order.sort_by(|&a, &b| share(&boards[b]).total_cmp(&share(&boards[a])));
    for (r, &i) in order.iter().enumerate() {
        boards[i].rank = r as u32 + 1;
    }
    let sum = |f: &dyn Fn(&IndicatorBoard) -> u64, j: usize| boards.iter().map(|b| f(&b.indicators[j])).sum::<u64>();
    let province_indicators = Indicator::ALL
        .iter()
        .enumerate()
        .map(|(j, &ind)| {
            let covered = sum(&|c| c.covered as u64, j) as i64;
            let expected = sum(&|c| c.expected, j);
            let known = ind != Indicator::SimSignature;
            let pace_per_day = boards.iter().map(|b| b.indicators[j].pace_per_day).sum::<f64>();
            let needed_per_day = boards.iter().map(|b| b.indicators[j].needed_per_day).sum::<f64>();
            IndicatorBoard {
                indicator: ind.as_str().into(),
                label: label(ind).into(),
                covered,
                target: sum(&|c| c.target, j),
                expected,
                days_behind: u32::from(known && covered < expected as i64),
                gained_today: sum(&|c| c.gained_today, j),
                eta: known.then(|| "2024-07-02".into()),
                lagging: false,
                baseline_known: known,
                pace_per_day,
                needed_per_day,
                note: (!known).then(|| pace_note(pace_per_day, needed_per_day)),
            }
        })
        .collect();
    let hsum = |f: fn(&HotlineBoard) -> u64| boards.iter().map(|b| f(&b.hotline)).sum::<u64>();
    let hotline = HotlineBoard {
        received: hsum(|h| h.received),
        in_progress: hsum(|h| h.in_progress),
        overdue_specialist: hsum(|h| h.overdue_specialist),
        overdue_leadership: hsum(|h| h.overdue_leadership),
        processed: hsum(|h| h.processed),
        spam: hsum(|h| h.spam),
    };
    let province = geo.area(geo.province());
    BoardSnapshot {
        campaign: "Đề án 06 — cao điểm 90 ngày, đêm “4 phủ” · Bình Phước".into(),
        today: "2024-05-04".into(),
        updated_at: format!("2024-05-04T16:{:02}:07+07:00", 20 + step),
        clock: "wall".into(),
        tier: "huyện".into(),
        province: AreaBoard {
            code: province.code.clone(),
            name: province.name.clone(),
            rank: 0,
            indicators: province_indicators,
            hotline,
        },
        districts: boards,
        hotline,
        replay: None,
        provinces: vec![ProvinceLink { code: province.code.clone(), name: province.name.clone() }],
    }
}

/// The board's routes on d06's own HTTP server, on a loopback port (`port` 0: any free one).
async fn serve(
    board: &Board,
    port: u16,
    shutdown: CancellationToken,
) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    let server = HttpServer::bind(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Arc::new(Metrics::new().unwrap()),
        Arc::new(Health::new()),
    )
    .await
    .expect("bind")
    .merge(board.routes());
    let addr = server.local_addr();
    (addr, tokio::spawn(server.run(shutdown)))
}

#[test]
fn vn_groups_thousands_with_dots() {
    assert_eq!(vn(0), "0");
    assert_eq!(vn(999), "999");
    assert_eq!(vn(1_000), "1.000");
    assert_eq!(vn(777_150), "777.150");
    assert_eq!(vn(1_234_567), "1.234.567");
    assert_eq!(vn(-5_000), "−5.000");
    assert_eq!(
        (vn_rate(2.14), vn_rate(5.5), vn_rate(0.0), vn_rate(8634.9)),
        ("2,1".into(), "5,5".into(), "0".into(), "8.635".into())
    );
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
}

#[test]
fn fixture_has_every_colour_and_ranks_every_district() {
    let s = campaign(0);
    let cells: Vec<&IndicatorBoard> = s.districts.iter().flat_map(|d| &d.indicators).collect();
    assert!(cells.iter().any(|c| c.lagging));
    assert!(cells.iter().any(|c| !c.lagging && c.days_behind > 0), "an amber cell");
    assert!(cells.iter().any(|c| c.days_behind == 0));
    assert!(cells.iter().any(|c| !c.baseline_known && !c.lagging), "a cell without a baseline");
    let mut ranks: Vec<u32> = s.districts.iter().map(|d| d.rank).collect();
    ranks.sort_unstable();
    assert_eq!(ranks, (1..=11).collect::<Vec<u32>>());
    assert_eq!(s.districts[0].code, "688");
    assert_eq!(s.districts[0].name, "Thị xã Phước Long");
}

#[test]
fn board_in_chromium_shows_every_district_updates_live_and_reconnects() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let board = Board::new();
    let first = campaign(0);
    board.publish(first.clone());
    let shutdown = CancellationToken::new();
    let (addr, server) = rt.block_on(serve(&board, 0, shutdown.clone()));
    let base = format!("http://{addr}");

    let mut chrome = Chromium::start();
    chrome.navigate(&format!("{base}/board"));
    chrome.wait_until("the first snapshot", "Number(document.body.dataset.messages) >= 1", Duration::from_secs(30));
    chrome.wait_until(
        "the stream to be open",
        "document.getElementById('conn').dataset.state === 'open'",
        Duration::from_secs(10),
    );
    let dom = chrome.eval(READ_BOARD);
    assert_board(&dom, &first);
    assert_eq!(dom["today"], "04/05/2024");
    assert_eq!(dom["updated_at"], "16:20:07");
    assert_eq!(dom["conn_text"], "Trực tuyến");

    // A new snapshot reaches the same page without a reload.
    chrome.eval("window.__samePage = 'yes'");
    let second = campaign(1);
    assert_ne!(second.districts[3].indicators[1].covered, first.districts[3].indicators[1].covered);
    board.publish(second.clone());
    chrome.wait_until(
        "the second snapshot",
        &format!(
            "document.querySelector('#cell-{}-vneid [data-testid=covered]').dataset.value === '{}'",
            second.districts[3].code, second.districts[3].indicators[1].covered
        ),
        Duration::from_secs(10),
    );
    let dom = chrome.eval(READ_BOARD);
    assert_board(&dom, &second);
    assert_eq!(dom["updated_at"], "16:21:07");
    assert_eq!(dom["messages"], 2);
    assert_eq!(chrome.eval("window.__samePage"), "yes", "the page was reloaded");
    assert_eq!(chrome.eval("performance.getEntriesByType('navigation').length"), 1);

    let overdue = chrome.eval(READ_BOARD)["overdue"].clone();
    assert_eq!(overdue[0][2], "Lộc Ninh2 quá hạn (1 lãnh đạo)", "{overdue}");
    chrome.wait_until(
        "the highlight of grown numbers to fade",
        "document.getAnimations().length === 0",
        Duration::from_secs(10),
    );
    let png = chrome.screenshot();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1920, 1080));
    std::fs::write(artifact("board.png"), &png).unwrap();
    let html = chrome.eval("document.documentElement.outerHTML");
    std::fs::write(artifact("board-dom.html"), html.as_str().unwrap()).unwrap();

    // Replaying far behind: the wall says its figures are not current, with
    // what is left and the time it should take; caught up, the banner goes.
    board.set_replay(ReplayBoard { behind: true, lag: 1_234_567, rate: 20_000.0, eta_seconds: Some(62 * 60) });
    chrome.wait_until(
        "the replay banner",
        "!document.getElementById('replay').hidden && document.body.dataset.replaying === 'true'",
        Duration::from_secs(10),
    );
    assert_eq!(
        chrome.eval("document.getElementById('replay').textContent"),
        "Đang nạp lại dữ liệu: còn 1.234.567 bản tin, khoảng 62 phút — số liệu chưa phải hiện tại"
    );
    assert_board(&chrome.eval(READ_BOARD), &second);
    std::fs::write(artifact("board-replaying.png"), chrome.screenshot()).unwrap();
    board.set_replay(ReplayBoard { behind: false, lag: 12, rate: 20_000.0, eta_seconds: Some(0) });
    chrome.wait_until(
        "the replay banner to go",
        "document.getElementById('replay').hidden && document.body.dataset.replaying === 'false'",
        Duration::from_secs(10),
    );
    let seen = chrome.eval("Number(document.body.dataset.messages)").as_u64().unwrap();

    // The server goes away (d06 restarting): the page says so, keeps the
    // last figures, and picks up the new server's snapshot by itself.
    shutdown.cancel();
    board.close();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), server).await })
        .expect("server stops")
        .unwrap()
        .unwrap();
    chrome.wait_until(
        "the lost connection",
        "document.getElementById('conn').dataset.state === 'closed'",
        Duration::from_secs(10),
    );
    assert_eq!(chrome.eval(READ_BOARD)["conn_text"], "Mất kết nối · đang thử lại");
    assert_board(&chrome.eval(READ_BOARD), &second);

    let shutdown2 = CancellationToken::new();
    let restarted = Board::with_shutdown(&shutdown2);
    // The new server's snapshot names the communes as its tier (as after
    // the 2025 reform): the ranking's heading follows the snapshot.
    let third = BoardSnapshot { tier: "xã".into(), ..campaign(2) };
    restarted.publish(third.clone());
    let (addr2, server2) = rt.block_on(serve(&restarted, addr.port(), shutdown2.clone()));
    assert_eq!(addr2, addr);
    chrome.wait_until(
        "the reconnection",
        &format!("Number(document.body.dataset.messages) > {seen}"),
        Duration::from_secs(30),
    );
    chrome.wait_until(
        "the stream to be open",
        "document.getElementById('conn').dataset.state === 'open'",
        Duration::from_secs(10),
    );
    assert_board(&chrome.eval(READ_BOARD), &third);
    assert_eq!(chrome.eval("window.__samePage"), "yes", "the page was reloaded");

    // Offline-safe: everything the page loaded came from the board itself,
    // and nothing went wrong in it.
    let requests = chrome.requests();
    assert!(requests.iter().any(|u| u == &format!("{base}/board/events")), "{requests:?}");
    for u in &requests {
        assert!(u.starts_with(&format!("{base}/board")), "the page fetched {u}");
    }
    assert_eq!(chrome.errors(), Vec::<String>::new());

    // With the page still connected, the shutdown token alone stops the server.
    shutdown2.cancel();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), server2).await })
        .expect("server stops")
        .unwrap()
        .unwrap();
    chrome.wait_until(
        "the page to notice",
        "document.getElementById('conn').dataset.state === 'closed'",
        Duration::from_secs(10),
    );
}

/// A deployment tracking two provinces: `/board?province=74` shows 74's
/// snapshot, streams 74's events, and links both; a click goes to the other.
#[test]
fn board_in_chromium_links_each_tracked_province_and_follows_its_query() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let shutdown = CancellationToken::new();
    let board = Board::with_provinces(&["70".to_owned(), "74".to_owned()], &shutdown);
    let links = vec![
        ProvinceLink { code: "70".into(), name: "Bình Phước".into() },
        ProvinceLink { code: "74".into(), name: "Bình Dương".into() },
    ];
    let bp = BoardSnapshot { provinces: links.clone(), ..campaign(0) };
    let mut bd = BoardSnapshot { provinces: links, ..campaign(1) };
    (bd.province.code, bd.province.name) = ("74".into(), "Bình Dương".into());
    board.publish(bp.clone());
    board.publish(bd.clone());
    let (addr, server) = rt.block_on(serve(&board, 0, shutdown.clone()));
    let base = format!("http://{addr}");

    let mut chrome = Chromium::start();
    chrome.navigate(&format!("{base}/board?province=74"));
    chrome.wait_until("74's snapshot", "Number(document.body.dataset.messages) >= 1", Duration::from_secs(30));
    assert_board(&chrome.eval(READ_BOARD), &bd);
    let nav = chrome.eval(
        "(() => { const n = document.getElementById('provinces'); return { hidden: n.hidden, \
         links: [...n.querySelectorAll('a')].map(a => [a.dataset.code, a.textContent, a.getAttribute('aria-current')]) }; })()",
    );
    assert_eq!(nav["hidden"], false);
    assert_eq!(nav["links"], serde_json::json!([["70", "Bình Phước", null], ["74", "Bình Dương", "page"]]));
    assert!(chrome.requests().contains(&format!("{base}/board/events?province=74")), "{:?}", chrome.requests());

    chrome.eval("document.querySelector('#provinces a[data-code=\"70\"]').click()");
    chrome.wait_until(
        "70's board after the click",
        "location.search === '?province=70' && Number(document.body.dataset.messages) >= 1 \
         && document.querySelector('[data-testid=province-row]').dataset.area === '70'",
        Duration::from_secs(30),
    );
    assert_board(&chrome.eval(READ_BOARD), &bp);
    assert_eq!(chrome.errors(), Vec::<String>::new());
    shutdown.cancel();
    board.close();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), server).await })
        .expect("server stops")
        .unwrap()
        .unwrap();
}

// ---------------------------------------------------------------------------
// The real d06: the board it serves says what /metrics says, live.

/// Checks every number of the page against `/metrics` (province and districts).
fn assert_board_matches_metrics(dom: &Value, m: &crate::harness::Metrics) {
    let gauge = |name: &str, ind: &str, level: &str, area: &str| {
        m.get(name, &[("indicator", ind), ("area_level", level), ("area", area)])
            .unwrap_or_else(|| panic!("no {name}{{indicator={ind}, area_level={level}, area={area}}} on /metrics"))
    };
    let mut rows = vec![("province", &dom["province"])];
    rows.extend(dom["districts"].as_array().unwrap().iter().map(|d| ("district", d)));
    for (level, row) in rows {
        let area = row["area"].as_str().unwrap();
        let cells = row["cells"].as_array().unwrap();
        assert_eq!(cells.len(), 5, "{area}");
        for c in cells {
            let ind = c["indicator"].as_str().unwrap();
            let at = format!("{level} {area} {ind}");
            for (field, name) in [
                ("covered", "d06_coverage_covered"),
                ("target", "d06_coverage_target"),
                ("expected", "d06_coverage_expected"),
                ("gained_today", "d06_coverage_gained_today"),
            ] {
                assert_eq!(c[field]["value"].as_f64(), Some(gauge(name, ind, level, area)), "{at} {field}");
            }
            let labels = [("indicator", ind), ("area_level", level), ("area", area)];
            if gauge("d06_coverage_baseline_known", ind, level, area) == 1.0 {
                let days = gauge("d06_coverage_days_behind", ind, level, area);
                assert_eq!(c["days_behind"]["value"].as_f64(), Some(days), "{at}");
                assert_ne!(c["status"], "unknown", "{at}");
            } else {
                // No baseline: no days behind on /metrics, the pace on the board.
                assert_eq!(m.get("d06_coverage_days_behind", &labels), None, "{at}");
                assert_eq!(c["status"], "unknown", "{at}");
                assert_eq!(c["border"], "rgb(96, 165, 250)", "{at}");
                let text = format!(
                    "Chưa có số liệu nền — tốc độ {}/ngày, cần {}",
                    vn_rate(gauge("d06_coverage_pace_per_day", ind, level, area)),
                    vn_rate(gauge("d06_coverage_needed_per_day", ind, level, area))
                );
                assert_eq!(c["days_behind"]["text"], text, "{at}");
            }
            assert_eq!(c["covered"]["text"], vn(gauge("d06_coverage_covered", ind, level, area) as i64), "{at}");
        }
    }
    for k in ["received", "in_progress", "overdue_specialist", "overdue_leadership", "processed", "spam"] {
        let want = m.get("d06_hotline_tickets", &[("status", k), ("area_level", "province")]).unwrap_or(0.0);
        assert_eq!(dom["hotline"][k]["value"].as_f64(), Some(want), "hotline {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d06_serves_the_board_with_the_metrics_figures_live() {
    use crate::events::{self, Place, COMMUNES};
    use crate::harness::{spawn_app, AppOptions, Producer};

    let mut app = spawn_app(AppOptions { partitions: 1, shards: 2, ..AppOptions::default() }).await;
    let producer = Producer::new();
    let topics = app.topics.clone();
    let mut sent = 0u64;
    // District k (GSO order) gets k + 1 CCCD applications on 20/4, and the
    // first three districts a VNeID level-2 activation each.
    for (k, (commune, _)) in COMMUNES.iter().enumerate() {
        for _ in 0..=k {
            sent += 1;
            let m = events::cccd(
                &format!("c{sent}"),
                "2024-04-20T09:00:00+07:00",
                Place::Commune(commune),
                &events::citizen(sent),
                "received",
            );
            producer.send(&topics.cccd, 0, None, m.as_bytes()).await;
        }
    }
    for (k, (commune, _)) in COMMUNES.iter().take(3).enumerate() {
        sent += 1;
        let m = events::vneid(
            &format!("v{k}"),
            "2024-04-20T10:00:00+07:00",
            Place::Commune(commune),
            &events::citizen(k as u64 + 1),
            "activated",
            2,
        );
        producer.send(&topics.vneid, 0, None, m.as_bytes()).await;
    }
    sent += 1;
    let t = events::ticket(
        "t1",
        "2024-04-20T08:00:00+07:00",
        Place::Commune(COMMUNES[4].0),
        "T-0001",
        "received",
        "specialist",
    );
    producer.send(&topics.hotline, 0, None, t.as_bytes()).await;
    app.wait_consumed(sent, Duration::from_secs(60)).await;
    app.wait_for("the province's CCCD gauge", Duration::from_secs(30), || async {
        app.metrics().await.get("d06_coverage_covered", &[("indicator", "cccd"), ("area_level", "province")])
            == Some(66.0)
    })
    .await;
    let m = app.metrics().await;
    for (k, (_, district)) in COMMUNES.iter().enumerate() {
        let covered =
            m.get("d06_coverage_covered", &[("indicator", "cccd"), ("area_level", "district"), ("area", district)]);
        assert_eq!(covered, Some(k as f64 + 1.0), "district {district} (the plan's baseline is 0)");
    }

    let url = format!("http://127.0.0.1:{}/board", app.metrics_port);
    let mut chrome = tokio::task::block_in_place(Chromium::start);
    let dom = tokio::task::block_in_place(|| {
        chrome.navigate(&url);
        chrome.wait_until(
            "the board with the figures",
            "document.querySelectorAll('[data-testid=district-row]').length === 11 && \
             document.querySelector('#cell-70-cccd [data-testid=covered]').dataset.value === '66'",
            Duration::from_secs(30),
        );
        chrome.eval("window.__samePage = 'yes'");
        chrome.eval(READ_BOARD)
    });
    let districts: Vec<&str> =
        dom["districts"].as_array().unwrap().iter().map(|d| d["area"].as_str().unwrap()).collect();
    let codes: Vec<&str> = COMMUNES.iter().map(|(_, d)| *d).collect();
    assert_eq!(districts, codes, "the 11 districts in GSO code order");
    assert_eq!(dom["today"], "20/04/2024", "event clock: today is the newest event's day");
    assert_board_matches_metrics(&dom, &app.metrics().await);

    // ClickHouse and /metrics agree on which baselines the plan knows: the
    // embedded 2024 plan has none for the two shares of all adults
    // (smartphone_4g, sim_signature), whose cells show their pace.
    let rows = app
        .clickhouse(
            "SELECT indicator, area_level, area, baseline_known FROM coverage_baseline FINAL \
             WHERE area_level != 'commune' ORDER BY indicator, area_level, area",
        )
        .await;
    let m = app.metrics().await;
    let mut keys = 0;
    for line in rows.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let known: f64 = f[3].parse().expect("baseline_known");
        let labels = [("indicator", f[0]), ("area_level", f[1]), ("area", f[2])];
        assert_eq!(m.get("d06_coverage_baseline_known", &labels), Some(known), "{line}");
        assert_eq!(known == 0.0, ["smartphone_4g", "sim_signature"].contains(&f[0]), "{line}");
        keys += 1;
    }
    assert_eq!(keys, 5 * 12, "5 indicators × (province + 11 districts):\n{rows}");
    let unknown: Vec<&Value> = dom["districts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["cells"].as_array().unwrap())
        .filter(|c| c["status"] == "unknown")
        .collect();
    assert_eq!(unknown.len(), 2 * 11, "smartphone_4g and sim_signature in every district");

    // New events on a later day reach the open page without a reload.
    let mut more = 0u64;
    for i in 0..5u64 {
        more += 1;
        let m = events::cccd(
            &format!("d{i}"),
            "2024-04-21T09:00:00+07:00",
            Place::Commune(COMMUNES[5].0),
            &events::citizen(1000 + i),
            "received",
        );
        producer.send(&topics.cccd, 0, None, m.as_bytes()).await;
    }
    app.wait_consumed(sent + more, Duration::from_secs(60)).await;
    app.wait_for("the new CCCD figures", Duration::from_secs(30), || async {
        app.metrics().await.get("d06_coverage_covered", &[("indicator", "cccd"), ("area_level", "province")])
            == Some(71.0)
    })
    .await;
    let dom = tokio::task::block_in_place(|| {
        chrome.wait_until(
            "the update on the open page",
            "document.querySelector('#cell-693-cccd [data-testid=covered]').dataset.value === '11' && \
             document.getElementById('today').textContent === '21/04/2024'",
            Duration::from_secs(30),
        );
        assert_eq!(chrome.eval("window.__samePage"), "yes", "the page was reloaded");
        chrome.eval(READ_BOARD)
    });
    assert_eq!(dom["conn"], "open");
    let gained = &dom["districts"][5]["cells"][0]["gained_today"];
    assert_eq!((gained["value"].as_u64(), gained["text"].as_str()), (Some(5), Some("Hôm nay +5")));
    assert_board_matches_metrics(&dom, &app.metrics().await);
    tokio::task::block_in_place(|| {
        chrome.wait_until("animations to end", "document.getAnimations().length === 0", Duration::from_secs(10));
        std::fs::write(artifact("board-d06.png"), chrome.screenshot()).unwrap();
    });

    // A page left open must not hold up a clean stop: the event streams end
    // with the shutdown (d06 builds its board with `Board::with_shutdown`);
    // otherwise the graceful HTTP shutdown waits for them forever.
    let stopped = Instant::now();
    let status = tokio::task::block_in_place(|| app.terminate());
    assert!(status.success(), "d06 exited with {status}:\n{}", app.log_tail(30));
    assert!(stopped.elapsed() < Duration::from_secs(15), "SIGTERM took {:?} with the board open", stopped.elapsed());
    tokio::task::block_in_place(|| {
        chrome.wait_until(
            "the page to notice",
            "document.getElementById('conn').dataset.state === 'closed'",
            Duration::from_secs(10),
        );
    });
    assert_eq!(chrome.errors(), Vec::<String>::new());
}

/// Issue 7: the board loads from `d06 demo` (nothing else running for it:
/// no Kafka, no ClickHouse), shows all 11 districts with the `/metrics`
/// figures, and updates without a reload while the simulated campaign plays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d06_demo_serves_a_populated_live_board_equal_to_metrics() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let log = tempfile::NamedTempFile::new().expect("log");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_d06"))
        .args(["demo", "--minutes", "0.5", "--scale", "0.2", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.reopen().expect("log"))
        .stderr(log.reopen().expect("log"))
        .spawn()
        .expect("spawn d06 demo");
    let started = Instant::now();
    let http = reqwest::Client::new();
    let state = |http: reqwest::Client| async move {
        let r = http.get(format!("http://127.0.0.1:{port}/board/state")).send().await.ok()?;
        r.json::<Value>().await.ok()
    };
    loop {
        if let Some(s) = state(http.clone()).await {
            if s["districts"].as_array().is_some_and(|d| d.len() == 11) {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no populated board within a minute:\n{}",
            std::fs::read_to_string(log.path()).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("board populated {:?} after the demo started", started.elapsed());

    let url = format!("http://127.0.0.1:{port}/board");
    let mut chrome = tokio::task::block_in_place(Chromium::start);
    let first = tokio::task::block_in_place(|| {
        chrome.navigate(&url);
        chrome.wait_until(
            "11 district rows",
            "document.querySelectorAll('[data-testid=district-row]').length === 11",
            Duration::from_secs(30),
        );
        chrome.eval("window.__samePage = 'yes'");
        chrome.eval(READ_BOARD)
    });
    let day_first = first["today"].as_str().unwrap_or_default().to_owned();

    // The campaign plays to its last day (8/7/2024); the open page follows it.
    loop {
        let s = state(http.clone()).await.expect("board state");
        if s["today"] == "2024-07-08" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "the demo did not reach the campaign's end");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let the last flush settle, then the page and /metrics must agree exactly.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics_text =
        http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.expect("metrics").text().await.expect("text");
    let m = crate::harness::Metrics::parse(&metrics_text);
    let last = tokio::task::block_in_place(|| {
        chrome.wait_until(
            "the last day on the open page",
            "document.getElementById('today').textContent === '08/07/2024'",
            Duration::from_secs(30),
        );
        assert_eq!(chrome.eval("window.__samePage"), "yes", "the page was reloaded");
        chrome.eval(READ_BOARD)
    });
    assert_ne!(day_first, "08/07/2024", "the first look was taken mid-campaign");
    assert_eq!(last["districts"].as_array().map(Vec::len), Some(11));
    assert_board_matches_metrics(&last, &m);
    let covered = |dom: &Value| dom["province"]["cells"][1]["covered"]["value"].as_f64().unwrap_or(0.0);
    assert!(covered(&last) > covered(&first), "VNeID grew on the open page: {} → {}", covered(&first), covered(&last));
    // The demo simulates a pre-campaign baseline for the two indicators the
    // plan has none for (simulate::baseline: 40 % and 10 % of each
    // district's target, ± 15 %): the wall judges them as a real baseline
    // would be judged, no cell waits for data.
    for ind in ["smartphone_4g", "sim_signature"] {
        let labels = [("indicator", ind), ("area_level", "province"), ("area", "70")];
        assert_eq!(m.get("d06_coverage_baseline_known", &labels), Some(1.0), "{ind}");
        let target = m.get("d06_coverage_target", &labels).expect("target");
        let expected = m.get("d06_coverage_expected", &labels).expect("expected");
        let share = if ind == "smartphone_4g" { 0.40 } else { 0.10 };
        // Covered includes the baseline: at least 85 % of its share of the target.
        assert!(m.get("d06_coverage_covered", &labels).expect("covered") >= 0.85 * share * target, "{ind}");
        assert!(expected >= target, "{ind}: the plan reached its target on the last day");
    }
    let waiting: Vec<&Value> = last["districts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["cells"].as_array().unwrap())
        .filter(|c| c["status"] == "unknown")
        .collect();
    assert!(waiting.is_empty(), "{waiting:?}");
    tokio::task::block_in_place(|| {
        chrome.wait_until("animations to end", "document.getAnimations().length === 0", Duration::from_secs(10));
        std::fs::write(artifact("board-demo.png"), chrome.screenshot()).unwrap();
    });
    let _ = Command::new("kill").arg("-TERM").arg(demo.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = demo.try_wait().expect("wait") {
            assert!(status.success(), "d06 demo exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "d06 demo did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
