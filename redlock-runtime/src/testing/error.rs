//! The errors of the testing support.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use super::install_hint;

/// Errors of the testing support.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The server binary (`redis-server`, or the one `REDIS_SERVER_BIN` names) could not be
    /// found.
    #[error(
        "`{binary}` not found ({detail}); {hint}, or set REDIS_SERVER_BIN to its path",
        hint = install_hint(.binary)
    )]
    MissingBinary {
        /// The binary looked for: `redis-server`, or the value of `REDIS_SERVER_BIN`.
        binary: String,
        /// Where it was looked for.
        detail: String,
    },
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The server was started but did not answer `PING` in time.
    #[error(
        "`redis-server` did not answer PING within {waited:?} (last attempt: {last_error}); \
         end of its log:\n{log_tail}"
    )]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// What the last readiness probe saw.
        last_error: String,
        /// The last lines of the server's log file.
        log_tail: String,
    },
    /// The server process exited while starting.
    #[error("`redis-server` exited during startup ({status}); end of its log:\n{log_tail}")]
    Exited {
        /// The exit status of the process.
        status: ExitStatus,
        /// The last lines of the server's log file.
        log_tail: String,
    },
    /// Redis answered with an error reply (the message, e.g. `WRONGTYPE ...`).
    #[error("redis error reply: {0}")]
    Reply(String),
    /// The server did not answer within the timeout (for example while paused).
    #[error("no reply from redis-server within {waited:?}")]
    Timeout {
        /// The timeout that elapsed.
        waited: Duration,
    },
    /// The server sent something the `redis` client could not parse.
    #[error("invalid reply from redis-server: {0}")]
    Protocol(String),
    /// The server is stopped (see [`RedisServer::stop`](super::RedisServer::stop)).
    #[error("redis-server is stopped")]
    Stopped,
    /// A network namespace could not be made, changed or entered (see
    /// [`Namespace`](super::Namespace)): the machine refuses them, or an `ip` command failed.
    #[error("network namespace: {detail}")]
    Namespace {
        /// The command that failed and what it printed.
        detail: String,
    },
}

impl ServerError {
    pub(super) fn io(context: impl Into<String>, source: io::Error) -> Self {
        ServerError::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether this error is a [`ServerError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, ServerError::Timeout { .. })
    }

    /// Whether the server failed to start because its port was taken.
    pub(super) fn is_addr_in_use(&self) -> bool {
        matches!(self, ServerError::Exited { log_tail, .. } if log_tail.contains("Address already in use"))
    }
}
