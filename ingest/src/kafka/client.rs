//! The librdkafka settings every client of d06 shares (consumers, the
//! transactional producer, the admin client, the simulator's producer):
//! `bootstrap.servers` and the operator's properties, secrets read from
//! the environment or from files, checked before anything starts.
//!
//! TLS and SASL are plain librdkafka properties (`security.protocol`,
//! `ssl.ca.location`, `sasl.mechanism`, `sasl.username`, `sasl.password`,
//! …; docs/OPERATIONS.md "TLS and passwords"). What d06 adds: a secret
//! value can come from a variable or a file instead of the config file, a
//! secret-looking value is never printed, and switching certificate
//! verification off is refused.

use std::path::Path;

use rdkafka::config::ClientConfig;
use tracing::warn;

use super::{KafkaConfig, SourceError};

/// librdkafka settings that would accept any certificate: refused.
const UNVERIFIED: &[(&str, &str)] =
    &[("enable.ssl.certificate.verification", "false"), ("ssl.endpoint.identification.algorithm", "none")];

/// Whether a property's value is to be hidden when printed (`sasl.password`,
/// `ssl.key.password`, `ssl.key.pem`, `sasl.oauthbearer.client.secret`, …).
pub(crate) fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "key", "token", "jaas"].iter().any(|s| k.contains(s))
}

/// The content of a secret file, one trailing newline dropped.
fn read_value(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(value.to_owned())
}

impl KafkaConfig {
    /// Every property has one source, each variable is set, each file is
    /// readable and not empty, and certificate verification stays on. The
    /// messages name keys, variables and files, never values.
    pub(crate) fn check_properties(&self) -> Result<(), SourceError> {
        let config = |m: String| Err(SourceError::Config(m));
        for key in self.properties_from_env.keys().chain(self.properties_from_file.keys()) {
            let sources = usize::from(self.properties.contains_key(key))
                + usize::from(self.properties_from_env.contains_key(key))
                + usize::from(self.properties_from_file.contains_key(key));
            if sources > 1 {
                return config(format!(
                    "{key} is set in more than one of properties, properties_from_env, properties_from_file"
                ));
            }
        }
        for (key, var) in &self.properties_from_env {
            if std::env::var_os(var).is_none() {
                return config(format!("{key}: environment variable {var} is not set"));
            }
        }
        for (key, path) in &self.properties_from_file {
            if let Err(e) = read_value(path) {
                return config(format!("properties_from_file {key}: {e}"));
            }
        }
        for (key, off) in UNVERIFIED {
            if self.properties.get(*key).is_some_and(|v| v.eq_ignore_ascii_case(off)) {
                return config(format!(
                    "{key} = {off:?} would accept any certificate; trust the broker's CA with ssl.ca.location instead"
                ));
            }
        }
        Ok(())
    }

    /// `bootstrap.servers` and the operator's properties, with the values
    /// from variables and files read now (a file rotated since the last
    /// start is read again). Checked by [`KafkaConfig::validate`] first.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        for (k, var) in &self.properties_from_env {
            if let Ok(v) = std::env::var(var) {
                c.set(k, v);
            }
        }
        for (k, path) in &self.properties_from_file {
            match read_value(path) {
                Ok(v) => {
                    c.set(k, v);
                }
                Err(e) => warn!(key = %k, error = %e, "a Kafka property's file cannot be read"),
            }
        }
        c
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_from_a_file_reaches_librdkafka_and_nowhere_else() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "kafka-secret\n").unwrap();
        let mut cfg = KafkaConfig::default();
        cfg.properties.insert("security.protocol".into(), "sasl_ssl".into());
        cfg.properties_from_file.insert("sasl.password".into(), file.clone());
        cfg.validate().unwrap();
        assert_eq!(cfg.client_config().get("sasl.password"), Some("kafka-secret"));
        assert!(!format!("{cfg:?}").contains("kafka-secret"));
        std::fs::write(&file, "").unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("properties_from_file sasl.password") && e.contains("is empty"), "{e}");
        cfg.properties_from_file.insert("sasl.password".into(), dir.path().join("absent"));
        assert!(cfg.validate().unwrap_err().to_string().contains("cannot read"));
    }

    #[test]
    fn one_source_per_key_and_verification_stays_on() {
        let mut cfg = KafkaConfig::default();
        cfg.properties.insert("sasl.password".into(), "inline".into());
        cfg.properties_from_env.insert("sasl.password".into(), "HOME".into());
        assert!(cfg.validate().unwrap_err().to_string().contains("more than one"));
        for (key, value) in
            [("enable.ssl.certificate.verification", "False"), ("ssl.endpoint.identification.algorithm", "none")]
        {
            let mut cfg = KafkaConfig::default();
            cfg.properties.insert(key.into(), value.into());
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains("would accept any certificate") && e.contains("ssl.ca.location"), "{e}");
        }
        let mut ok = KafkaConfig::default();
        ok.properties.insert("ssl.endpoint.identification.algorithm".into(), "https".into());
        ok.validate().unwrap();
    }

    #[test]
    fn secret_looking_keys() {
        for k in
            ["sasl.password", "ssl.key.password", "ssl.key.pem", "sasl.oauthbearer.client.secret", "sasl.jaas.config"]
        {
            assert!(looks_secret(k), "{k}");
        }
        for k in ["sasl.username", "security.protocol", "ssl.ca.location"] {
            assert!(!looks_secret(k), "{k}");
        }
    }
}
