//! The Lua scripts that make every lock operation one atomic round trip.
//!
//! They are sent with `EVALSHA`. A new connection loads every script in one round trip
//! ([`load_all`]), so no lock operation pays for a `NOSCRIPT` reply on a fresh server; after a
//! restart or `SCRIPT FLUSH`, `redis::Script` loads a missing script again by itself.

use std::sync::LazyLock;

use redis::Script;

/// `SET NX PX` plus the fencing counter; the remaining lease when busy.
pub(crate) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE_LUA));
const ACQUIRE_LUA: &str = include_str!("scripts/acquire.lua");

/// Compare-and-delete that publishes a release notice.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_LUA));
const RELEASE_LUA: &str = include_str!("scripts/release.lua");

/// Redlock release on one master: compare-and-delete, release notice in any case.
pub(crate) static RELEASE_QUORUM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/release_quorum.lua")));

/// Undo of a failed Redlock attempt on one master: compare-and-delete without a notice.
pub(crate) static ROLLBACK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/rollback.lua")));

/// Redlock fencing: raise a master's counter to the token handed out.
pub(crate) static RAISE_FENCE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/raise_fence.lua")));

/// Redis Cluster release: compare-and-delete with a notice on the key's shard channel.
#[cfg(feature = "cluster")]
pub(crate) static RELEASE_SHARDED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/release_sharded.lua")));

/// Compare-and-pexpire.
pub(crate) static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(EXTEND_LUA));
const EXTEND_LUA: &str = include_str!("scripts/extend.lua");

/// `SCRIPT LOAD`s every script in one pipeline.
///
/// A server that refuses (an ACL user without `SCRIPT LOAD`, say) is left to the per-script
/// fallback; a server that does not answer is an error, so the first operation on an
/// unreachable server fails within one operation timeout, not two.
pub(crate) async fn load_all<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    limit: std::time::Duration,
) -> Result<(), crate::LockError> {
    let mut pipe = redis::pipe();
    for code in [ACQUIRE_LUA, RELEASE_LUA, EXTEND_LUA] {
        pipe.cmd("SCRIPT").arg("LOAD").arg(code).ignore();
    }
    let load = async {
        match pipe.query_async::<()>(conn).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_io_error() || e.is_timeout() || e.is_unrecoverable_error() => {
                Err(crate::LockError::redis(key, e))
            }
            Err(e) => {
                tracing::debug!(error = %e, "loading the scripts was refused");
                Ok(())
            }
        }
    };
    crate::deadline::within(limit, key, load).await
}

/// A lock as its holder names it: what release and extend act on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Holding<'a> {
    /// The lock key as the caller named it (for errors).
    pub(crate) key: &'a str,
    /// The lock's Redis key (prefix included).
    pub(crate) redis_key: &'a str,
    /// The holder's token.
    pub(crate) token: &'a str,
}

/// One acquisition attempt: which lock, for whom, for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim<'a> {
    /// The lock key as the caller named it (for errors).
    pub(crate) key: &'a str,
    /// The lock's Redis key (prefix included).
    pub(crate) redis_key: &'a str,
    /// The fencing counter's Redis key.
    pub(crate) fence_key: &'a str,
    /// The holder's token.
    pub(crate) token: &'a str,
    /// The lease in milliseconds.
    pub(crate) ttl_ms: u64,
    /// For a locked call: the tag that ends the tokens of this task's plain guards, so that a
    /// key held by one of them is reported ([`Attempt::HeldByThisTask`]) instead of waited for.
    pub(crate) caller: Option<&'a str>,
    /// Whether the lock is expected to be free (no holder seen yet): then the attempt is a bare
    /// `SET NX PX` pipelined with the counter's `INCR`, and the script runs only if that fails.
    pub(crate) likely_free: bool,
}

impl<'a> Claim<'a> {
    /// The lock this attempt would hold.
    pub(crate) fn holding(&self) -> Holding<'a> {
        Holding {
            key: self.key,
            redis_key: self.redis_key,
            token: self.token,
        }
    }
}

/// What an acquisition attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// Taken, with this fencing token.
    Acquired(u64),
    /// Held by someone else for about this many more milliseconds (`None`: no expiry set).
    Busy(Option<u64>),
    /// Held by a plain guard of the calling task (see [`Claim::caller`]).
    HeldByThisTask,
    /// Taken, but fewer replicas than required acknowledged it: to be given back.
    NotReplicated {
        /// Replicas that acknowledged.
        acked: usize,
        /// Replicas required.
        required: usize,
    },
    /// The key holds another Redis type.
    WrongType(String),
}

impl redis::FromRedisValue for Attempt {
    fn from_redis_value(v: redis::Value) -> Result<Self, redis::ParsingError> {
        let (tag, value): (i64, redis::Value) = redis::FromRedisValue::from_redis_value(v)?;
        match tag {
            1 => Ok(Self::Acquired(redis::from_redis_value(value)?)),
            0 => {
                let pttl: i64 = redis::from_redis_value(value)?;
                Ok(Self::Busy(u64::try_from(pttl).ok()))
            }
            2 => Ok(Self::WrongType(redis::from_redis_value(value)?)),
            3 => Ok(Self::HeldByThisTask),
            other => Err(format!("unexpected acquire reply tag {other}").into()),
        }
    }
}
