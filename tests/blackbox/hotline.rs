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
            app.metrics().await.get("d06_hotline_tickets", &[("status", status), ("area_level", "district"), ("area", "688")])
        }
    };
    app.wait_for("the ticket in progress", Duration::from_secs(30), || async { gauge("in_progress").await == Some(1.0) })
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
        app.clickhouse("SELECT sum(overdue_specialist), sum(in_progress) FROM hotline_daily WHERE area_level = 'province'")
            .await
            .trim()
            == "1\t0"
    })
    .await;
    assert_eq!(app.metrics().await.sum("d06_messages_consumed_total"), 1.0, "no other event arrived");
}
