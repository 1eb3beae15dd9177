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
