//! The calls on the server that owns a key, and what their answers mean: [`Claim`] (an
//! acquisition attempt), [`Release`], [`Extend`] and [`RaiseFence`]; the exclusive lock's
//! requests in place, the shared locks' from `shared`.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::Cmd;

use crate::deploy::{Call, Notice, Place};
use crate::error::LockError;
use crate::lock::claim::with_line_keys;
pub(crate) use crate::lock::claim::{Claim, Holding};
use crate::lock::shared;
use crate::scripts;
use crate::wire::{Request, Wire, Written};

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
        /// The fencing token it was taken with.
        fence: u64,
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

/// When the lock is likely free, the attempt is what a bare lock costs: `SET NX PX` pipelined
/// with `INCR` of the fencing counter, two native commands in one round trip. If the `SET`
/// finds the key taken, or the lock was seen busy before, the acquire script answers instead:
/// it takes the lock and increments the counter in one atomic step, or reports the holder's
/// remaining lease, or the key's type when it is not a lock; it also recognises our own token,
/// so an attempt retried after a lost reply finds the lock it already took.
///
/// The pipelined `INCR` is not atomic with the `SET`, and need not be: nobody else can take the
/// key between the two while our lease runs, and a reply that arrives after the lease is not
/// used (see `fence` module docs), so tokens still follow the order of the holders.
impl Call for Claim<'_> {
    type Answer = Attempt;
    const ACKNOWLEDGED: bool = true;

    fn lease(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.ttl_ms))
    }

    async fn run<C: ConnectionLike + Send>(
        &self,
        wire: &mut Wire<'_, C>,
        at: Place,
    ) -> Result<Attempt, LockError> {
        if self.kind.is_shared() {
            let written: Written<Attempt> = wire.write(shared::attempt(self, at)).await?;
            return Ok(replicated(written.answer, written.short));
        }
        let fence_key = at.companion(self.fence_key);
        if self.likely_free {
            // The value says who holds the lock (see `scripts/queue.lua`); its fencing token is
            // known from the reply only, and written in by the first renewal.
            let value = Uncontended {
                token: self.token.as_str(),
                since: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis()),
                holder: self.holder,
            };
            let bytes = 96 + self.key.redis.len() + self.holder.len();
            let mut set = Cmd::with_capacity(6, bytes);
            set.arg("SET")
                .arg(self.key.redis)
                .arg(value)
                .arg("NX")
                .arg("PX")
                .arg(self.ttl_ms);
            let mut incr = Cmd::with_capacity(2, 8 + fence_key.len());
            incr.arg("INCR").arg(&*fence_key);
            let written: Written<(redis::Value, u64)> =
                wire.write(Request::pipeline([set, incr])).await?;
            let (set, fence) = written.answer;
            if set != redis::Value::Nil {
                return Ok(replicated(Attempt::Acquired(fence), written.short));
            }
        }
        let mut script = self.script(&scripts::ACQUIRE, at, &[], 1);
        script.arg(self.holder);
        let written: Written<Attempt> = wire.write(script).await?;
        Ok(replicated(written.answer, written.short))
    }
}

/// The value of a lock taken by the bare `SET NX`: `<token>|<since> - <holder>` (its fencing
/// token unknown until the reply), written straight into the command.
struct Uncontended<'a> {
    token: &'a str,
    since: u128,
    holder: &'a str,
}

impl redis::ToRedisArgs for Uncontended<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg_fmt(format_args!(
            "{}|{} - {}",
            self.token, self.since, self.holder
        ));
    }
}

/// `attempt`, unless too few replicas acknowledged the lock it took.
fn replicated(attempt: Attempt, short: Option<(usize, usize)>) -> Attempt {
    match (attempt, short) {
        (Attempt::Acquired(fence), Some((acked, required))) => Attempt::NotReplicated {
            fence,
            acked,
            required,
        },
        (attempt, _) => attempt,
    }
}

/// What a release did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Released {
    /// The token no longer held the lock (and no longer waits in line).
    NotHeld,
    /// Deleted; waiters were told.
    Freed,
    /// Handed to the longest waiter in line (its token, and its fencing token), who was told.
    HandedOff(String, u64),
    /// A share or a permit given back: handed to the waiters in line it made room for (their
    /// tokens and fencing tokens), who were told; `told_all` when `released` was published on
    /// the key's channel as well (nobody left in line).
    Shared {
        told_all: bool,
        granted: Vec<(String, u64)>,
    },
}

