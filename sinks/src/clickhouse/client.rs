//! The HTTP client under [`clickhouse::Client`]: plain HTTP or HTTPS
//! (native TLS, the system's roots plus `ca_file`), with the user and the
//! password from their one source.

use std::time::Duration;

use ::clickhouse::Client;
use hyper_tls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

use super::{ClickHouseConfig, SinkError};
use crate::tls::{connector, CaBundle, ExposeSecret};

/// TCP keep-alive of the connections (the `clickhouse` crate's default).
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// How long an idle connection is kept: below ClickHouse's 3 s keep-alive
/// timeout, so that the server never closes a connection we are about to use.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// A client for `url` (one of `cfg`'s servers; no database selected),
/// credentials set. A password source or CA file that cannot be read is a
/// permanent `config` error; nothing is sent.
pub(super) fn build(cfg: &ClickHouseConfig, url: &str) -> Result<Client, SinkError> {
    let config_error = |message: String| SinkError::permanent("config", "connect", message);
    cfg.check().map_err(config_error)?;
    let ca = cfg.ca_file.as_deref().map(CaBundle::load).transpose().map_err(config_error)?;
    let tls = connector(ca.as_ref()).map_err(config_error)?;
    let mut http = HttpConnector::new();
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.enforce_http(false);
    let https = HttpsConnector::from((http, tokio_native_tls::TlsConnector::from(tls)));
    let hyper = HyperClient::builder(TokioExecutor::new()).pool_idle_timeout(POOL_IDLE_TIMEOUT).build(https);
    let mut client = Client::with_http_client(hyper).with_url(url).with_validation(false);
    if let Some(user) = &cfg.user {
        client = client.with_user(user);
    }
    if let Some(password) = cfg.password().map_err(config_error)? {
        client = client.with_password(password.expose_secret());
    }
    Ok(client)
}
