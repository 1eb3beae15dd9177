//! Issue 2: the contract through the real broker — dead letters with reasons,
//! valid events reaching the outputs, committed offsets, and no clear subject
//! anywhere the pipeline writes.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::events::{self, Place};
use crate::harness::{read_topic, spawn_app, AppOptions, Producer};

/// (topic selector, partition, payload, expected reason or None for valid)
type Case = (usize, i32, String, Option<&'static str>);

fn cases() -> Vec<Case> {
    let c = Place::Commune("25216");
    let mut v: Vec<Case> = vec![
        // valid, one per type, on campaign days
        (0, 0, events::cccd("ok-c1", "2024-04-11T09:00:00+07:00", c, "070203000001", "received"), None),
        (
            0,
            1,
            events::cccd("ok-c2", "2024-04-12T09:00:00+07:00", Place::Both("25195", "689"), "070203000002", "received"),
            None,
        ),
        (1, 0, events::vneid("ok-v1", "2024-04-11T10:00:00+07:00", c, "070203000001", "activated", 2), None),
        (
            2,
            0,
            events::swap("ok-s1", "2024-04-11T10:00:00+07:00", Place::District("690"), "+84912000001", "smartphone"),
            None,
        ),
        (2, 1, events::signature("ok-g1", "2024-04-11T11:00:00+07:00", c, "0912000002", "installed"), None),
        (3, 0, events::ticket("ok-t1", "2024-04-11T08:00:00+07:00", c, "T-0001", "received", "specialist"), None),
        // a duplicate of ok-c1: counted as a duplicate, not a dead letter
        (0, 1, events::cccd("ok-c1", "2024-04-11T09:00:00+07:00", c, "070203000001", "received"), None),
        // rejections, one per reason, spread over the topics
        (0, 0, "{\"schema\":".to_owned(), Some("malformed_json")),
        (
            1,
            1,
            format!("\u{feff}{}", events::vneid("bom", "2024-04-11T10:00:00+07:00", c, "070203000009", "activated", 2)),
            Some("malformed_json"),
        ),
        (
            2,
            0,
            format!("{} x", events::swap("trail", "2024-04-11T10:00:00+07:00", c, "0912000009", "smartphone")),
            Some("malformed_json"),
        ),
        (
            3,
            1,
            events::ticket("ok-t9", "2024-04-11T08:00:00+07:00", c, "T-0009", "received", "specialist")
                .replace("d06.event.v1", "d06.event.v2"),
            Some("unsupported_schema"),
        ),
        (
            0,
            1,
            events::cccd("typ", "2024-04-11T09:00:00+07:00", c, "070203000010", "received")
                .replace("cccd.application", "cccd.renewal"),
            Some("unknown_type"),
        ),
        (
            1,
            0,
            events::vneid("nolvl", "2024-04-11T10:00:00+07:00", c, "070203000011", "activated", 2)
                .replace(",\"level\":2", ""),
            Some("missing_field"),
        ),
        (0, 0, events::cccd("badid", "2024-04-11T09:00:00+07:00", c, "07020300001", "received"), Some("invalid_field")),
        (
            2,
            1,
            events::swap("landline", "2024-04-11T10:00:00+07:00", c, "0271000001", "smartphone"),
            Some("invalid_field"),
        ),
        (
            3,
            0,
            events::ticket("badstatus", "2024-04-11T08:00:00+07:00", c, "T-0010", "closed", "specialist"),
            Some("invalid_field"),
        ),
        (
            0,
            1,
            events::cccd("area", "2024-04-11T09:00:00+07:00", Place::Commune("99999"), "070203000012", "received"),
            Some("unknown_area"),
        ),
        (
            1,
            1,
            events::vneid(
                "mismatch",
                "2024-04-11T10:00:00+07:00",
                Place::Both("25216", "689"),
                "070203000013",
                "activated",
                2,
            ),
            Some("area_mismatch"),
        ),
        (
            2,
            0,
            events::swap("future", "2099-01-01T00:00:00+07:00", c, "0912000010", "smartphone"),
            Some("future_event"),
        ),
    ];
    // too_late: in partition 1 of the hotline topic, a newer event first, then one 46 days older.
    v.push((
        3,
        1,
        events::ticket("late-new", "2024-06-30T08:00:00+07:00", c, "T-0020", "received", "leadership"),
        None,
    ));
    v.push((
        3,
        1,
        events::ticket("late-old", "2024-05-14T08:00:00+07:00", c, "T-0021", "received", "leadership"),
        Some("too_late"),
    ));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_messages_reach_the_dead_letter_topic_and_valid_ones_the_outputs() {
    let app = spawn_app(AppOptions { partitions: 2, ..AppOptions::default() }).await;
    let producer = Producer::new();
    let topics = app.topics.sources();
    let cases = cases();
    let mut last_offset: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (t, p, payload, _) in &cases {
        let off = producer.send(topics[*t], *p, Some("some-key"), payload.as_bytes()).await;
        last_offset.insert((topics[*t].to_owned(), *p), off);
    }
    app.wait_consumed(cases.len() as u64, Duration::from_secs(60)).await;

    // Every invalid message is in the dead-letter topic, with its reason and its original bytes.
    let expected: Vec<(&String, &str)> = cases.iter().filter_map(|(_, _, m, r)| r.map(|r| (m, r))).collect();
    let dead = read_topic(&app.topics.dead_letter, 2, expected.len(), Duration::from_secs(30));
    assert_eq!(dead.len(), expected.len(), "dead letters read back");
    for (payload, reason) in &expected {
        let found: Vec<_> = dead.iter().filter(|d| d.payload == payload.as_bytes()).collect();
        assert_eq!(found.len(), 1, "exactly one dead letter for {payload}");
        let h = &found[0].headers;
        assert_eq!(h.get("d06.reason").map(String::as_str), Some(*reason), "reason for {payload}");
        assert!(h.get("d06.detail").is_some_and(|d| !d.is_empty()), "detail present");
        assert!(topics.contains(&h["d06.source.topic"].as_str()));
        let (t, p, _, _) = cases.iter().find(|(_, _, m, _)| m == *payload).expect("case");
        assert_eq!(h["d06.source.topic"], topics[*t]);
        assert_eq!(h["d06.source.partition"], p.to_string());
        assert!(h["d06.source.offset"].parse::<i64>().is_ok());
    }
    // Nothing extra: no duplicate or valid message was dead-lettered.
    let extra = read_topic(&app.topics.dead_letter, 2, expected.len() + 1, Duration::from_secs(3));
    assert_eq!(extra.len(), expected.len(), "no extra dead letters");

    // Counters: rejections per reason, the duplicate.
    let m = app.metrics().await;
    assert_eq!(m.get("d06_messages_rejected_total", &[("reason", "malformed_json")]), Some(3.0));
    assert_eq!(m.get("d06_messages_rejected_total", &[("reason", "invalid_field")]), Some(3.0));
    assert_eq!(m.get("d06_messages_rejected_total", &[("reason", "too_late")]), Some(1.0));
    assert_eq!(m.get("d06_duplicates_ignored_total", &[]), Some(1.0));

    // The valid ones reached the outputs.
    app.wait_for("coverage in ClickHouse", Duration::from_secs(30), || async {
        app.clickhouse(
            "SELECT gained FROM coverage_daily WHERE day = '2024-04-11' AND indicator = 'cccd' AND area_level = 'province'",
        )
        .await
        .trim()
            == "1"
    })
    .await;
    let rows = app
        .clickhouse(
            "SELECT indicator, area_level, area, sum(gained) FROM coverage_daily \
             WHERE area_level != 'commune' GROUP BY indicator, area_level, area HAVING sum(gained) > 0 ORDER BY indicator, area_level, area",
        )
        .await;
    assert_eq!(
        rows,
        "cccd\tdistrict\t688\t1\ncccd\tdistrict\t689\t1\ncccd\tprovince\t70\t2\n\
         migrated_2g\tdistrict\t690\t1\nmigrated_2g\tprovince\t70\t1\n\
         sim_signature\tdistrict\t688\t1\nsim_signature\tprovince\t70\t1\n\
         smartphone_4g\tdistrict\t690\t1\nsmartphone_4g\tprovince\t70\t1\n\
         vneid\tdistrict\t688\t1\nvneid\tprovince\t70\t1\n"
    );
    app.wait_for("dead letters in ClickHouse", Duration::from_secs(30), || async {
        app.clickhouse("SELECT count() FROM dead_letters FINAL").await.trim() == expected.len().to_string()
    })
    .await;
    let hot = app.clickhouse("SELECT sum(received) FROM hotline_daily WHERE area_level = 'province'").await;
    assert_eq!(hot.trim(), "2", "two received tickets (T-0001, T-0020)");

    // Committed offsets cover exactly what was handled.
    app.wait_for("offsets committed", Duration::from_secs(30), || async {
        let committed = app.committed_offsets();
        last_offset.iter().all(|(k, off)| committed.get(k) == Some(&(off + 1)))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_clear_subject_leaves_ingest() {
    let mut app = spawn_app(AppOptions { partitions: 1, rust_log: "debug", ..AppOptions::default() }).await;
    let producer = Producer::new();
    let t = app.topics.sources();
    let c = Place::Commune("25327");
    let citizen = "079123456789";
    let phone_local = "0987654321";
    let ticket = "HL-2024-SECRET-778899";
    let msgs = vec![
        (t[0], events::cccd("p1", "2024-05-02T09:00:00+07:00", c, citizen, "received")),
        (t[1], events::vneid("p2", "2024-05-02T09:30:00+07:00", c, citizen, "activated", 2)),
        (t[2], events::swap("p3", "2024-05-02T10:00:00+07:00", c, "+84987654321", "smartphone")),
        (t[2], events::signature("p4", "2024-05-02T10:30:00+07:00", c, "84987654321", "installed")),
        (t[2], events::signature("p5", "2024-05-03T10:30:00+07:00", c, phone_local, "revoked")),
        (t[3], events::ticket("p6", "2024-05-02T08:00:00+07:00", c, ticket, "received", "specialist")),
        // rejected with a subject inside: the subject must not reach the headers or the detail
        (t[0], events::cccd("p7", "2099-05-02T09:00:00+07:00", c, citizen, "received")),
        (t[2], events::swap("p8", "2024-05-02T10:00:00+07:00", Place::Commune("00000"), phone_local, "smartphone")),
        (t[0], events::cccd("p9", "2024-05-02T09:00:00+07:00", c, "07912345678X", "received")),
    ];
    for (topic, m) in &msgs {
        producer.send(topic, 0, Some(citizen), m.as_bytes()).await;
    }
    app.wait_consumed(msgs.len() as u64, Duration::from_secs(60)).await;
    app.wait_for("outputs written", Duration::from_secs(30), || async {
        app.clickhouse("SELECT count() FROM dead_letters FINAL").await.trim() == "3"
    })
    .await;
    let metrics = app.metrics_text().await;
    let status = app.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status}\n{}", app.log_tail(20));

    let mut haystacks: Vec<(String, Vec<u8>)> = Vec::new();
    haystacks.push(("log".into(), app.log().into_bytes()));
    haystacks.push(("metrics".into(), metrics.into_bytes()));
    let tables = app.clickhouse("SELECT name FROM system.tables WHERE database = currentDatabase()").await;
    for table in tables.lines() {
        let dump = app.clickhouse(&format!("SELECT * FROM {table} FORMAT TabSeparated")).await;
        haystacks.push((format!("clickhouse {table}"), dump.into_bytes()));
    }
    let dead = read_topic(&app.topics.dead_letter, 1, 3, Duration::from_secs(20));
    assert_eq!(dead.len(), 3);
    for d in &dead {
        haystacks.push(("dead-letter headers".into(), d.raw_headers.clone()));
    }
    for entry in walk(&app.state_dir()) {
        haystacks.push((format!("state {}", entry.display()), std::fs::read(&entry).unwrap_or_default()));
    }
    assert!(haystacks.iter().any(|(n, h)| n == "log" && h.len() > 1000), "debug log captured");
    let needles = [citizen, phone_local, "987654321", ticket, "07912345678X"];
    for (name, hay) in &haystacks {
        for needle in needles {
            assert!(
                !hay.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "clear subject {needle:?} found in {name}"
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
