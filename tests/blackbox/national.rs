//! Issue 13: `d06 simulate --scope national` through the real broker into a
//! deployment that tracks one province (Bình Phước, the default). Expected
//! figures come from the raw stream itself (`--stdout`, the same messages by
//! the seed) and the Bình Phước data file, not from production types.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use crate::harness::{spawn_app, AppOptions};

const LIMIT: u64 = 20_000;

/// Bình Phước's commune and district codes, read from the data file.
fn binh_phuoc_codes() -> HashSet<String> {
    let csv = include_str!("../../aggregator/data/binh_phuoc_pre2025_3tier.csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (district, commune) = (at("district_code"), at("commune_code"));
    lines
        .filter(|l| !l.is_empty())
        .flat_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            [f[district].to_owned(), f[commune].to_owned()]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_national_stream_counts_its_own_province_and_dead_letters_the_others() {
    let app = spawn_app(AppOptions { partitions: 2, shards: 2, ..AppOptions::default() }).await;
    let simulate = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_d06"))
            .args(["simulate", "--scope", "national", "--scale", "0.01", "--limit", &LIMIT.to_string(), "--config"])
            .arg(&app.config_path)
            .args(extra)
            .output()
            .expect("run d06 simulate");
        assert!(out.status.success(), "d06 simulate: {}", String::from_utf8_lossy(&out.stderr));
        // Some invalid messages are not UTF-8, on purpose.
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The raw stream: which provinces, and which messages name Bình Phước.
    let lines = simulate(&["--stdout"]);
    assert_eq!(lines.lines().count() as u64, LIMIT);
    let ours = binh_phuoc_codes();
    let (mut provinces, mut in_province, mut elsewhere) = (BTreeSet::new(), 0u64, 0u64);
    for line in lines.lines() {
        let (_, json) = line.split_once('\t').expect("kind, tab, payload");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else { continue };
        if let Some(p) = v["event_id"].as_str().and_then(|id| id.strip_prefix('p')).and_then(|id| id.get(..2)) {
            provinces.insert(p.to_owned());
        }
        let names_ours =
            ["commune_code", "district_code"].iter().filter_map(|k| v[*k].as_str()).any(|code| ours.contains(code));
        let names_any = ["commune_code", "district_code"].iter().any(|k| v[*k].is_string());
        if names_ours {
            in_province += 1;
        } else if names_any {
            elsewhere += 1;
        }
    }
    assert!(provinces.len() >= 60, "{provinces:?}");
    assert!(in_province > 0 && elsewhere > 10 * in_province, "{in_province} ours, {elsewhere} elsewhere");

    simulate(&[]);
    app.wait_consumed(LIMIT, Duration::from_secs(120)).await;
    app.wait_for("every message applied or dead-lettered", Duration::from_secs(120), || async {
        let m = app.metrics().await;
        (m.sum("d06_facts_applied_total") + m.sum("d06_messages_rejected_total")) as u64 >= LIMIT
    })
    .await;
    let m = app.metrics().await;
    let applied = m.sum("d06_facts_applied_total") as u64;
    let rejected = m.sum("d06_messages_rejected_total") as u64;
    let unknown = m.get("d06_messages_rejected_total", &[("reason", "unknown_area")]).unwrap_or(0.0) as u64;
    assert_eq!(applied + rejected, LIMIT, "every message is a fact or a dead letter");
    // Bình Phước's messages are facts but for its few invalid ones (≈ 0.5 %);
    // the others name areas this deployment does not know.
    assert!(applied <= in_province && applied * 100 >= in_province * 97, "{applied} of {in_province}");
    assert!(unknown <= elsewhere && unknown * 100 >= elsewhere * 97, "{unknown} of {elsewhere}");
    app.wait_for("the dead letters in ClickHouse", Duration::from_secs(60), || async {
        app.clickhouse("SELECT count() FROM dead_letters FINAL").await.trim().parse::<u64>().ok() == Some(rejected)
    })
    .await;
}
