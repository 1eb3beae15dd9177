//! TLS trust and secrets for d06's HTTP clients (ClickHouse, Alertmanager).
//!
//! - [`Secret`]: a password or token (`secrecy`'s `SecretString`): `Debug`
//!   never shows it, and its memory is wiped when it is dropped.
//! - [`read_secret`]: a secret from exactly one source, an environment
//!   variable or a file, so that it stays out of the configuration file.
//! - [`CaBundle`]: the PEM certificates of a private CA to trust besides the
//!   system's, read and parsed before anything starts.
//! - [`check_http_url`]: `http://` or `https://` with a host.
//!
//! There is deliberately no way to switch certificate verification off.

use std::fmt;
use std::path::Path;

pub use secrecy::ExposeSecret;

/// A password or token: printed as `[REDACTED]`, never as itself, wiped
/// from memory when dropped; [`ExposeSecret::expose_secret`] in the one
/// place that sends it.
pub type Secret = secrecy::SecretString;

/// The secret named `what` from at most one source: the environment
/// variable `env`, or the file `file` (one trailing newline dropped).
/// `Ok(None)` when neither is given. Both given, an unset or empty
/// variable, an unreadable or empty file are errors; a message names the
/// variable or the file, never the value.
pub fn read_secret(what: &str, env: Option<&str>, file: Option<&Path>) -> Result<Option<Secret>, String> {
    match (env, file) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(format!("{what}_env and {what}_file are both set; keep one")),
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(Secret::from(v))),
            Ok(_) => Err(format!("{what}_env: environment variable {var} is empty")),
            Err(_) => Err(format!("{what}_env: environment variable {var} is not set")),
        },
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("{what}_file: cannot read {}: {e}", path.display()))?;
            let value = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
            if value.is_empty() {
                return Err(format!("{what}_file: {} is empty", path.display()));
            }
            Ok(Some(Secret::from(value)))
        }
    }
}

/// The certificates of a PEM file (one or more `CERTIFICATE` blocks), each
/// parsed, to be trusted as roots by a client.
#[derive(Clone)]
pub struct CaBundle {
    pem: Vec<u8>,
    certificates: Vec<native_tls::Certificate>,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle").field("certificates", &self.certificates.len()).finish()
    }
}

impl CaBundle {
    /// Reads and parses `path`; an unreadable file, a file without a
    /// certificate or a certificate that does not parse is an error that
    /// names the file.
    pub fn load(path: &Path) -> Result<CaBundle, String> {
        let pem = std::fs::read(path).map_err(|e| format!("ca_file: cannot read {}: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&pem);
        const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
        const END: &str = "-----END CERTIFICATE-----";
        let mut certificates = Vec::new();
        let mut rest = text.as_ref();
        while let Some(start) = rest.find(BEGIN) {
            let Some(len) = rest[start..].find(END) else { break };
            let block = &rest[start..start + len + END.len()];
            let cert = native_tls::Certificate::from_pem(block.as_bytes())
                .map_err(|e| format!("ca_file {}: certificate {}: {e}", path.display(), certificates.len() + 1))?;
            certificates.push(cert);
            rest = &rest[start + len + END.len()..];
        }
        if certificates.is_empty() {
            return Err(format!("ca_file {}: no PEM certificate in it", path.display()));
        }
        Ok(CaBundle { pem, certificates })
    }

    /// The parsed certificates.
    pub fn certificates(&self) -> &[native_tls::Certificate] {
        &self.certificates
    }

    /// The file's bytes, for clients that parse PEM themselves.
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }
}

/// A TLS connector trusting the system's roots and, when given, `ca`'s
/// certificates; certificates and host names are always verified.
pub fn connector(ca: Option<&CaBundle>) -> Result<native_tls::TlsConnector, String> {
    let mut builder = native_tls::TlsConnector::builder();
    for cert in ca.map(CaBundle::certificates).unwrap_or_default() {
        builder.add_root_certificate(cert.clone());
    }
    builder.build().map_err(|e| format!("building the TLS client: {e}"))
}

/// Checks that `url` is `http://` or `https://` followed by a host; the
/// message calls it `field` and never quotes credentials in it.
pub fn check_http_url(field: &str, url: &str) -> Result<(), String> {
    match url.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err(format!("{field} {:?} must be an http:// or https:// URL", crate::clickhouse::redact_url(url))),
    }
}

/// An error and its causes, `a: b: c`: a TLS failure such as "certificate
/// verify failed" is only in the causes of a network error (ClickHouse and
/// Alertmanager clients alike).
pub fn with_causes(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        cause = c.source();
    }
    message
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_comes_from_one_source_and_is_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let s = read_secret("password", None, Some(&file)).unwrap().unwrap();
        assert_eq!(s.expose_secret(), "s3cret");
        assert!(!format!("{s:?}").contains("s3cret") && format!("{s:?}").contains("REDACTED"), "{s:?}");
        assert!(read_secret("password", None, None).unwrap().is_none());
        let both = read_secret("password", Some("PATH"), Some(&file)).unwrap_err();
        assert!(both.contains("both"), "{both}");
        let unset = read_secret("password", Some("D06_TLS_TEST_SURELY_UNSET"), None).unwrap_err();
        assert!(unset.contains("D06_TLS_TEST_SURELY_UNSET is not set"), "{unset}");
        std::fs::write(&file, "\n").unwrap();
        assert!(read_secret("token", None, Some(&file)).unwrap_err().contains("empty"));
        let missing = read_secret("token", None, Some(&dir.path().join("nope"))).unwrap_err();
        assert!(missing.starts_with("token_file: cannot read"), "{missing}");
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "not a certificate").unwrap();
        assert!(CaBundle::load(&file).unwrap_err().contains("no PEM certificate"));
        std::fs::write(&file, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        assert!(CaBundle::load(&file).unwrap_err().contains("certificate 1"));
        assert!(CaBundle::load(&dir.path().join("absent.pem")).unwrap_err().contains("cannot read"));
    }

    #[test]
    fn urls_are_http_or_https_with_a_host() {
        assert!(check_http_url("url", "http://127.0.0.1:8123").is_ok());
        assert!(check_http_url("url", "https://ch.example:8443").is_ok());
        for bad in ["ftp://x", "https://", "127.0.0.1:8123", "http:///path"] {
            assert!(check_http_url("url", bad).is_err(), "{bad}");
        }
        let e = check_http_url("url", "tcp://u:pw@host").unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }
}
