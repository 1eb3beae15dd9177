//! `spawn_app()`: the real `d06` binary against the real broker and ClickHouse,
//! with fresh topics, consumer group, database and state directory per test.
//!
//! Services come from `deploy/local/start.sh` (the test command starts them);
//! their addresses can be overridden with `D06_TEST_KAFKA` and
//! `D06_TEST_CLICKHOUSE`. A missing service fails the test with a clear message.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

pub const HMAC_KEY: &str = "blackbox-test-key-0123456789abcdef";

pub fn kafka_addr() -> String {
    std::env::var("D06_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn clickhouse_url() -> String {
    std::env::var("D06_TEST_CLICKHOUSE").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// A broker and the librdkafka properties its clients need (TLS, SASL):
/// the shared plaintext broker by default, `tls::TlsStack::kafka` for the
/// TLS one. d06 and every client of the test use the same settings.
#[derive(Clone, Debug)]
pub struct KafkaTarget {
    pub brokers: String,
    pub properties: Vec<(String, String)>,
    /// Properties whose values are secrets (`sasl.password`): read from
    /// their files by the test's clients, given to d06 as
    /// `[kafka.properties_from_file]`, so never in its configuration.
    pub secret_files: Vec<(String, PathBuf)>,
}

impl Default for KafkaTarget {
    fn default() -> Self {
        KafkaTarget { brokers: kafka_addr(), properties: Vec::new(), secret_files: Vec::new() }
    }
}

impl KafkaTarget {
    /// `bootstrap.servers` and the properties.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        for (k, path) in &self.secret_files {
            let value = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            c.set(k, value.trim());
        }
        c
    }

    /// The properties as lines of d06's `[kafka.properties]`, then the
    /// secrets' `[kafka.properties_from_file]` table.
    fn toml_lines(&self) -> String {
        let mut lines: String = self.properties.iter().map(|(k, v)| format!("{k:?} = {v:?}\n")).collect();
        if !self.secret_files.is_empty() {
            lines.push_str("[kafka.properties_from_file]\n");
            for (k, path) in &self.secret_files {
                lines.push_str(&format!("{k:?} = {:?}\n", path.display().to_string()));
            }
        }
        lines
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}_{}", std::process::id(), rand::random::<u32>())
}

/// Options for one app.
#[derive(Clone, Debug)]
pub struct AppOptions {
    pub partitions: i32,
    pub shards: u32,
    pub clock: &'static str,
    pub flush_interval_ms: u64,
    pub rust_log: &'static str,
    pub extra_toml: String,
    /// ClickHouse for this app (the shared one by default).
    pub clickhouse_url: Option<String>,
    /// More lines of the `[clickhouse]` section (e.g. `cluster`, `urls`,
    /// user, password source, CA file).
    pub clickhouse_toml: String,
    /// The broker for this app and the test's clients (the shared one by default).
    pub kafka: KafkaTarget,
    /// The state directory (`state` in the app's temporary directory by default).
    pub state_dir: Option<PathBuf>,
    /// `[http] commune_metrics` (on by default here, off in d06's own default).
    pub commune_metrics: bool,
    /// `[kafka] fault`, a test-only fault point (none by default).
    pub kafka_fault: Option<&'static str>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            partitions: 3,
            shards: 3,
            clock: "event",
            flush_interval_ms: 200,
            rust_log: "info",
            extra_toml: String::new(),
            clickhouse_url: None,
            clickhouse_toml: String::new(),
            kafka: KafkaTarget::default(),
            state_dir: None,
            commune_metrics: true,
            kafka_fault: None,
        }
    }
}

/// Topic names of one test.
#[derive(Clone, Debug)]
pub struct TestTopics {
    pub cccd: String,
    pub vneid: String,
    pub sim: String,
    pub hotline: String,
    pub dead_letter: String,
    /// d06's internal facts topic (d06 creates it).
    pub facts: String,
}

impl TestTopics {
    pub fn sources(&self) -> [&str; 4] {
        [&self.cccd, &self.vneid, &self.sim, &self.hotline]
    }
}

/// A running (or stopped) d06 under test.
pub struct App {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub topics: TestTopics,
    pub group: String,
    pub database: String,
    pub metrics_port: u16,
    pub options: AppOptions,
    child: Option<Child>,
    http: reqwest::Client,
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free port")
}

pub async fn create_topics(names: &[&str], partitions: i32) {
    create_topics_on(&KafkaTarget::default(), names, partitions).await;
}

