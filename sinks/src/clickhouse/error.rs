//! Errors of the ClickHouse sink, classified as retryable or permanent.

use std::time::Duration;

/// A failed ClickHouse operation.
///
/// [`SinkError::Retryable`] means the same request may succeed later without
/// any change on our side (the server is down, overloaded, slow, or the
/// network broke); [`SinkError::Permanent`] means retrying cannot help (bad
/// SQL, unknown table or column, wrong types, wrong credentials, invalid
/// configuration, a row that cannot be encoded).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Infrastructure failure: retry later.
    #[error("retryable ClickHouse error ({kind}) during {op}: {message}")]
    Retryable {
        /// Short class of the failure, used as the `kind` metric label.
        kind: &'static str,
        /// What we were doing (`migrate`, `insert coverage_shard_daily`, ...).
        op: String,
        /// The server's or the client's message (never contains the password).
        message: String,
    },
    /// A failure retrying cannot fix.
    #[error("permanent ClickHouse error ({kind}) during {op}: {message}")]
    Permanent {
        /// Short class of the failure, used as the `kind` metric label.
        kind: &'static str,
        /// What we were doing.
        op: String,
        /// The server's or the client's message (never contains the password).
        message: String,
    },
}

impl SinkError {
    /// Whether the same request may succeed if repeated later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Retryable { .. })
    }

    /// The short class of the failure (`connection_refused`,
    /// `connection_reset`, `connection_closed`, `tls`, `network` (another
    /// transport failure), `timeout`, `server`,
    /// `too_many_parts`, `syntax`, `unknown_table`, `type_mismatch`, `auth`,
    /// `client`, `config`, ...): a bounded set, safe as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkError::Retryable { kind, .. } | SinkError::Permanent { kind, .. } => kind,
        }
    }

    /// A permanent error caused by our own configuration or input.
    pub(crate) fn permanent(kind: &'static str, op: impl Into<String>, message: impl Into<String>) -> Self {
        SinkError::Permanent { kind, op: op.into(), message: message.into() }
    }

    /// The request did not finish within the configured timeout.
    pub(crate) fn timeout(op: impl Into<String>, after: Duration) -> Self {
        SinkError::Retryable {
            kind: "timeout",
            op: op.into(),
            message: format!("no answer within {} s", after.as_secs_f64()),
        }
    }

    /// Classifies an error of the `clickhouse` client.
    pub(crate) fn from_client(op: impl Into<String>, err: ::clickhouse::error::Error) -> Self {
        use ::clickhouse::error::Error as E;
        let op = op.into();
        let message = crate::tls::with_causes(&err);
        let (retryable, kind) = match &err {
            // Refused, reset, closed, timed out, TLS: the cause names it.
            E::Network(_) => (true, super::transport::Transport::of(&err).kind()),
            E::TimedOut => (true, "timeout"),
            // A cut-off or garbled response body: the transport, not the data.
            E::Decompression(_) => (true, "network"),
            E::BadResponse(text) => classify_server(text),
            E::InvalidParams(_) | E::Unsupported(_) => (false, "config"),
            // Encoding or decoding rows: our types do not match the schema.
            _ => (false, "client"),
        };
        if retryable {
            SinkError::Retryable { kind, op, message }
        } else {
            SinkError::Permanent { kind, op, message }
        }
    }
}

