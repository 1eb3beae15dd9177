//! What a failed request's connection did — refused, reset, closed early,
//! timed out, TLS — read from the error's causes, so that a retryable
//! [`SinkError`](super::SinkError) names it (its `kind` label and message)
//! instead of a bare "network error".
//!
//! The `clickhouse` client streams an `INSERT`'s body through a channel to
//! the task that sends the request; when that task has already failed (the
//! server is gone) the client reports only `network error: channel closed`
//! and drops the task's real error; hyper does the same when the connection
//! dies before the request could be sent ("operation was canceled:
//! connection was not ready", no socket error under it). [`explain_cut`]
//! asks the same server again (`SELECT 1`) and reports what that request
//! met.

use std::error::Error as StdError;
use std::io::ErrorKind;
use std::time::Duration;

use ::clickhouse::error::Error as ClientError;
use ::clickhouse::Client;

/// How long the probe after a cut request may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many probes at most, while a probe is itself cut without a cause.
const PROBES: usize = 3;

/// The `clickhouse` client's placeholder for a request that ended before
/// its body was sent.
const CHANNEL_CLOSED: &str = "channel closed";

/// What the transport did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Nothing listens at the address (the server is down).
    Refused,
    /// The peer reset or aborted the connection.
    Reset,
    /// The peer closed the connection before the answer was complete.
    Closed,
    /// No answer in time.
    TimedOut,
    /// The TLS handshake failed (an untrusted certificate, a wrong name).
    Tls,
    /// Anything else on the way.
    Other,
}

impl Transport {
    /// The `kind` label of a [`SinkError`](super::SinkError) it caused.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Transport::Refused => "connection_refused",
            Transport::Reset => "connection_reset",
            Transport::Closed => "connection_closed",
            Transport::TimedOut => "timeout",
            Transport::Tls => "tls",
            Transport::Other => "network",
        }
    }

    /// What happened, from `err`'s chain: the socket's own error if one is
    /// in it, else the first cause that says. (hyper wraps a reset in
    /// "operation was canceled" when it happens while a request waits for
    /// its connection: the reset is the cause, seen in CI.)
    pub(crate) fn of(err: &(dyn StdError + 'static)) -> Transport {
        let chain = chain(err);
        let found = chain.iter().find_map(|c| Self::socket(*c)).or_else(|| chain.iter().find_map(|c| Self::one(*c)));
        found.unwrap_or(Transport::Other)
    }

    fn socket(c: &(dyn StdError + 'static)) -> Option<Transport> {
        let io = c.downcast_ref::<std::io::Error>()?;
        match io.kind() {
            ErrorKind::ConnectionRefused => Some(Transport::Refused),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => Some(Transport::Reset),
            ErrorKind::TimedOut => Some(Transport::TimedOut),
            ErrorKind::UnexpectedEof => Some(Transport::Closed),
            _ => None,
        }
    }

    fn one(c: &(dyn StdError + 'static)) -> Option<Transport> {
        if let Some(h) = c.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() {
                return Some(Transport::Closed);
            }
            if h.is_timeout() {
                return Some(Transport::TimedOut);
            }
        }
        if matches!(c.downcast_ref::<ClientError>(), Some(ClientError::TimedOut)) {
            return Some(Transport::TimedOut);
        }
        if c.is::<native_tls::Error>() {
            return Some(Transport::Tls);
        }
        match c.downcast_ref::<Cut>() {
            Some(Cut::Silent(_)) => Some(Transport::TimedOut),
            Some(Cut::Answered) => Some(Transport::Closed),
            _ => None,
        }
    }
}

/// `err` and its causes, outermost first.
fn chain<'e>(err: &'e (dyn StdError + 'static)) -> Vec<&'e (dyn StdError + 'static)> {
    let mut chain = Vec::new();
    let mut cause = Some(err);
    while let Some(c) = cause {
        chain.push(c);
        cause = c.source();
    }
    chain
}

/// A request cut before its body was sent, and what asking again found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Cut {
    /// The probe failed on the way (its causes say how).
    #[error("the request ended before its body was sent; asked again, the server: {0}")]
    Probe(#[source] ClientError),
    /// The probe got no answer either.
    #[error("the request ended before its body was sent; asked again, the server did not answer within {} s", .0.as_secs())]
    Silent(Duration),
    /// The server answers the probe: the connection was cut on the way.
    #[error("the connection closed before the request's body was sent; asked again, the server answers")]
    Answered,
}

/// Whether `err` hides its cause: the client's bare "channel closed", or
/// hyper's "canceled" with no socket error under it (the connection died
/// before the request was sent, and its task kept the reason).
pub(crate) fn is_cut(err: &ClientError) -> bool {
    match err {
        ClientError::Network(inner) => {
            let inner: &(dyn StdError + 'static) = &**inner;
            let chain = chain(inner);
            let bare = inner.to_string() == CHANNEL_CLOSED && inner.source().is_none();
            let canceled =
                chain.iter().any(|c| c.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_canceled))
                    && !chain.iter().any(|c| c.is::<std::io::Error>());
            bare || canceled
        }
        _ => false,
    }
}

/// `cut` ([`is_cut`]) with its cause, found by asking `client`'s server
/// `SELECT 1`: a failure on the way (connection refused, reset, TLS, ...)
/// is reported in a [`Cut`]; a server's refusal (an exception: wrong
/// password, unknown database) is returned as it is, classified as any.
/// A probe cut without a cause itself (the same race) is tried again, up to
/// [`PROBES`] times.
pub(crate) async fn explain_cut(cut: ClientError, client: &Client) -> ClientError {
    if !is_cut(&cut) {
        return cut;
    }
    let mut probes = 0;
    let found = loop {
        probes += 1;
        match tokio::time::timeout(PROBE_TIMEOUT, client.query("SELECT 1").execute()).await {
            Err(_) => break Cut::Silent(PROBE_TIMEOUT),
            Ok(Ok(())) => break Cut::Answered,
            Ok(Err(e)) if is_cut(&e) && probes < PROBES => continue,
            Ok(Err(e @ (ClientError::Network(_) | ClientError::TimedOut))) => break Cut::Probe(e),
            Ok(Err(server)) => return server,
        }
    };
    ClientError::Network(Box::new(found))
}