pub async fn create_topics_on(kafka: &KafkaTarget, names: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().expect("admin client");
    let topics: Vec<NewTopic<'_>> =
        names.iter().map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1))).collect();
    let results = admin
        .create_topics(&topics, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot create topics on {} (is the broker running? `bash deploy/local/start.sh`): {e}",
                kafka.brokers
            )
        });
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

/// Starts d06 with fresh topics, group, database and state.
pub async fn spawn_app(options: AppOptions) -> App {
    let id = unique("t");
    let topics = TestTopics {
        cccd: format!("{id}.cccd"),
        vneid: format!("{id}.vneid"),
        sim: format!("{id}.sim"),
        hotline: format!("{id}.hotline"),
        dead_letter: format!("{id}.dead"),
        facts: format!("{id}.facts"),
    };
    let mut all: Vec<&str> = topics.sources().to_vec();
    all.push(&topics.dead_letter);
    create_topics_on(&options.kafka, &all, options.partitions).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics_port = free_port();
    let database = format!("d06_{id}");
    let group = format!("{id}.group");
    let config = format!(
        r#"
[kafka]
brokers = "{kafka}"
group_id = "{group}"
instance_id = "i0"
{fault}linger_ms = 20
lag_interval_ms = 1000
[kafka.topics]
cccd = "{cccd}"
vneid = "{vneid}"
sim = "{sim}"
hotline = "{hotline}"
dead_letter = "{dead}"
facts = "{facts}"
[kafka.properties]
"session.timeout.ms" = "3000"
"heartbeat.interval.ms" = "300"
{kafka_properties}[clickhouse]
url = "{ch}"
database = "{database}"
{ch_extra}
[http]
listen = "127.0.0.1:{metrics_port}"
commune_metrics = {commune_metrics}
[pipeline]
state_dir = "{state}"
shards = {shards}
flush_interval_ms = {flush}
clock = "{clock}"
{extra}
"#,
        fault = options.kafka_fault.map(|f| format!("fault = \"{f}\"\n")).unwrap_or_default(),
        commune_metrics = options.commune_metrics,
        kafka = options.kafka.brokers,
        kafka_properties = options.kafka.toml_lines(),
        cccd = topics.cccd,
        vneid = topics.vneid,
        sim = topics.sim,
        hotline = topics.hotline,
        dead = topics.dead_letter,
        facts = topics.facts,
        ch = options.clickhouse_url.clone().unwrap_or_else(clickhouse_url),
        ch_extra = options.clickhouse_toml.clone(),
        state = options.state_dir.clone().unwrap_or_else(|| dir.path().join("state")).display(),
        shards = options.shards,
        flush = options.flush_interval_ms,
        clock = options.clock,
        extra = options.extra_toml,
    );
    let config_path = dir.path().join("d06.toml");
    std::fs::write(&config_path, config).expect("write config");
    let log_path = dir.path().join("d06.log");
    let mut app = App {
        config_path,
        log_path,
        topics,
        group,
        database,
        metrics_port,
        options,
        child: None,
        http: app_http(),
        dir,
    };
    app.start().await;
    app
}

/// The client the harness talks to an app (and its ClickHouse) with: every
/// request bounded, so a request no one answers fails the test instead of
/// hanging it (a CI run once hung 26 min in the crash test's kill loop).
fn app_http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client")
}

