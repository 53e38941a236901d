//! The one error type of the crate.

use std::time::Duration;

use crate::kind::LockKind;

/// Why a lock operation failed.
///
/// Every variant names the lock key it concerns (without the manager's prefix), so a log line or an
/// HTTP error body says which lock was involved. Redis errors are never turned into `false`: a
/// failed round trip is a [`LockError::Redis`], distinct from a busy lock ([`LockError::Timeout`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lock stayed busy for the whole `wait`.
    #[error("lock `{key}` is busy: not acquired within {}", humanize(*waited))]
    Timeout {
        /// The lock key.
        key: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The lock was lost while held: its token is gone from Redis, or no renewal could be
    /// confirmed before the lease ran out. The locked body was stopped.
    #[error("lock `{key}` was lost while held: the lease ran out or the key was removed")]
    Lost {
        /// The lock key.
        key: String,
    },
    /// A Redlock acquisition reached fewer nodes than the quorum, or too late to be valid.
    #[error("lock `{key}`: quorum not reached ({reached} of {needed} nodes)")]
    QuorumNotReached {
        /// The lock key.
        key: String,
        /// Nodes on which the lock was taken in time.
        reached: usize,
        /// Nodes needed (N/2 + 1).
        needed: usize,
    },
    /// Redis could not be reached, did not answer in time, or answered with an error.
    #[error("lock `{key}`: redis error: {source}")]
    Redis {
        /// The lock key.
        key: String,
        /// The error from the Redis client.
        #[source]
        source: redis::RedisError,
    },
    /// The lock key holds a value of another type (a list, a hash...), so it is not a lock.
    #[error(
        "lock `{key}`: the redis key holds a {found}, not a lock; choose another key or prefix"
    )]
    WrongType {
        /// The lock key.
        key: String,
        /// The Redis type found at the key.
        found: String,
    },
    /// The key is in use as another kind of lock than the one asked for: an exclusive lock, a
    /// read-write lock, or a semaphore of another number of permits. One key is one kind of
    /// lock; nothing was changed.
    #[error(
        "lock `{key}` is in use as {}, so it cannot be taken as {}: one key is one kind of lock; \
         use another key for the {asked}",
        a(*found),
        a(*asked)
    )]
    OtherKind {
        /// The lock key.
        key: String,
        /// What the key is in use as (a read-write lock shows as [`LockKind::Read`]).
        found: LockKind,
        /// What the caller asked for.
        asked: LockKind,
    },
    /// A locked call asked for the write side of a read-write lock that an enclosing locked call
    /// of the same task holds for reading: it would wait for its own read share, so it fails at
    /// once. (A read inside a write, or inside a read, shares what the task holds.)
    #[error(
        "lock `{key}` is held for reading by this task: a write lock inside the read would wait \
         for itself; take the key with `mode = \"write\"` (`LockOptions::write`) in the outer call"
    )]
    Upgrade {
        /// The lock key.
        key: String,
    },
    /// A locked call (`with_lock`, `with_locks`, the attribute) asked for a key that a plain
    /// [`LockGuard`](crate::LockGuard) of the same task holds: it cannot share a guard it does
    /// not see, and waiting would wait for itself, so it fails at once.
    #[error(
        "lock `{key}` is already held by a `LockGuard` of this task: a locked call nested under \
         it would wait for itself; run the outer work with `with_lock` (nested locked calls \
         share its lock) or release the guard first"
    )]
    HeldByThisTask {
        /// The lock key.
        key: String,
    },
    /// Fewer replicas than the manager requires
    /// ([`LockManagerBuilder::replica_acks`](crate::LockManagerBuilder::replica_acks))
    /// acknowledged an acquire or a renewal in time: the lock was given back (acquire) or not
    /// renewed (renewal).
    #[error(
        "lock `{key}`: {acknowledged} of the {required} replicas required acknowledged the write \
         in time"
    )]
    NotReplicated {
        /// The lock key.
        key: String,
        /// Replicas that acknowledged.
        acknowledged: usize,
        /// Replicas required.
        required: usize,
    },
    /// The manager or the lock options are invalid (bad URL, zero ttl, ...).
    #[error("invalid lock configuration: {0}")]
    Config(String),
}