impl redis::FromRedisValue for Released {
    fn from_redis_value(v: redis::Value) -> Result<Self, redis::ParsingError> {
        if let redis::Value::Array(items) = v {
            let mut items = items.into_iter();
            let tag: i64 = redis::from_redis_value(items.next().unwrap_or(redis::Value::Nil))?;
            let rest: Vec<redis::Value> = items.collect();
            if tag == 2 {
                let (to, fence): (String, u64) =
                    redis::FromRedisValue::from_redis_value(redis::Value::Array(rest))?;
                return Ok(Self::HandedOff(to, fence));
            }
            let granted: Vec<(String, u64)> =
                redis::FromRedisValue::from_redis_value(redis::Value::Array(rest))?;
            return Ok(Self::Shared {
                told_all: tag == 1,
                granted,
            });
        }
        match i64::from_redis_value(v)? {
            0 => Ok(Self::NotHeld),
            1 => Ok(Self::Freed),
            other => Err(format!("unexpected release reply {other}").into()),
        }
    }
}

/// Compare-and-delete (or hand-off to the longest waiter); also takes a waiter that gives up out
/// of the line.
pub(crate) struct Release<'a> {
    pub(crate) lock: Holding<'a>,
    /// Whether waiters hear of it (not for the rollback of a failed Redlock attempt: waiters
    /// woken by another waiter's rollback would try, fail, roll back and wake the next one, for
    /// as long as the real holder keeps the lock).
    pub(crate) notify: bool,
}

impl Call for Release<'_> {
    type Answer = Released;

    async fn run<C: ConnectionLike + Send>(
        &self,
        wire: &mut Wire<'_, C>,
        at: Place,
    ) -> Result<Released, LockError> {
        if self.lock.kind.is_shared() {
            return wire
                .send(&shared::release(&self.lock, self.notify, at))
                .await;
        }
        let (key, token) = (self.lock.key.redis, self.lock.token);
        if !self.notify {
            let mut rollback = Request::script(&scripts::ROLLBACK, 1, 2, key.len() + 40);
            rollback.arg(key).arg(token);
            return wire.send(&rollback).await;
        }
        let mut release = with_line_keys(&scripts::RELEASE, at, key, self.lock.fence_key, &[], 3);
        release.arg(token);
        // `PUBLISH` when the key was released is the script's default.
        if at.notice != Notice::Publish {
            release.arg(at.notice.command());
            if at.notice == Notice::PublishAlways {
                release.arg("always");
            }
        }
        wire.send(&release).await
    }
}

/// Compare-and-pexpire: `true` when renewed, `false` when the token no longer holds the lock; a
/// renewal that too few replicas acknowledged is [`LockError::NotReplicated`] (the lease is not
/// counted as renewed).
pub(crate) struct Extend<'a> {
    pub(crate) lock: Holding<'a>,
    pub(crate) ttl_ms: u64,
    /// The holder's fencing token, to be written into an exclusive lock's value that does not
    /// show it yet (the first renewal of a lock taken by a bare `SET NX`).
    pub(crate) fence: Option<u64>,
}

impl Call for Extend<'_> {
    type Answer = bool;
    const ACKNOWLEDGED: bool = true;

    fn lease(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.ttl_ms))
    }

    async fn run<C: ConnectionLike + Send>(
        &self,
        wire: &mut Wire<'_, C>,
        _: Place,
    ) -> Result<bool, LockError> {
        let key = self.lock.key;
        let request = if self.lock.kind.is_shared() {
            shared::extend(&self.lock, self.ttl_ms)
        } else {
            let mut request = Request::script(&scripts::EXTEND, 1, 4, key.redis.len() + 80);
            request.arg(key.redis).arg(self.lock.token).arg(self.ttl_ms);
            if let Some(fence) = self.fence {
                request.arg(fence);
            }
            request
        };
        let written: Written<i64> = wire.write(request).await?;
        match written.short {
            Some((acknowledged, required)) if written.answer == 1 => {
                Err(LockError::NotReplicated {
                    key: key.name().to_owned(),
                    acknowledged,
                    required,
                })
            }
            _ => Ok(written.answer == 1),
        }
    }
}

/// Redlock fencing: raises a master's fencing counter to at least `token`; answers the
/// counter's value afterwards.
pub(crate) struct RaiseFence<'a> {
    pub(crate) fence_key: &'a str,
    pub(crate) token: u64,
    pub(crate) ttl_ms: u64,
}

impl Call for RaiseFence<'_> {
    type Answer = u64;

    fn lease(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.ttl_ms))
    }

    async fn run<C: ConnectionLike + Send>(
        &self,
        wire: &mut Wire<'_, C>,
        at: Place,
    ) -> Result<u64, LockError> {
        let fence_key = at.companion(self.fence_key);
        let mut request = Request::script(&scripts::RAISE_FENCE, 1, 2, fence_key.len() + 24);
        request.arg(&*fence_key).arg(self.token);
        wire.send(&request).await
    }
}
