//! Issue 14: TLS and passwords, for real. The TLS services come from
//! `deploy/local/start.sh clickhouse-tls kafka-tls-broker kafka-tls` (the
//! test command starts them): ClickHouse serving HTTPS only with user `d06`
//! and a password, and a second tansu reachable only through stunnel's TLS
//! port, both with a certificate of the test CA that `lib.sh tls_material`
//! makes (`D06_TEST_TLS_DIR`, default `.d06/local/tls`). Nothing trusts that
//! CA but what is told to (`ca_file`, `ssl.ca.location`).
//!
//! Each test ends in an exact comparison of ClickHouse with an independent
//! recount (`crash::recount`) of the events it produced.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::crash::{generate, messages, parse_coverage, recount, wait_recount, Expected, COVERAGE_ROWS};
use crate::harness::{spawn_app, App, AppOptions, KafkaTarget, Producer};

/// The TLS services and the test CA.
pub struct TlsStack {
    dir: PathBuf,
    clickhouse_url: String,
    kafka_brokers: String,
    kafka_sasl_brokers: String,
}

impl TlsStack {
    /// From `D06_TEST_TLS_DIR`, `D06_TEST_CLICKHOUSE_TLS` and
    /// `D06_TEST_KAFKA_TLS` (defaults: `deploy/local/lib.sh`'s).
    pub fn from_env() -> TlsStack {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::var("D06_TEST_TLS_DIR").map_or_else(|_| repo.join(".d06/local/tls"), PathBuf::from);
        assert!(
            dir.join("ca.pem").is_file() && dir.join("clickhouse.password").is_file(),
            "no test CA in {} (set D06_TEST_TLS_DIR, or `bash deploy/local/start.sh clickhouse-tls kafka-tls-broker kafka-tls`)",
            dir.display()
        );
        TlsStack {
            dir,
            clickhouse_url: std::env::var("D06_TEST_CLICKHOUSE_TLS")
                .unwrap_or_else(|_| "https://127.0.0.1:18443".into()),
            kafka_brokers: std::env::var("D06_TEST_KAFKA_TLS").unwrap_or_else(|_| "127.0.0.1:19393".into()),
            kafka_sasl_brokers: std::env::var("D06_TEST_KAFKA_SASL").unwrap_or_else(|_| "127.0.0.1:19495".into()),
        }
    }

    /// The CA certificate clients are told to trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn clickhouse_password(&self) -> String {
        std::fs::read_to_string(self.dir.join("clickhouse.password")).expect("password file").trim().to_owned()
    }

    /// `[clickhouse]` lines for d06: the user, the password file, the CA.
    pub fn clickhouse_toml(&self) -> String {
        format!(
            "user = \"d06\"\npassword_file = {:?}\nca_file = {:?}\n",
            self.dir.join("clickhouse.password").display().to_string(),
            self.ca().display().to_string()
        )
    }

    /// An app's options with ClickHouse over HTTPS.
    pub fn with_clickhouse(&self, options: AppOptions) -> AppOptions {
        AppOptions {
            clickhouse_url: Some(self.clickhouse_url.clone()),
            clickhouse_toml: self.clickhouse_toml(),
            ..options
        }
    }

    /// The TLS broker: every client of the test and d06 use these settings.
    pub fn kafka(&self) -> KafkaTarget {
        KafkaTarget {
            brokers: self.kafka_brokers.clone(),
            properties: vec![
                ("security.protocol".into(), "ssl".into()),
                ("ssl.ca.location".into(), self.ca().display().to_string()),
            ],
            secret_files: Vec::new(),
        }
    }

    /// The broker requiring SASL/SCRAM-SHA-512 behind TLS (`start.sh
    /// persistent`): user `d06`, the password read from its file.
    pub fn kafka_sasl(&self) -> KafkaTarget {
        KafkaTarget {
            brokers: self.kafka_sasl_brokers.clone(),
            properties: vec![
                ("security.protocol".into(), "sasl_ssl".into()),
                ("ssl.ca.location".into(), self.ca().display().to_string()),
                ("sasl.mechanism".into(), "SCRAM-SHA-512".into()),
                ("sasl.username".into(), "d06".into()),
            ],
            secret_files: vec![("sasl.password".into(), self.kafka_password_file())],
        }
    }

    /// The SASL broker's password file (`lib.sh tls_material`).
    pub fn kafka_password_file(&self) -> PathBuf {
        self.dir.join("kafka.password")
    }

    /// An HTTP client trusting the test CA.
    pub fn http(&self) -> reqwest::Client {
        let pem = std::fs::read(self.ca()).expect("ca.pem");
        let ca = reqwest::Certificate::from_pem(&pem).expect("the test CA parses");
        reqwest::Client::builder().add_root_certificate(ca).build().expect("https client")
    }

    /// SQL against `database` on the TLS ClickHouse as `d06`; TSV out.
    pub async fn query(&self, database: &str, sql: &str) -> String {
        let password = self.clickhouse_password();
        let r = self
            .http()
            .post(&self.clickhouse_url)
            .query(&[("database", database), ("default_format", "TabSeparated"), ("user", "d06")])
            .query(&[("password", password.as_str())])
            .body(sql.to_owned())
            .send()
            .await
            .unwrap_or_else(|e| panic!("TLS ClickHouse at {} unreachable: {e}", self.clickhouse_url));
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "TLS ClickHouse error for {sql}: {body}");
        body
    }
}

/// `coverage_daily`'s non-zero rows as (indicator, level, area, day) → (gained, lost).
async fn coverage(tls: &TlsStack, app: &App) -> Expected {
    parse_coverage(&tls.query(&app.database, COVERAGE_ROWS).await)
}