impl App {
    /// `d06 run --config …` with the test key, its output appended to the log.
    fn spawn(&self) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("log file");
        Command::new(env!("CARGO_BIN_EXE_d06"))
            .arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .env("D06_HMAC_KEY", HMAC_KEY)
            .env("RUST_LOG", std::env::var("D06_TEST_RUST_LOG").unwrap_or_else(|_| self.options.rust_log.to_owned()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn d06")
    }

    /// Starts the process (again) and waits for `/healthz`.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.child = Some(self.spawn());
        let url = format!("http://127.0.0.1:{}/healthz", self.metrics_port);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("d06 exited with {status} at start-up:\n{}", self.log_tail(40));
            }
            assert!(Instant::now() < deadline, "d06 not healthy in 60 s:\n{}", self.log_tail(40));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Another instance of the same deployment (same topics, group, database,
    /// key), with its own state directory, port and instance id; not started.
    pub fn sibling(&self, instance: &str) -> App {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics_port = free_port();
        let config = std::fs::read_to_string(&self.config_path)
            .expect("config")
            .replace(&self.state_dir().display().to_string(), &dir.path().join("state").display().to_string())
            .replace(&format!("127.0.0.1:{}", self.metrics_port), &format!("127.0.0.1:{metrics_port}"))
            .replace("instance_id = \"i0\"", &format!("instance_id = \"{instance}\""));
        let config_path = dir.path().join("d06.toml");
        std::fs::write(&config_path, config).expect("write config");
        App {
            config_path,
            log_path: dir.path().join("d06.log"),
            topics: self.topics.clone(),
            group: self.group.clone(),
            database: self.database.clone(),
            metrics_port,
            options: AppOptions { state_dir: None, ..self.options.clone() },
            child: None,
            http: app_http(),
            dir,
        }
    }

    /// Sends a signal (`STOP`, `CONT`, …) to the running process.
    pub fn signal(&self, name: &str) {
        let pid = self.pid().expect("not running");
        let sent = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
        assert!(sent.map(|s| s.success()).unwrap_or(false), "kill -{name} failed");
    }

    /// Runs the process expecting it to exit by itself (a refusal at start-up or a
    /// fault point); returns its status. Panics if it still runs after `timeout`.
    pub async fn run_to_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        assert!(self.child.is_none(), "already running");
        let mut child = self.spawn();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("d06 still running after {timeout:?}:\n{}", self.log_tail(30));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the running process exits by itself (a fault point); returns its status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.child.as_mut().expect("not running");
            if let Some(status) = c.try_wait().expect("wait") {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "d06 did not exit within {timeout:?}:\n{}", self.log_tail(30));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Rewrites the configuration file (takes effect at the next start).
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config_path).expect("config");
        std::fs::write(&self.config_path, edit(text)).expect("config");
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("not running");
        let sent = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        assert!(sent.map(|s| s.success()).unwrap_or(false), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = c.try_wait().expect("wait") {
                return s;
            }
            assert!(Instant::now() < deadline, "d06 did not stop within 60 s of SIGTERM:\n{}", self.log_tail(40));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// [`Self::terminate`], asserting that d06 stopped cleanly (exit 0);
    /// otherwise the failure shows its exit status and the end of its log.
    pub fn stop(&mut self) {
        let status = self.terminate();
        assert!(status.success(), "d06 did not stop cleanly on SIGTERM ({status}):\n{}", self.log_tail(30));
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.options.state_dir.clone().unwrap_or_else(|| self.dir.path().join("state"))
    }

    pub async fn metrics_text(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        match self.http.get(&url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub async fn metrics(&self) -> Metrics {
        Metrics::parse(&self.metrics_text().await)
    }

    /// `d06_shards_owned` summed over `apps` (0 for one not answering).
    pub async fn shards_owned(apps: &[&App]) -> f64 {
        let mut owned = 0.0;
        for app in apps {
            owned += app.metrics().await.get("d06_shards_owned", &[]).unwrap_or(0.0);
        }
        owned
    }

    /// Runs SQL against this app's database; TSV out.
    pub async fn clickhouse(&self, sql: &str) -> String {
        let url = self.options.clickhouse_url.clone().unwrap_or_else(clickhouse_url);
        clickhouse_query_at(&self.http, &url, &self.database, sql).await
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until `check` holds, or panics with `what` and the log tail.
    pub async fn wait_for<F, Fut>(&self, what: &str, timeout: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if check().await {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}:\n{}", self.log_tail(30));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the app has consumed `n` messages in total (all topics).
    pub async fn wait_consumed(&self, n: u64, timeout: Duration) {
        self.wait_for(&format!("{n} messages consumed"), timeout, || async {
            self.metrics().await.sum("d06_messages_consumed_total") as u64 >= n
        })
        .await;
    }

    /// The group's committed offsets for the source topics.
    pub fn committed_offsets(&self) -> BTreeMap<(String, i32), i64> {
        let consumer: BaseConsumer =
            self.options.kafka.client_config().set("group.id", &self.group).create().expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for t in self.topics.sources() {
            for p in 0..self.options.partitions {
                tpl.add_partition(t, p);
            }
        }
        let got = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
        got.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                _ => None,
            })
            .collect()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.kill9();
        // D06_TEST_KEEP_LOGS=DIR keeps every app's log for a post-mortem.
        if let Ok(dir) = std::env::var("D06_TEST_KEEP_LOGS") {
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::copy(
                &self.log_path,
                Path::new(&dir).join(format!("{}.{}.log", self.group, self.metrics_port)),
            );
        }
    }
}

pub async fn clickhouse_query(http: &reqwest::Client, database: &str, sql: &str) -> String {
    clickhouse_query_at(http, &clickhouse_url(), database, sql).await
}

pub async fn clickhouse_query_at(http: &reqwest::Client, url: &str, database: &str, sql: &str) -> String {
    let r = http
        .post(url)
        .query(&[("database", database), ("default_format", "TabSeparated")])
        .body(sql.to_owned())
        .send()
        .await
        .unwrap_or_else(|e| panic!("ClickHouse at {url} unreachable (`bash deploy/local/start.sh`): {e}"));
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    assert!(status.is_success(), "ClickHouse error for {sql}: {body}");
    body
}

/// A producer for test input.
pub struct Producer {
    inner: FutureProducer,
}

impl Producer {
    pub fn new() -> Producer {
        Producer::on(&KafkaTarget::default())
    }

    /// A producer for `kafka`.
    pub fn on(kafka: &KafkaTarget) -> Producer {
        let inner = kafka
            .client_config()
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .expect("producer");
        Producer { inner }
    }

    /// Sends one message to a partition; returns its offset.
    pub async fn send(&self, topic: &str, partition: i32, key: Option<&str>, payload: &[u8]) -> i64 {
        let mut rec: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).partition(partition).payload(payload);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        let delivery = self.inner.send(rec, Duration::from_secs(30)).await.expect("delivery");
        delivery.offset
    }

    /// Sends many messages like `send_all`, and sends again those whose
    /// delivery failed (a producer's retry: a message may then be stored
    /// twice) until every one is acknowledged or `timeout` has passed.
    pub async fn send_all_retrying(&self, messages: &[(String, i32, Vec<u8>)], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<&(String, i32, Vec<u8>)> = messages.iter().collect();
        while !pending.is_empty() {
            assert!(Instant::now() < deadline, "{} messages not delivered within {timeout:?}", pending.len());
            let mut acks = Vec::with_capacity(pending.len());
            for m in pending {
                acks.push((m, self.enqueue(FutureRecord::to(&m.0).partition(m.1).payload(&m.2[..])).await));
            }
            let mut failed = Vec::new();
            for (m, ack) in acks {
                match ack.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => {
                        eprintln!("delivery failed ({e}); sending again");
                        failed.push(m);
                    }
                    Err(_) => failed.push(m),
                }
            }
            pending = failed;
        }
    }

    /// Sends many messages: all enqueued at once (in order per partition), then every ack awaited.
    pub async fn send_all(&self, messages: &[(String, i32, Vec<u8>)]) {
        let mut acks = Vec::with_capacity(messages.len());
        for (t, p, m) in messages {
            acks.push(self.enqueue(FutureRecord::to(t).partition(*p).payload(&m[..])).await);
        }
        for ack in acks {
            ack.await.expect("delivery canceled").expect("delivery");
        }
    }

    /// Enqueues one record, waiting while the local queue is full.
    async fn enqueue(&self, mut rec: FutureRecord<'_, str, [u8]>) -> rdkafka::producer::DeliveryFuture {
        loop {
            match self.inner.send_result(rec) {
                Ok(ack) => return ack,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    rec = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
    }
}

/// One dead letter as read back from Kafka.
#[derive(Debug, Clone)]
pub struct ReadBack {
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    pub raw_headers: Vec<u8>,
}

/// A `read_committed` reader of every partition of `topic`, from the beginning.
fn reader(topic: &str, partitions: i32) -> BaseConsumer {
    reader_on(&KafkaTarget::default(), topic, partitions)
}

/// A `read_committed` reader of every partition of `topic` on `kafka`, from the beginning.
fn reader_on(kafka: &KafkaTarget, topic: &str, partitions: i32) -> BaseConsumer {
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

fn read_back(m: &BorrowedMessage<'_>) -> ReadBack {
    let mut headers = BTreeMap::new();
    let mut raw = Vec::new();
    if let Some(h) = m.headers() {
        for i in 0..h.count() {
            let hd = h.get(i);
            let v = hd.value.unwrap_or_default();
            raw.extend_from_slice(hd.key.as_bytes());
            raw.extend_from_slice(v);
            headers.insert(hd.key.to_owned(), String::from_utf8_lossy(v).into_owned());
        }
    }
    ReadBack { payload: m.payload().unwrap_or_default().to_vec(), headers, raw_headers: raw }
}

/// Reads `n` messages from every partition of `topic` from the beginning.
pub fn read_topic(topic: &str, partitions: i32, n: usize, timeout: Duration) -> Vec<ReadBack> {
    let consumer = reader(topic, partitions);
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push(read_back(&m));
        }
    }
    out
}

/// Every record of `topic` visible to a `read_committed` reader, with its
/// partition and headers; stops once nothing new arrived for `idle`.
pub fn read_committed(topic: &str, partitions: i32, idle: Duration) -> Vec<(i32, ReadBack)> {
    read_committed_on(&KafkaTarget::default(), topic, partitions, idle)
}

/// `read_committed` on the broker `kafka`.
pub fn read_committed_on(kafka: &KafkaTarget, topic: &str, partitions: i32, idle: Duration) -> Vec<(i32, ReadBack)> {
    let consumer = reader_on(kafka, topic, partitions);
    let mut last = Instant::now();
    let mut out = Vec::new();
    while last.elapsed() < idle {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push((m.partition(), read_back(&m)));
            last = Instant::now();
        }
    }
    out
}

/// Runs `deploy/local/{script}.sh` with `args` (and `env`), which must
/// succeed: the tests that stop, kill and start a local service.
pub fn deploy_local(script: &str, args: &[&str], env: &[(&str, &str)]) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(repo.join(format!("deploy/local/{script}.sh")))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run a deploy/local script");
    assert!(
        out.status.success(),
        "{script}.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Parsed Prometheus text exposition.
#[derive(Debug, Default)]
pub struct Metrics {
    pub series: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut series = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((head, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => {
                    let mut labels = BTreeMap::new();
                    for pair in rest.trim_end_matches('}').split("\",") {
                        if let Some((k, v)) = pair.split_once("=\"") {
                            labels.insert(k.trim_matches(',').to_owned(), v.trim_end_matches('"').to_owned());
                        }
                    }
                    (n.to_owned(), labels)
                }
                None => (head.to_owned(), BTreeMap::new()),
            };
            series.push((name, labels, value));
        }
        Metrics { series }
    }

    /// The value of the one series of `name` whose labels include `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series
            .iter()
            .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, v)| *v)
    }

    /// Sum of every series of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.series.iter().filter(|(n, _, _)| n == name).map(|(_, _, v)| v).sum()
    }
}

