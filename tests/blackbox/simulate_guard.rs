//! `d06 simulate` never writes synthetic people into a topic that holds real
//! records: it marks what it writes (header `d06-simulated`), writes into
//! empty topics or its own, and refuses anything else with exit 78 before
//! producing a single record.

use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::{create_topics, kafka_addr, read_committed, unique, Producer};

const KEY: &str = "an-example-key-of-32-bytes-long!";

fn simulate(config: &std::path::Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_d06"))
        .args(["simulate", "--config"])
        .arg(config)
        .args(["--limit", "300"])
        .args(extra)
        .env("D06_HMAC_KEY", KEY)
        .output()
        .expect("spawn d06 simulate")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every record of the four topics: (total, how many carry the simulator's header).
fn records(topics: &[String]) -> (usize, usize) {
    let mut all = (0, 0);
    for t in topics {
        for (_, r) in read_committed(t, 1, Duration::from_secs(1)) {
            all.0 += 1;
            all.1 += usize::from(r.headers.get("d06-simulated").is_some_and(|v| v == "1"));
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_writes_only_into_empty_or_simulated_topics_and_refuses_real_ones_with_78() {
    let id = unique("guard");
    let topics: Vec<String> = ["cccd", "vneid", "sim", "hotline"].iter().map(|k| format!("{id}.{k}")).collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    create_topics(&names, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("d06.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\n[kafka.topics]\ncccd = \"{}\"\nvneid = \"{}\"\nsim = \"{}\"\nhotline = \"{}\"\n",
            kafka_addr(),
            topics[0],
            topics[1],
            topics[2],
            topics[3]
        ),
    )
    .unwrap();

    // Empty topics: written, every record marked.
    let o = simulate(&config, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(records(&topics), (300, 300));
    // Its own records: written again.
    let o = simulate(&config, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(records(&topics), (600, 600));

    // A real record arrives in the SIM topic: refused, nothing written anywhere.
    Producer::new().send(&topics[2], 0, None, b"{\"a real\":\"record\"}").await;
    let o = simulate(&config, &[]);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("topic {} partition 0 holds records not written by `d06 simulate`", topics[2]))
            && err.contains("--into-foreign-topics"),
        "{err}"
    );
    assert_eq!(records(&topics), (601, 600), "nothing written after the refusal");

    // The operator says these are test topics after all.
    let o = simulate(&config, &["--into-foreign-topics"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(records(&topics), (901, 900));
}