/// Error codes (`Code: N.` in a ClickHouse exception) that retrying cannot fix.
const PERMANENT_CODES: &[(u32, &str)] = &[
    (62, "syntax"),          // SYNTAX_ERROR
    (60, "unknown_table"),   // UNKNOWN_TABLE
    (81, "unknown_table"),   // UNKNOWN_DATABASE
    (16, "unknown_column"),  // NO_SUCH_COLUMN_IN_TABLE
    (47, "unknown_column"),  // UNKNOWN_IDENTIFIER
    (8, "unknown_column"),   // THERE_IS_NO_COLUMN
    (10, "unknown_column"),  // NOT_FOUND_COLUMN_IN_BLOCK
    (352, "unknown_column"), // AMBIGUOUS_COLUMN_NAME
    (20, "type_mismatch"),   // NUMBER_OF_COLUMNS_DOESNT_MATCH
    (53, "type_mismatch"),   // TYPE_MISMATCH
    (70, "type_mismatch"),   // CANNOT_CONVERT_TYPE
    (386, "type_mismatch"),  // NO_COMMON_TYPE
    (43, "type_mismatch"),   // ILLEGAL_TYPE_OF_ARGUMENT
    (44, "type_mismatch"),   // ILLEGAL_COLUMN
    (6, "type_mismatch"),    // CANNOT_PARSE_TEXT
    (27, "type_mismatch"),   // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    (33, "type_mismatch"),   // CANNOT_READ_ALL_DATA (RowBinary shorter than the columns)
    (38, "type_mismatch"),   // CANNOT_PARSE_DATE
    (41, "type_mismatch"),   // CANNOT_PARSE_DATETIME
    (117, "type_mismatch"),  // INCORRECT_DATA
    (36, "bad_query"),       // BAD_ARGUMENTS
    (46, "bad_query"),       // UNKNOWN_FUNCTION
    (48, "bad_query"),       // NOT_IMPLEMENTED
    (57, "bad_query"),       // TABLE_ALREADY_EXISTS
    (73, "bad_query"),       // UNKNOWN_FORMAT
    (115, "bad_query"),      // UNKNOWN_SETTING
    (164, "auth"),           // READONLY
    (192, "auth"),           // UNKNOWN_USER
    (193, "auth"),           // WRONG_PASSWORD
    (194, "auth"),           // REQUIRED_PASSWORD
    (195, "auth"),           // IP_ADDRESS_NOT_ALLOWED
    (291, "auth"),           // DATABASE_ACCESS_DENIED
    (497, "auth"),           // ACCESS_DENIED
    (516, "auth"),           // AUTHENTICATION_FAILED
];

/// Error codes that name a transient condition (listed for the `kind` label;
/// any code not in [`PERMANENT_CODES`] is retried).
const RETRYABLE_CODES: &[(u32, &str)] = &[
    (252, "too_many_parts"), // TOO_MANY_PARTS
    (159, "timeout"),        // TIMEOUT_EXCEEDED
    (209, "timeout"),        // SOCKET_TIMEOUT
    (210, "network"),        // NETWORK_ERROR
    (3, "network"),          // UNEXPECTED_END_OF_FILE
    (32, "network"),         // ATTEMPT_TO_READ_AFTER_EOF
    (202, "overloaded"),     // TOO_MANY_SIMULTANEOUS_QUERIES
    (203, "overloaded"),     // NO_FREE_CONNECTION
    (241, "overloaded"),     // MEMORY_LIMIT_EXCEEDED
    (243, "overloaded"),     // NOT_ENOUGH_SPACE
    (242, "server"),         // TABLE_IS_READ_ONLY (replica lost its keeper session)
    (225, "server"),         // NO_ZOOKEEPER
    (999, "server"),         // KEEPER_EXCEPTION
    (319, "server"),         // UNKNOWN_STATUS_OF_INSERT
    (236, "server"),         // ABORTED
    (394, "server"),         // QUERY_WAS_CANCELLED
];

/// Classifies a server answer: `(retryable, kind)`.
///
/// The client hands us the exception text (`Code: 62. DB::Exception: ...`),
/// a bare exception code, or, for an empty body, `"<status> <reason>"`.
/// An exception code decides; without one, HTTP 5xx, 408 and 429 and
/// anything unrecognised (a proxy's error page) count as infrastructure.
pub(crate) fn classify_server(text: &str) -> (bool, &'static str) {
    if text.to_ascii_lowercase().contains("too many parts") {
        return (true, "too_many_parts");
    }
    if let Some(code) = exception_code(text) {
        if let Some((_, kind)) = PERMANENT_CODES.iter().find(|(c, _)| *c == code) {
            return (false, kind);
        }
        if let Some((_, kind)) = RETRYABLE_CODES.iter().find(|(c, _)| *c == code) {
            return (true, kind);
        }
        return (true, "server");
    }
    match http_status(text) {
        Some(401 | 403) => (false, "auth"),
        Some(404) => (false, "bad_query"),
        Some(408) => (true, "timeout"),
        Some(429) => (true, "overloaded"),
        Some(400..=499) => (false, "bad_query"),
        _ => (true, "server"),
    }
}

