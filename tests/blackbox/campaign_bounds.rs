//! Issue 15: events before the campaign start, on its first and last day and
//! after its end. `coverage_daily` counts pre-campaign coverage in `covered`
//! from the first day (OUTPUTS-v1: baseline + all gained − all lost up to
//! the end of the day), ends on the plan's last day, and every key on every
//! day equals a recount made here from the events; `/metrics` shows exactly
//! the last day's `covered` for every key.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::events::{self, Place, COMMUNES};
use crate::harness::{spawn_app, AppOptions, Producer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_start_boundaries_and_after_the_end_agree_everywhere() {
    let app = spawn_app(AppOptions { partitions: 1, shards: 2, ..AppOptions::default() }).await;
    // (local day, how many applications, commune index)
    let batches = [
        ("2024-04-05", 50, 0), // five days before the start (10/4)
        ("2024-04-10", 5, 1),  // the first day
        ("2024-05-20", 7, 0),
        ("2024-07-08", 3, 1), // the last day
        ("2024-07-10", 2, 0), // after the end
    ];
    let producer = Producer::new();
    let mut n = 0u64;
    let mut sent = Vec::new();
    for (day, count, c) in batches {
        let (commune, district) = COMMUNES[c];
        for _ in 0..count {
            let json = events::cccd(
                &format!("b{n}"),
                &format!("{day}T09:00:00+07:00"),
                Place::Commune(commune),
                &events::citizen(900_000 + n),
                "received",
            );
            producer.send(&app.topics.cccd, 0, None, json.as_bytes()).await;
            sent.push((day, commune, district));
            n += 1;
        }
    }
    app.wait_consumed(n, Duration::from_secs(60)).await;

    // The recount: per (level, area), events per day (after the end: not a campaign day).
    let mut per_day: BTreeMap<(String, String), BTreeMap<String, i64>> = BTreeMap::new();
    for (day, commune, district) in &sent {
        for key in [("province", "70"), ("district", *district), ("commune", *commune)] {
            *per_day.entry((key.0.into(), key.1.into())).or_default().entry(day.to_string()).or_default() += 1;
        }
    }
    let rows = || async {
        app.clickhouse(
            "SELECT area_level, area, toString(day), gained, covered, toInt64(covered) - toInt64(any_b) FROM \
             (SELECT area_level, area, day, gained, covered FROM coverage_daily WHERE indicator = 'cccd') \
             ANY LEFT JOIN (SELECT area_level, area, any(baseline) AS any_b FROM plan_daily FINAL \
             WHERE indicator = 'cccd' GROUP BY area_level, area) USING (area_level, area) \
             ORDER BY area_level, area, day",
        )
        .await
    };
    app.wait_for("the last day written", Duration::from_secs(60), || async {
        rows().await.contains("2024-07-08\t3\t")
    })
    .await;
    let text = rows().await;
    let mut last: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut checked = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let key = (f[0].to_owned(), f[1].to_owned());
        let day = f[2];
        assert!(("2024-04-10"..="2024-07-08").contains(&day), "coverage_daily holds plan days only: {line}");
        let days = per_day.get(&key).cloned().unwrap_or_default();
        let gained: i64 = days.get(day).copied().unwrap_or(0);
        let above: i64 = days.iter().filter(|(d, _)| d.as_str() <= day).map(|(_, c)| c).sum();
        assert_eq!(f[3].parse::<i64>().expect("gained"), gained, "gained {line}");
        assert_eq!(f[5].parse::<i64>().expect("covered"), above, "covered − baseline {line}");
        last.insert(key, f[4].parse().expect("covered"));
        checked += 1;
    }
    assert!(checked >= 90 * 3, "every plan day of the keys with events: {checked}");
    let first_day = text.lines().find(|l| l.starts_with("province\t70\t2024-04-10")).expect("first day row");
    assert!(first_day.contains("\t5\t"), "the first day gained only its own 5: {first_day}");

    // /metrics: the last day's covered, for every key.
    app.wait_for("gauges equal the last day", Duration::from_secs(30), || async {
        let m = app.metrics().await;
        last.iter().all(|((level, area), covered)| {
            m.get("d06_coverage_covered", &[("indicator", "cccd"), ("area_level", level), ("area", area)])
                == Some(*covered as f64)
        })
    })
    .await;
    assert!(last.len() > 100, "every area of every level: {}", last.len());
}

/// A subject's first event before the start, displaced by a later-arriving
/// event still earlier (also before the start, in another commune): the
/// row written for the first one must go, or the subject counts twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_event_before_the_start_displaced_by_an_earlier_one_counts_once() {
    let app = spawn_app(AppOptions { partitions: 1, shards: 1, ..AppOptions::default() }).await;
    let producer = Producer::new();
    let (a, b, c) = (COMMUNES[0].0, COMMUNES[1].0, COMMUNES[2].0);
    let subject = events::citizen(990_001);
    let send = |id: &'static str, at: &'static str, commune: &'static str, who: String| {
        let json = events::cccd(id, at, Place::Commune(commune), &who, "received");
        let producer = &producer;
        let topic = app.topics.cccd.clone();
        async move { producer.send(&topic, 0, None, json.as_bytes()).await }
    };
    let covered = |commune: &'static str| {
        let app = &app;
        async move {
            let sql = format!(
                "SELECT toString(covered) FROM coverage_daily WHERE indicator = 'cccd' AND area_level = 'commune' \
                 AND area = '{commune}' AND day = '2024-04-12'"
            );
            app.clickhouse(&sql).await.trim().to_owned()
        }
    };
    // Five days before the start in commune a; another subject on 12/4 moves the clock past the start.
    send("d1", "2024-04-05T09:00:00+07:00", a, subject.clone()).await;
    send("d2", "2024-04-12T09:00:00+07:00", c, events::citizen(990_002)).await;
    app.wait_for("the first event's rows", Duration::from_secs(60), || async { covered(a).await == "1" }).await;
    // Then the same subject's earlier application, in commune b: it is the first now.
    send("d0", "2024-04-01T09:00:00+07:00", b, subject).await;
    app.wait_for("the earlier event's rows", Duration::from_secs(60), || async { covered(b).await == "1" }).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(covered(a).await, "0", "commune a still counts the displaced event");
    let province = app
        .clickhouse(
            "SELECT toString(covered) FROM coverage_daily WHERE indicator = 'cccd' AND area_level = 'province' \
             AND day = '2024-04-12'",
        )
        .await;
    assert_eq!(province.trim(), "2", "two subjects");
}
