//! `[clickhouse]` in the config file: where the servers are, the cluster,
//! the database, credentials and CA, each checked before anything starts;
//! secrets never shown.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::tls::{read_secret, CaBundle, Secret};

/// How to reach ClickHouse (`[clickhouse]` in the config file).
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP interface URL, `http://` or `https://`, e.g.
    /// `https://ch.example:8443` (ClickHouse's `https_port`): the server d06
    /// talks to first. The server's certificate is always verified, against
    /// the system's roots and `ca_file`.
    pub url: String,
    /// Further HTTP URLs serving the same data (the other replicas, or other
    /// servers of `cluster`), tried in this order after `url`: a request that
    /// fails in a retryable way (server down, timeout) moves d06 on to the
    /// next one, and the retry goes there. Empty (the default): `url` only.
    pub urls: Vec<String>,
    /// The ClickHouse cluster (a name in the servers' `remote_servers`) that
    /// holds d06's tables. Set: migrations run `ON CLUSTER`, the shard tables
    /// and `dead_letters` are `ReplicatedReplacingMergeTree` per shard read
    /// through `Distributed` tables, the small tables are replicated to every
    /// server (docs/OPERATIONS.md, ClickHouse). Unset (the default): one
    /// server, plain `ReplacingMergeTree` tables. Letters, digits and `_`.
    pub cluster: Option<String>,
    /// Database holding d06's tables and views; created if missing.
    /// Letters, digits and `_` only, not starting with a digit.
    pub database: String,
    /// User name; ClickHouse's `default` user when absent.
    pub user: Option<String>,
    /// Password written in the file; never logged nor printed (`Debug`
    /// redacts it). Prefer `password_env` or `password_file`; at most one
    /// of the three may be set.
    pub password: Option<String>,
    /// An environment variable holding the password, so that secrets stay
    /// out of the config file.
    pub password_env: Option<String>,
    /// A file holding the password (one trailing newline ignored), e.g. a
    /// systemd credential or a mounted secret.
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA (one or more certificates) that signed the
    /// server's certificate, trusted besides the system's roots: for an
    /// `https://` URL served with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Limit in seconds for any one request (a DDL statement, an `INSERT`
    /// of one table, a query); an overrun counts as a retryable failure.
    pub timeout_secs: u64,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".to_owned(),
            urls: Vec::new(),
            cluster: None,
            database: "d06".to_owned(),
            user: None,
            password: None,
            password_env: None,
            password_file: None,
            ca_file: None,
            timeout_secs: 30,
        }
    }
}

impl fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &redact_url(&self.url))
            .field("urls", &self.urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>())
            .field("cluster", &self.cluster)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// What [`ClickHouseConfig::redacted`] puts in place of a secret.
pub const REDACTED: &str = "[redacted]";

impl ClickHouseConfig {
    /// Checks the scheme of `url` and of every one of `urls` (`http://` or
    /// `https://`). The message names the problem and never quotes
    /// credentials embedded in a URL.
    pub fn check_url(&self) -> Result<(), String> {
        crate::tls::check_http_url("url", &self.url)?;
        self.urls.iter().try_for_each(|u| crate::tls::check_http_url("urls", u))
    }

    /// Checks `cluster`: when set, a name that needs no escaping anywhere
    /// (letters, digits and `_`, not starting with a digit).
    pub fn check_cluster(&self) -> Result<(), String> {
        match &self.cluster {
            Some(name) if !valid_database_name(name) => {
                Err(format!("cluster {name:?} must be letters, digits and _, not starting with a digit"))
            }
            _ => Ok(()),
        }
    }

    /// Checks what needs no network: the URLs' schemes (`http://` or
    /// `https://`), the cluster name, that at most one password source is
    /// set and it can be read, and that `ca_file` holds certificates.
    /// Messages never quote a password or credentials embedded in a URL.
    pub fn check(&self) -> Result<(), String> {
        self.check_url()?;
        self.check_cluster()?;
        self.password()?;
        if let Some(ca) = &self.ca_file {
            CaBundle::load(ca)?;
        }
        Ok(())
    }

    /// `url` followed by `urls`: every server, in the order d06 tries them.
    pub fn servers(&self) -> Vec<String> {
        std::iter::once(&self.url).chain(&self.urls).cloned().collect()
    }

    /// This section with its secrets replaced by [`REDACTED`]: the password
    /// and any `user:password@` in the URL. For printing the configuration.
    pub fn redacted(&self) -> ClickHouseConfig {
        ClickHouseConfig {
            url: redact_url(&self.url),
            urls: self.urls.iter().map(|u| redact_url(u)).collect(),
            password: self.password.as_ref().map(|_| REDACTED.to_owned()),
            ..self.clone()
        }
    }

    /// The password from its one source (`password`, `password_env` or
    /// `password_file`), or none.
    pub fn password(&self) -> Result<Option<Secret>, String> {
        match (&self.password, self.password_env.is_some() || self.password_file.is_some()) {
            (Some(_), true) => Err("password is set inline and in password_env or password_file; keep one".into()),
            (Some(p), false) => Ok(Some(Secret::from(p.clone()))),
            (None, _) => read_secret("password", self.password_env.as_deref(), self.password_file.as_deref()),
        }
    }
}

/// The URL with any `user:password@` replaced, for logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[scheme_end..].find('/').map_or(url.len(), |i| scheme_end + i);
    match url[scheme_end..authority_end].rfind('@') {
        Some(at) => format!("{}<redacted>@{}", &url[..scheme_end], &url[scheme_end + at + 1..]),
        None => url.to_owned(),
    }
}