/// Produces `n` generated events through `kafka` into the app's topics and
/// waits until ClickHouse (over HTTPS) equals their recount; panics with the
/// first differences after `timeout`. Returns how many messages it produced.
async fn produce_and_compare(tls: &TlsStack, app: &App, kafka: &KafkaTarget, n: usize, timeout: Duration) -> usize {
    let seed: u64 = rand::random();
    eprintln!("tls test: {n} events, seed {seed}");
    let raws = generate(n, seed);
    let expected = recount(&raws);
    let topics: Vec<String> = app.topics.sources().iter().map(|s| s.to_string()).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7153);
    let msgs = messages(&raws, &topics, app.options.partitions, &mut rng);
    Producer::on(kafka).send_all(&msgs).await;
    let diff = wait_recount(&expected, timeout, || coverage(tls, app)).await;
    assert!(
        diff.is_empty(),
        "ClickHouse differs from the recount (key, expected, got): {diff:?}\n{}",
        app.log_tail(30)
    );
    assert!(expected.len() > 100, "the stream covers many keys: {}", expected.len());
    msgs.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_over_https_with_a_password_file_equals_the_recount() {
    let tls = TlsStack::from_env();
    // The server is HTTPS only, with a certificate nobody trusts by default.
    let plain = reqwest::Client::new();
    let http_url = tls.clickhouse_url.replacen("https://", "http://", 1);
    assert!(plain.get(&http_url).send().await.is_err(), "plain HTTP must not be served on {http_url}");
    let untrusted = plain.get(&tls.clickhouse_url).send().await.expect_err("the test CA is not a system root");
    assert!(format!("{untrusted:?}").contains("certificate"), "{untrusted:?}");

    let app = spawn_app(tls.with_clickhouse(AppOptions { partitions: 2, shards: 2, ..AppOptions::default() })).await;
    produce_and_compare(&tls, &app, &KafkaTarget::default(), 3_000, Duration::from_secs(90)).await;
    let log = std::fs::read_to_string(&app.log_path).expect("log");
    assert!(log.contains("connected to ClickHouse"), "{}", app.log_tail(20));
    assert!(!log.contains(&tls.clickhouse_password()), "the password is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d06_run_over_kafka_tls_and_clickhouse_https_equals_the_recount() {
    let tls = TlsStack::from_env();
    let kafka = tls.kafka();
    // The broker's only advertised listener is stunnel's TLS port: a
    // plaintext client gets nothing from it.
    let plain = KafkaTarget { brokers: kafka.brokers.clone(), ..KafkaTarget::default() };
    assert!(metadata_error(&plain).is_some(), "plaintext answered on {}", kafka.brokers);

    let app = run_over(&tls, &kafka).await;
    let log = std::fs::read_to_string(&app.log_path).expect("log");
    assert!(!log.contains(&tls.clickhouse_password()), "the password is in the log");
}

/// `d06 run` over `kafka` with ClickHouse over HTTPS: 3,000 generated events
/// equal their recount, and stage 1 committed every source message (read
/// back over the same broker settings).
async fn run_over(tls: &TlsStack, kafka: &KafkaTarget) -> App {
    let app = spawn_app(tls.with_clickhouse(AppOptions {
        partitions: 2,
        shards: 2,
        kafka: kafka.clone(),
        ..AppOptions::default()
    }))
    .await;
    let produced = produce_and_compare(tls, &app, kafka, 3_000, Duration::from_secs(90)).await;
    let committed: i64 = app.committed_offsets().values().sum();
    assert_eq!(committed, produced as i64, "committed source offsets");
    app
}

/// `fetch_metadata` through a client of `kafka`, as a refusal's message if
/// it fails (a short timeout: the refusals here are immediate).
fn metadata_error(kafka: &KafkaTarget) -> Option<String> {
    let client: BaseConsumer = kafka.client_config().set("socket.timeout.ms", "2000").create().expect("client");
    client.fetch_metadata(None, Duration::from_secs(3)).err().map(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d06_run_over_kafka_sasl_scram_and_tls_equals_the_recount() {
    if std::env::var_os("D06_TEST_KAFKA_SASL").is_none() {
        eprintln!(
            "SKIPPED: D06_TEST_KAFKA_SASL is not set (no SASL broker; \
             `bash deploy/local/start.sh persistent`, see deploy/local/test.sh)"
        );
        return;
    }
    let tls = TlsStack::from_env();
    let password = tls.kafka_password_file();
    let kafka = tls.kafka_sasl();
    // Neither TLS alone nor a wrong password gets anything from it.
    let tls_only = KafkaTarget { brokers: kafka.brokers.clone(), ..tls.kafka() };
    assert!(metadata_error(&tls_only).is_some(), "TLS without SASL answered on {}", kafka.brokers);
    let wrong = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(wrong.path(), "not-the-password").expect("write");
    let refused =
        KafkaTarget { secret_files: vec![("sasl.password".into(), wrong.path().to_owned())], ..kafka.clone() };
    assert!(metadata_error(&refused).is_some(), "a wrong password answered on {}", kafka.brokers);
    assert_eq!(metadata_error(&kafka), None, "the right password is refused on {}", kafka.brokers);

    // d06 reads the password from its file (`[kafka.properties_from_file]`).
    let app = run_over(&tls, &kafka).await;
    let config = std::fs::read_to_string(&app.config_path).expect("config");
    let secret = std::fs::read_to_string(&password).expect("password").trim().to_owned();
    assert!(!config.contains(&secret), "the password is in d06's configuration");
    assert!(!app.log().contains(&secret), "the Kafka password is in the log");
}