pub fn write_file(path: &Path, text: &str) {
    let mut f = std::fs::File::create(path).expect("create");
    f.write_all(text.as_bytes()).expect("write");
}

/// A real Prometheus in a temp dir, on a free port, scraping one d06 every
/// second and, when given, evaluating a folder of rule files every second.
pub struct Prometheus {
    child: Child,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(target_port: u16, rules: Option<&Path>) -> Prometheus {
        Prometheus::start_many(&[target_port], rules)
    }

    /// Scraping several d06 instances of one deployment (job `d06`).
    pub fn start_many(target_ports: &[u16], rules: Option<&Path>) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let rule_files = rules.map(|r| format!("rule_files:\n  - {}/*.yml\n", r.display())).unwrap_or_default();
        let targets: Vec<String> = target_ports.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{rule_files}\
             scrape_configs:\n  - job_name: d06\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let path = dir.path().join("prometheus.yml");
        std::fs::write(&path, config).expect("config");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("prometheus not found on PATH: run `bash deploy/local/install.sh`");
        Prometheus { child, port, dir }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The URL of `path` on it.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// An instant query: `(labels, value)` per series, or the error.
    pub async fn query(&self, promql: &str) -> Result<Vec<(BTreeMap<String, String>, f64)>, String> {
        let url = self.url("/api/v1/query");
        let r = reqwest::Client::new().get(url).query(&[("query", promql)]).send().await.map_err(|e| e.to_string())?;
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        let value = |x: &Value| x[1].as_str().and_then(|s| s.parse::<f64>().ok()).unwrap_or(f64::NAN);
        match v["data"]["resultType"].as_str() {
            Some("vector") => Ok(v["data"]["result"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|s| {
                    let labels = s["metric"]
                        .as_object()
                        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned())).collect())
                        .unwrap_or_default();
                    (labels, value(&s["value"]))
                })
                .collect()),
            Some("scalar") => Ok(vec![(BTreeMap::new(), value(&v["data"]["result"]))]),
            other => Err(format!("unexpected result type {other:?}")),
        }
    }

    /// The first series' value of an instant query, if it answered one.
    pub async fn value(&self, promql: &str) -> Option<f64> {
        self.query(promql).await.ok()?.first().map(|(_, v)| *v)
    }

    /// The JSON answer of its API at `path` with `query`, if any.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let url = self.url(path);
        let r = reqwest::Client::new().get(url).query(query).send().await.ok()?;
        r.json().await.ok()
    }

    /// The expression of the rule `name` as this Prometheus loaded it from
    /// its rule files (`/api/v1/rules`), waiting up to 30 s for them.
    pub async fn rule_query(&self, name: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = self.get("/api/v1/rules", &[]).await {
                let rules = v["data"]["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default());
                if let Some(q) =
                    rules.into_iter().find(|r| r["name"] == name).and_then(|r| r["query"].as_str().map(str::to_owned))
                {
                    return q;
                }
            }
            assert!(Instant::now() < deadline, "Prometheus has no rule {name} after 30 s\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
