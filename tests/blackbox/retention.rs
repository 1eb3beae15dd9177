//! `d06 run` warns at start about every topic it rebuilds from that does
//! not keep its whole history (docs/OPERATIONS.md).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use crate::harness::{kafka_addr, spawn_app, unique, AppOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_topic_with_a_week_of_retention_is_warned_about_and_the_facts_topic_is_not() {
    let mut app = spawn_app(AppOptions { partitions: 1, shards: 1, ..AppOptions::default() }).await;
    app.wait_for("the facts topic", Duration::from_secs(30), || async { app.log().contains("facts topic ready") })
        .await;
    app.stop();
    assert!(
        !app.log().contains("does not keep its whole history")
            && !app.log().contains("could not read the topics' retention"),
        "topics created without limits: {}",
        app.log_tail(20)
    );
    // The CCCD topic is replaced by one created with a week of retention.
    let weekly = unique("weekly");
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", kafka_addr()).create().expect("admin client");
    let topic = NewTopic::new(&weekly, 1, TopicReplication::Fixed(1)).set("retention.ms", "604800000");
    let created = admin.create_topics([&topic], &AdminOptions::new()).await.expect("create topic");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let old = format!("cccd = \"{}\"", app.topics.cccd);
    app.edit_config(|c| c.replace(&old, &format!("cccd = \"{weekly}\"")));
    app.topics.cccd = weekly;
    app.start().await;
    app.wait_for("the retention warning", Duration::from_secs(30), || async {
        app.log().contains("does not keep its whole history")
    })
    .await;
    let log = app.log();
    assert!(
        log.contains(&format!(
            "the source topic {} does not keep its whole history (retention.ms = 604800000 (7.0 days))",
            app.topics.cccd
        )),
        "{}",
        app.log_tail(20)
    );
    assert_eq!(
        log.matches("does not keep its whole history").count(),
        1,
        "only the altered topic: {}",
        app.log_tail(20)
    );
    assert!(!log.contains("could not read the topics' retention"), "{}", app.log_tail(20));
    app.stop();
}