/// A database name that needs no escaping anywhere.
pub(super) fn valid_database_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::tls::ExposeSecret;

    #[test]
    fn database_names_are_checked() {
        assert!(valid_database_name("d06"));
        assert!(valid_database_name("d06_test_1a2b"));
        assert!(!valid_database_name("1db"));
        assert!(!valid_database_name("d06`; DROP"));
        assert!(!valid_database_name(""));
        assert!(!valid_database_name("d-06"));
    }

    #[test]
    fn urls_must_be_http_or_https() {
        let with = |url: &str| ClickHouseConfig { url: url.into(), ..ClickHouseConfig::default() }.check();
        assert_eq!(with("http://127.0.0.1:8123"), Ok(()));
        assert_eq!(with("https://admin:hunter2@ch.local:8443"), Ok(()));
        for bad in ["tcp://ch.local:9000", "ch.local:8123", "http://", "", "ftp://u:hunter2@x"] {
            let e = with(bad).unwrap_err();
            assert!(e.contains("must be an http:// or https:// URL") && !e.contains("hunter2"), "{bad}: {e}");
        }
    }

    #[test]
    fn one_password_source_at_most_and_a_readable_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "from-file\n").unwrap();
        let cfg = ClickHouseConfig { password_file: Some(pw.clone()), ..ClickHouseConfig::default() };
        assert_eq!(cfg.password().unwrap().map(|s| s.expose_secret().to_owned()).as_deref(), Some("from-file"));
        assert_eq!(cfg.check(), Ok(()));
        let two = ClickHouseConfig { password: Some("inline".into()), ..cfg.clone() };
        assert!(two.check().unwrap_err().contains("keep one"));
        let env_and_file = ClickHouseConfig { password_env: Some("HOME".into()), ..cfg.clone() };
        assert!(env_and_file.check().unwrap_err().contains("both set"));
        let ca = ClickHouseConfig { ca_file: Some(dir.path().join("absent.pem")), ..ClickHouseConfig::default() };
        assert!(ca.check().unwrap_err().starts_with("ca_file: cannot read"));
    }

    #[test]
    fn redacted_hides_the_password_and_url_credentials_only() {
        let cfg = ClickHouseConfig {
            url: "http://admin:hunter2@ch.local:8123/".into(),
            password: Some("s3cret-pw".into()),
            password_env: Some("D06_CH_PASSWORD".into()),
            user: Some("d06".into()),
            ..ClickHouseConfig::default()
        };
        let r = cfg.redacted();
        assert_eq!(r.url, "http://<redacted>@ch.local:8123/");
        assert_eq!(r.password.as_deref(), Some(REDACTED));
        assert_eq!((r.user, r.password_env, r.database), (cfg.user, cfg.password_env, cfg.database));
        assert_eq!(ClickHouseConfig::default().redacted(), ClickHouseConfig::default());
    }

    #[test]
    fn debug_never_shows_the_password() {
        let cfg = ClickHouseConfig {
            url: "http://admin:hunter2@ch.local:8123/".into(),
            password: Some("s3cret-pw".into()),
            user: Some("d06".into()),
            ..ClickHouseConfig::default()
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("http://<redacted>@ch.local:8123/"), "{shown}");
        assert!(shown.contains("d06"), "{shown}");
        assert_eq!(redact_url("http://127.0.0.1:8123"), "http://127.0.0.1:8123");
    }

    #[test]
    fn the_password_can_come_from_the_environment() {
        let var = "D06_TEST_CH_PASSWORD_RESOLVE";
        std::env::set_var(var, "from-env");
        let cfg = ClickHouseConfig { password_env: Some(var.into()), ..ClickHouseConfig::default() };
        assert_eq!(cfg.password().unwrap().map(|s| s.expose_secret().to_owned()).as_deref(), Some("from-env"));
        assert!(!format!("{cfg:?}").contains("from-env"));
        let inline = ClickHouseConfig { password: Some("inline".into()), password_env: None, ..cfg };
        assert_eq!(inline.password().unwrap().map(|s| s.expose_secret().to_owned()).as_deref(), Some("inline"));
    }

    #[test]
    fn failover_urls_and_the_cluster_are_checked_and_redacted() {
        let cfg: ClickHouseConfig =
            toml::from_str("url = \"http://a:8123\"\nurls = [\"http://admin:hunter2@b:8123\"]\ncluster = \"d06_prod\"")
                .unwrap();
        assert_eq!(cfg.servers(), ["http://a:8123", "http://admin:hunter2@b:8123"]);
        assert_eq!((cfg.check_url(), cfg.check_cluster()), (Ok(()), Ok(())));
        assert_eq!(cfg.redacted().urls, ["http://<redacted>@b:8123"]);
        assert!(!format!("{cfg:?}").contains("hunter2"));
        let bad = ClickHouseConfig { urls: vec!["ch2:8123".into()], ..cfg.clone() };
        assert!(bad.check_url().unwrap_err().contains("\"ch2:8123\" must be an http:// or https:// URL"));
        let bad = ClickHouseConfig { cluster: Some("d06`x".into()), ..cfg };
        assert!(bad.check_cluster().is_err());
        let default = ClickHouseConfig::default();
        assert_eq!((default.servers().len(), default.cluster), (1, None), "one server unless configured");
    }

    #[test]
    fn config_defaults_and_rejects_unknown_fields() {
        let cfg: ClickHouseConfig = toml::from_str("database = \"x\"").unwrap();
        assert_eq!(cfg.url, "http://127.0.0.1:8123");
        assert_eq!(cfg.database, "x");
        assert_eq!(cfg.timeout_secs, 30);
        assert!(toml::from_str::<ClickHouseConfig>("databse = \"x\"").is_err());
    }
}