impl LockError {
    /// The lock key this error concerns, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Timeout { key, .. }
            | Self::Lost { key }
            | Self::QuorumNotReached { key, .. }
            | Self::Redis { key, .. }
            | Self::WrongType { key, .. }
            | Self::HeldByThisTask { key }
            | Self::OtherKind { key, .. }
            | Self::Upgrade { key }
            | Self::NotReplicated { key, .. } => Some(key),
            Self::Config(_) => None,
        }
    }

    /// True for [`LockError::Timeout`]: the lock was busy, nothing failed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// True for [`LockError::Lost`].
    pub fn is_lost(&self) -> bool {
        matches!(self, Self::Lost { .. })
    }

    pub(crate) fn redis(key: &str, source: redis::RedisError) -> Self {
        Self::Redis {
            key: key.to_owned(),
            source,
        }
    }

    /// A Redis round trip that did not finish within `limit`.
    pub(crate) fn no_answer(key: &str, limit: Duration) -> Self {
        Self::redis(
            key,
            timed_out(&format!("redis did not answer within {}", humanize(limit))),
        )
    }
}

/// `kind` with its article, as a message names it; a read-write lock for either side.
fn a(kind: LockKind) -> String {
    match kind {
        LockKind::Exclusive => "an exclusive lock".to_owned(),
        LockKind::Read | LockKind::Write => "a read-write lock".to_owned(),
        other => format!("a {other}"),
    }
}

/// A client error for a step that did not finish in time (`what` says which).
pub(crate) fn timed_out(what: &str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        what.to_owned(),
    ))
}

impl LockError {
    /// Whether the connection broke under the request (reset, broken pipe, closed) while the
    /// server was reachable before: the connection is replaced at once, so an idempotent request
    /// may be sent again right away.
    pub(crate) fn is_connection_dropped(&self) -> bool {
        matches!(self, Self::Redis { source, .. }
            if source.is_connection_dropped() && !source.is_connection_refusal())
    }

    /// Whether retrying later may succeed (connection trouble), as opposed to a definite answer.
    ///
    /// Refused credentials are definite: the client library asks to reconnect after them, but a
    /// wrong password stays wrong, so waiting for a lock must not retry it until the deadline.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Redis { source, .. } => {
                source.kind() != redis::ErrorKind::AuthenticationFailed
                    && (source.is_io_error()
                        || source.is_timeout()
                        || source.is_connection_dropped()
                        || source.is_connection_refusal()
                        || source.is_unrecoverable_error())
            }
            _ => false,
        }
    }
}

/// `1.5s`, `250ms`: durations in messages, rounded to the millisecond.
fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms >= 1000 {
        format!("{:.3}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_key_and_a_readable_duration() {
        let e = LockError::Timeout {
            key: "account:7".into(),
            waited: Duration::from_millis(4000),
        };
        assert_eq!(
            e.to_string(),
            "lock `account:7` is busy: not acquired within 4s"
        );
        let e = LockError::Timeout {
            key: "k".into(),
            waited: Duration::from_millis(250),
        };
        assert_eq!(e.to_string(), "lock `k` is busy: not acquired within 250ms");
        assert_eq!(e.key(), Some("k"));
        assert!(e.is_timeout());
    }

    #[test]
    fn refused_credentials_are_not_transient() {
        let auth = redis::RedisError::from((
            redis::ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        assert!(!LockError::redis("k", auth).is_transient());
        let refused =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(LockError::redis("k", refused).is_transient());
    }

    #[test]
    fn a_timed_out_round_trip_is_transient() {
        let e = LockError::no_answer("k", Duration::from_millis(1500));
        assert!(e.is_transient());
        assert!(e.to_string().contains("within 1.500s"), "{e}");
    }
}
