//! Issue 5: time passing changes state. With the wall clock, a ticket turns
//! overdue on `/metrics` and in ClickHouse when its deadline passes, with no
//! new event arriving.

use std::time::Duration;

use crate::events::{self, Place};
use crate::harness::{spawn_app, AppOptions, Producer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_turns_overdue_when_its_deadline_passes_without_any_event() {
    // A calendar where every day is worked round the clock, so that the
    // deadline falls a few seconds from now whatever the hour of the test run.
    let calendar = tempfile::NamedTempFile::new().expect("calendar file");
    std::fs::write(
        calendar.path(),
        "working_weekdays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
         shifts = [{ start = \"00:00\", end = \"23:59\" }]\n",
    )
    .expect("write calendar");
    let extra = format!("[hotline]\ncalendar_files = [\"{}\"]\n", calendar.path().display());
    let app = spawn_app(AppOptions { partitions: 1, clock: "wall", extra_toml: extra, ..AppOptions::default() }).await;

    // Received 8 working hours minus 20 seconds ago: the specialist deadline is 20 s away
    // (a minute later if the span crosses 23:59–00:00, the calendar's only gap).
    let tz = chrono::FixedOffset::east_opt(7 * 3600).expect("tz");
    let received = chrono::Utc::now().with_timezone(&tz) - chrono::Duration::hours(8) + chrono::Duration::seconds(20);
    let at = received.format("%Y-%m-%dT%H:%M:%S%:z").to_string();
    let msg = events::ticket("tk-1", &at, Place::Commune("25216"), "HL-OVERDUE-1", "received", "specialist");
    Producer::new().send(&app.topics.hotline, 0, None, msg.as_bytes()).await;

    let gauge = |status: &'static str| {
        let app = &app;
        async move {
            app.metrics()
                .await
                .get("d06_hotline_tickets", &[("status", status), ("area_level", "district"), ("area", "688")])
        }
    };
    app.wait_for("the ticket in progress", Duration::from_secs(30), || async {
        gauge("in_progress").await == Some(1.0)
    })
    .await;
    assert_eq!(gauge("overdue_specialist").await.unwrap_or(0.0), 0.0);

    // No event arrives from here on; only time passes.
    app.wait_for("the ticket overdue", Duration::from_secs(120), || async {
        gauge("overdue_specialist").await == Some(1.0)
    })
    .await;
    assert_eq!(gauge("in_progress").await, Some(0.0));
    assert_eq!(gauge("received").await, Some(1.0));
    app.wait_for("hotline_daily overdue", Duration::from_secs(30), || async {
        app.clickhouse(
            "SELECT sum(overdue_specialist), sum(in_progress) FROM hotline_daily WHERE area_level = 'province'",
        )
        .await
        .trim()
            == "1\t0"
    })
    .await;
    assert_eq!(app.metrics().await.sum("d06_messages_consumed_total"), 1.0, "no other event arrived");
}

/// Issue 5, "a generated stream that reproduces the 2023 report exactly",
/// through the whole product: `d06 simulate --scenario` writes the ticket
/// stream as EVENTS-v1 JSON to the real broker (out of order, with producer
/// retries), d06 validates, pseudonymises and classifies it with the event
/// clock, writes `hotline_daily` to ClickHouse, and `d06 report hotline`
/// prints the province's figures. Then the same for the 2024 report.
///
/// Issue 15: the expected figures come from an independent oracle
/// (`hotline_oracle.rs`), which reads the same messages as raw JSON
/// (`d06 simulate --stdout`) and classifies them from the contract's rules,
/// without the production `Tickets` or calendar arithmetic. It must agree
/// with the province's report, and d06 with it, district by district.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_province_reports_are_reproduced_through_kafka_clickhouse_and_d06_report() {
    use crate::hotline_oracle::Oracle;

    // (scenario, seed, [(from, to, the report's figures: received, processed,
    // in progress, spam, overdue specialist, overdue leadership, answered, forwarded)]).
    let cases = [
        (
            "hotline-2023",
            23,
            vec![
                // The report: 1,493 = 1,434 + 5 + 47 + 1 + 6 (the answered/forwarded split is the scenario's).
                ("2023-01-01", "2023-07-19", [1493, 1434, 5, 47, 1, 6, 1293, 151]),
                // Its last month: 300 = 290 + 4 + 5 + 1 + 0.
                ("2023-06-19", "2023-07-19", [300, 290, 4, 5, 1, 0, 263, 30]),
            ],
        ),
        ("hotline-2024", 24, vec![("2024-04-22", "2024-05-22", [299, 293, 6, 0, 0, 0, 268, 31])]),
    ];
    for (name, seed, periods) in cases {
        let app = spawn_app(AppOptions { partitions: 2, ..AppOptions::default() }).await;
        let simulate = |extra: &[&str]| simulate_scenario(&app, name, seed, extra);
        // The very messages sent to Kafka below (the stream is deterministic in
        // the seed), as raw JSON, for the oracle.
        let lines = simulate(&["--stdout"]);
        let mut oracle = Oracle::shipped();
        for line in lines.lines() {
            let (kind, json) = line.split_once('\t').expect("kind, tab, payload");
            assert_eq!(kind, "hotline");
            oracle.read(json);
        }
        // The event clock: T is the newest occurred_at applied.
        let t = oracle.newest().expect("some event");
        simulate(&[]);
        // Every message, producer retries and the clock message included.
        app.wait_consumed(oracle.messages as u64, Duration::from_secs(120)).await;

        let numbers = |text: &str| -> Vec<u64> {
            let row = text.lines().last().unwrap_or_default();
            row.split('\t').skip(1).map(|n| n.replace('.', "").parse::<u64>().unwrap_or(u64::MAX)).collect()
        };
        let day = |s: &str| s.parse::<chrono::NaiveDate>().expect("date");
        for (from, to, want) in &periods {
            // The oracle reproduces the province's report from the raw stream...
            assert_eq!(oracle.total(None, day(from), day(to), t).row(), *want, "{name} {from}..{to}: the oracle");
            // ...and so does d06, through Kafka and ClickHouse.
            let args = ["hotline", "--from", from, "--to", to];
            app.wait_for(&format!("{name} {from}..{to} in ClickHouse"), Duration::from_secs(60), || async {
                crate::reports::report(&app, &args).map(|t| numbers(&t)).ok().as_deref() == Some(&want[..])
            })
            .await;
        }

        // Each district's row equals the oracle's, and they add up to the province's.
        let (from, to, want) = &periods[0];
        let mut sum = [0u64; 8];
        let mut nonzero = 0;
        for code in oracle.districts() {
            let expected = oracle.total(Some(&code), day(from), day(to), t).row();
            let got = numbers(
                &crate::reports::report(&app, &["hotline", "--from", from, "--to", to, "--area", &code])
                    .expect("report"),
            );
            assert_eq!(got, expected, "{name}: district {code} (d06, then the oracle)");
            nonzero += usize::from(expected[0] > 0);
            for (s, g) in sum.iter_mut().zip(&got) {
                *s += g;
            }
        }
        assert!(nonzero >= 10, "{name}: tickets in most districts ({nonzero})");
        assert_eq!(&sum[..], &want[..], "{name}: the districts add up to the province");
        // Producer retries were seen as duplicates, and nothing was rejected.
        let m = app.metrics().await;
        assert!(oracle.duplicates > 0, "{name}: the stream holds producer retries");
        assert_eq!(m.sum("d06_duplicates_ignored_total") as usize, oracle.duplicates, "{name}");
        assert_eq!(m.sum("d06_messages_rejected_total"), 0.0, "{name}");
        drop(app);
    }
}

/// `d06 simulate --scenario NAME --seed SEED --config <app's> EXTRA…`, which
/// must succeed: its standard output (with `--stdout`, the stream as
/// `kind<TAB>json` lines, deterministic in the seed).
pub(crate) fn simulate_scenario(app: &crate::harness::App, name: &str, seed: u64, extra: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_d06"))
        .args(["simulate", "--scenario", name, "--seed", &seed.to_string(), "--config"])
        .arg(&app.config_path)
        .args(extra)
        .output()
        .expect("run d06 simulate");
    assert!(out.status.success(), "d06 simulate: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}