/// The `N` of `Code: N.` (or of a bare number, as sent in the
/// `X-ClickHouse-Exception-Code` header when the body is empty).
fn exception_code(text: &str) -> Option<u32> {
    let t = text.trim();
    if !t.is_empty() && t.len() <= 5 && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    let rest = &t[t.find("Code:")? + "Code:".len()..];
    let digits: String = rest.trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The status of a `"503 Service Unavailable"`-style message.
fn http_status(text: &str) -> Option<u16> {
    let t = text.trim();
    let head = t.get(..3)?;
    if head.bytes().all(|b| b.is_ascii_digit()) && t.as_bytes().get(3).is_none_or(|b| *b == b' ') {
        head.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn server_exceptions_are_classified_by_code() {
        // Texts as ClickHouse 18.16 sends them over HTTP.
        let syntax = "Code: 62, e.displayText() = DB::Exception: Syntax error: failed at position 1";
        assert_eq!(classify_server(syntax), (false, "syntax"));
        let table =
            "Code: 60, e.displayText() = DB::Exception: Table d06.nope doesn't exist., e.what() = DB::Exception";
        assert_eq!(classify_server(table), (false, "unknown_table"));
        // Current ClickHouse wording.
        let column = "Code: 16. DB::Exception: No such column foo in table d06.plan_daily. (NO_SUCH_COLUMN_IN_TABLE)";
        assert_eq!(classify_server(column), (false, "unknown_column"));
        let auth = "Code: 516. DB::Exception: default: Authentication failed. (AUTHENTICATION_FAILED)";
        assert_eq!(classify_server(auth), (false, "auth"));
        let parts =
            "Code: 252. DB::Exception: Too many parts (300). Merges are processing significantly slower than inserts";
        assert_eq!(classify_server(parts), (true, "too_many_parts"));
        let memory = "Code: 241. DB::Exception: Memory limit (for query) exceeded";
        assert_eq!(classify_server(memory), (true, "overloaded"));
        // A code we do not list is a server-side condition: retried.
        assert_eq!(classify_server("Code: 1000. DB::Exception: Poco exception"), (true, "server"));
    }

    #[test]
    fn bare_codes_and_statuses_are_classified() {
        assert_eq!(classify_server("62"), (false, "syntax"));
        assert_eq!(classify_server("252"), (true, "too_many_parts"));
        assert_eq!(classify_server("503 Service Unavailable"), (true, "server"));
        assert_eq!(classify_server("502 Bad Gateway"), (true, "server"));
        assert_eq!(classify_server("401 Unauthorized"), (false, "auth"));
        assert_eq!(classify_server("429 Too Many Requests"), (true, "overloaded"));
        assert_eq!(classify_server("400 Bad Request"), (false, "bad_query"));
        assert_eq!(classify_server("<html>bad gateway</html>"), (true, "server"));
        assert_eq!(classify_server("too many parts in partition"), (true, "too_many_parts"));
    }

    #[test]
    fn client_errors_are_classified() {
        use ::clickhouse::error::Error as E;
        let e = SinkError::from_client("insert plan_daily", E::Network("connection refused".into()));
        assert!(e.is_retryable());
        assert_eq!(e.kind(), "network");
        let e = SinkError::from_client("q", E::TimedOut);
        assert!(e.is_retryable());
        let e = SinkError::from_client("q", E::NotEnoughData);
        assert!(!e.is_retryable());
        assert_eq!(e.kind(), "client");
        let e = SinkError::from_client("q", E::BadResponse("Code: 53. DB::Exception: Type mismatch".into()));
        assert!(!e.is_retryable());
        assert_eq!(e.kind(), "type_mismatch");
        assert_eq!(
            e.to_string(),
            "permanent ClickHouse error (type_mismatch) during q: bad response: Code: 53. DB::Exception: Type mismatch"
        );
        assert!(SinkError::timeout("q", Duration::from_secs(3)).is_retryable());
    }
}
