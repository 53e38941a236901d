//! Where keys live: the kinds of deployment a manager can run on, and nothing about locks.
//!
//! A deployment runs a primitive's [`Call`] on the server that owns a key and returns the
//! answer (for Redlock, every master's answer), subscribes to release notices, and pings. What
//! the answers mean (taken, busy, lost, a quorum reached) is the primitive's business (see
//! `lock`), so a new primitive adds calls and their meaning without touching any deployment:
//!
//! | kind | built with | module | a call runs on |
//! |---|---|---|---|
//! | one server (or a primary used directly) | `LockManager::new(url)` | `server` | that server |
//! | Redlock over N independent masters | `LockManager::redlock(urls)` | `redlock` | every master in parallel, each within the node timeout |
//! | Redis Cluster (feature `cluster`) | `LockManager::cluster(urls)` | [`cluster`](crate::cluster) | the master of the key's slot |
//! | master named by Sentinel (feature `sentinel`) | `LockManager::sentinel(urls, name)` | [`sentinel`](crate::sentinel) | the current master, again after a failover |
//!
//! A call learns where it runs from a [`Place`]: which companion keys (a fencing counter, say)
//! share the key's slot, and how release notices are published there.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use redis::aio::ConnectionLike;

use crate::error::LockError;
use crate::notify::{Notices, Subscription};
use crate::wire::Wire;

#[cfg(feature = "cluster")]
pub mod cluster;
pub(crate) mod redlock;
#[cfg(feature = "sentinel")]
pub mod sentinel;
pub(crate) mod server;
#[cfg(feature = "cluster")]
mod slot;

use redlock::Masters;
use server::Server;

/// A key a call is about: the Redis key, whose part after `name_at` is the key as the caller
/// named it (what errors and logs show).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key<'a> {
    pub(crate) redis: &'a str,
    pub(crate) name_at: usize,
}

impl<'a> Key<'a> {
    /// The key as the caller named it.
    pub(crate) fn name(&self) -> &'a str {
        &self.redis[self.name_at..]
    }
}

/// One operation of a primitive on the server that owns a key: its requests and how their
/// answers read.
pub(crate) trait Call: Sync {
    type Answer: Send;

    /// Whether this call writes what replicas must acknowledge, when a manager asks for
    /// replica acknowledgement (acquires and renewals do; releases do not).
    const ACKNOWLEDGED: bool = false;

    /// The lease the call is about, which bounds a Redlock master's answer (a tenth of it);
    /// `None`: the operation timeout does.
    fn lease(&self) -> Option<Duration> {
        None
    }

    /// Runs the call over `wire`, a connection to the server that owns the key.
    fn run<C: ConnectionLike + Send>(
        &self,
        wire: &mut Wire<'_, C>,
        at: Place,
    ) -> impl Future<Output = Result<Self::Answer, LockError>> + Send;
}

/// Where a call runs: what the deployment asks of keys and notices there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place {
    /// A Redis Cluster slot: keys touched together must share it.
    slot: Option<u16>,
    /// How a release notice is published here.
    pub(crate) notice: Notice,
    /// Whether a key's line of waiters here is kept in order, with hand-offs (not on a Redlock
    /// master: a line is one server's, and a quorum of lines is not one line).
    pub(crate) hand_offs: bool,
}

/// How a release notice is published where a call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    /// `PUBLISH` when the key was released.
    Publish,
    /// `PUBLISH` even when this server did not hold the key: a Redlock master, one of which
    /// the waiters listen on.
    PublishAlways,
    /// `SPUBLISH` on the key's shard channel (Redis Cluster).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    SPublish,
}

impl Notice {
    /// The command that publishes the notice.
    pub(crate) fn command(self) -> &'static str {
        match self {
            Self::Publish | Self::PublishAlways => "PUBLISH",
            Self::SPublish => "SPUBLISH",
        }
    }
}

impl Place {
    pub(crate) const SERVER: Place = Place {
        slot: None,
        notice: Notice::Publish,
        hand_offs: true,
    };

    /// A companion of the key, named from `base`, that lives where the key does: `base`
    /// itself, or on a cluster `<base>:{<tag>}` in the key's slot.
    pub(crate) fn companion<'b>(&self, base: &'b str) -> Cow<'b, str> {
        match self.slot {
            None => Cow::Borrowed(base),
            #[cfg(feature = "cluster")]
            Some(slot) => Cow::Owned(slot::companion(base, slot)),
            #[cfg(not(feature = "cluster"))]
            Some(_) => Cow::Borrowed(base),
        }
    }

    /// Whether a script must be given every key it touches (a cluster routes by them and
    /// checks that they share a slot); elsewhere a script may name companions itself.
    pub(crate) fn declares_every_key(&self) -> bool {
        self.slot.is_some()
    }

    /// A companion named `<base>:<kind>:<key>` of `key` (a Redis key), that lives where the
    /// key does (on a cluster, with a tag of the key's slot before the key), written straight
    /// into a command.
    pub(crate) fn companion_of<'b>(
        &self,
        base: &'b str,
        kind: &'static str,
        key: &'b str,
    ) -> Companion<'b> {
        Companion {
            base,
            kind,
            key,
            slot: self.slot,
        }
    }
}

/// A companion key of another key; see [`Place::companion_of`].
pub(crate) struct Companion<'a> {
    base: &'a str,
    kind: &'static str,
    key: &'a str,
    slot: Option<u16>,
}

/// `<base>:<kind>:<key>`; on a cluster `<base>:<kind>:{<tag>}:<key>`, the tag before the key:
/// the first `{...}` of a name decides its slot, and a key may hold braces of its own (an
/// unclosed `{`, an empty `{}`) that would otherwise pair with the tag's.
impl std::fmt::Display for Companion<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:", self.base, self.kind)?;
        match self.slot {
            #[cfg(feature = "cluster")]
            Some(slot) => write!(f, "{{{}}}:", slot::slot_tag(slot))?,
            _ => {}
        }
        f.write_str(self.key)
    }
}

impl redis::ToRedisArgs for Companion<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg_fmt(self);
    }
}

/// What a call answered: one server's answer, or each Redlock master's.
pub(crate) enum Replies<'a, T> {
    One(Result<T, LockError>),
    /// In the order of the masters.
    Each(&'a Masters, Vec<Result<T, LockError>>),
}

/// The deployment behind a manager.
// One per manager, behind its `Arc`: never moved around, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Deployment {
    /// One Redis server (or a primary with replicas, used through the primary).
    Single(Server),
    /// Redlock: independent masters, a majority of which must agree.
    Redlock(Masters),
    /// A Redis Cluster: each key on the master of its slot.
    #[cfg(feature = "cluster")]
    Cluster(cluster::Cluster),
    /// The master named by Redis Sentinel, looked up again after a failover.
    #[cfg(feature = "sentinel")]
    Sentinel(sentinel::Sentinel),
}

impl Deployment {
    /// A description for `Debug` output.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Single(server) => server.addr(),
            Self::Redlock(masters) => masters.describe(),
            #[cfg(feature = "cluster")]
            Self::Cluster(cluster) => cluster.describe(),
            #[cfg(feature = "sentinel")]
            Self::Sentinel(sentinel) => sentinel.describe(),
        }
    }

    /// Whether keys have lines of waiters here: not on Redlock (a line is one server's, and a
    /// quorum of lines is not one line), whose waiters therefore take no place.
    pub(crate) fn keeps_lines(&self) -> bool {
        !matches!(self, Self::Redlock(_))
    }

    /// Whether an attempt that does not take the lock is rolled back on every server it went
    /// to: on Redlock, where a master that did not answer may have taken it (see `quorum`).
    pub(crate) fn rolls_back_failed_attempts(&self) -> bool {
        matches!(self, Self::Redlock(_))
    }

    /// The notices of a single server, where this process can hand a released lock to its own
    /// waiters directly (the other kinds rely on the published notice).
    pub(crate) fn local_notices(&self) -> Option<&Notices> {
        match self {
            Self::Single(server) => server.notices(),
            _ => None,
        }
    }

    /// Runs `call` on the owner of `key`.
    ///
    /// The futures of the multi-server kinds are boxed: it costs one allocation per round trip,
    /// and keeps the nesting of future types shallow, which rustc needs in order to lay out the
    /// futures of locked calls (without it, code locking through a sentinel manager overflowed
    /// rustc 1.95's query depth: "queries overflow the depth limit!").
    pub(crate) async fn run<K: Call>(&self, key: Key<'_>, call: &K) -> Replies<'_, K::Answer> {
        match self {
            Self::Single(server) => Replies::One(server.run(key, call, Place::SERVER).await),
            Self::Redlock(masters) => {
                Replies::Each(masters, Box::pin(masters.run(key, call)).await)
            }
            #[cfg(feature = "cluster")]
            Self::Cluster(cluster) => Replies::One(Box::pin(cluster.run(key, call)).await),
            #[cfg(feature = "sentinel")]
            Self::Sentinel(sentinel) => Replies::One(Box::pin(sentinel.run(key, call)).await),
        }
    }

    /// Subscribes to the release notices of `channel`; `None` when notices are disabled.
    pub(crate) async fn subscribe(
        &self,
        channel: &str,
    ) -> Option<redis::RedisResult<Subscription>> {
        match self {
            Self::Single(server) => server.subscribe(channel, true).await,
            Self::Redlock(masters) => Box::pin(masters.subscribe(channel)).await,
            #[cfg(feature = "cluster")]
            Self::Cluster(cluster) => cluster.subscribe(channel).await,
            #[cfg(feature = "sentinel")]
            Self::Sentinel(sentinel) => Box::pin(sentinel.subscribe(channel)).await,
        }
    }

    /// Every Redis key matching `pattern` (a `SCAN` glob), `count` at a time, on every server
    /// that holds keys: the one server, the master Sentinel names, each Redlock master (an
    /// error when fewer than a quorum answer), each cluster master. Never `KEYS`.
    pub(crate) async fn scan(&self, pattern: &str, count: usize) -> Result<Vec<String>, LockError> {
        const NONE: Key<'static> = Key {
            redis: "",
            name_at: 0,
        };
        let mut found = match self {
            Self::Single(server) => {
                scan_with(pattern, count, |scan| async move {
                    server.run(NONE, &scan, Place::SERVER).await
                })
                .await?
            }
            #[cfg(feature = "sentinel")]
            Self::Sentinel(sentinel) => {
                scan_with(pattern, count, |scan| async move {
                    sentinel.run(NONE, &scan).await
                })
                .await?
            }
            #[cfg(feature = "cluster")]
            Self::Cluster(cluster) => Box::pin(cluster.scan(pattern, count)).await?,
            Self::Redlock(masters) => {
                let mut keys = Vec::new();
                let mut answered = Vec::new();
                for i in 0..masters.len() {
                    let each = scan_with(pattern, count, |scan| async move {
                        let mut answers = masters.run_on([i], NONE, &scan).await;
                        answers.pop().unwrap_or(Ok((0, Vec::new())))
                    })
                    .await;
                    match each {
                        Ok(found) => {
                            keys.extend(found);
                            answered.push(Ok(()));
                        }
                        Err(e) => answered.push(Err(e)),
                    }
                }
                masters.enough(&answered)?;
                keys
            }
        };
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    /// Checks that the deployment answers (for Redlock: a quorum of masters; for a cluster:
    /// one node).
    pub(crate) async fn ping(&self) -> Result<(), LockError> {
        let key = Key {
            redis: "",
            name_at: 0,
        };
        match self.run(key, &Ping).await {
            Replies::One(answer) => answer,
            Replies::Each(masters, answers) => masters.enough(&answers),
        }
    }
}

/// Every key a `SCAN` with `pattern` finds, one `step` (a `SCAN` on one server) after another
/// until its cursor comes back to 0.
async fn scan_with<'p, F, Fut>(
    pattern: &'p str,
    count: usize,
    mut step: F,
) -> Result<Vec<String>, LockError>
where
    F: FnMut(Scan<'p>) -> Fut,
    Fut: Future<Output = Result<(u64, Vec<String>), LockError>>,
{
    let mut keys = Vec::new();
    let mut cursor = 0;
    loop {
        let scan = Scan {
            pattern,
            cursor,
            count,
        };
        let (next, batch) = step(scan).await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// One `SCAN` step on one server: keys matching `pattern`, `count` at a time.
pub(crate) struct Scan<'a> {
    pub(crate) pattern: &'a str,
    pub(crate) cursor: u64,
    pub(crate) count: usize,
}

impl Call for Scan<'_> {
    type Answer = (u64, Vec<String>);

    /// Bounded by the operation timeout alone (on Redlock too): no lease is at stake.
    fn lease(&self) -> Option<Duration> {
        Some(Duration::MAX)
    }

    async fn run<C: ConnectionLike + Send>(
        &self,
        wire: &mut Wire<'_, C>,
        _: Place,
    ) -> Result<(u64, Vec<String>), LockError> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(self.cursor)
            .arg("MATCH")
            .arg(self.pattern)
            .arg("COUNT")
            .arg(self.count);
        wire.send(&crate::wire::Request::command(cmd)).await
    }
}

/// `PING`.
struct Ping;

impl Call for Ping {
    type Answer = ();

    /// Bounded by the operation timeout alone (or the node timeout set on the builder), not a
    /// tenth of it: a first ping may open every connection.
    fn lease(&self) -> Option<Duration> {
        Some(Duration::MAX)
    }

    async fn run<C: ConnectionLike + Send>(
        &self,
        wire: &mut Wire<'_, C>,
        _: Place,
    ) -> Result<(), LockError> {
        let _: String = wire
            .send(&crate::wire::Request::command(redis::cmd("PING")))
            .await?;
        Ok(())
    }
}

#[cfg(all(test, feature = "cluster"))]
mod tests {
    use super::{slot, Companion};

    /// A companion lives in its key's slot whatever braces the key holds.
    #[test]
    fn a_companion_shares_its_keys_slot_whatever_braces_the_key_holds() {
        for key in [
            "lock:plain",
            "lock:{user:7}:account",
            "lock:odd{key",
            "lock:empty{}tag",
            "lock:}{",
            "lock:{}{x}",
            "lock:a}b{c",
        ] {
            let at = slot::key_slot(key.as_bytes());
            let companion = Companion {
                base: "redlock:fence",
                kind: "queue",
                key,
                slot: Some(at),
            };
            let name = companion.to_string();
            assert_eq!(
                slot::key_slot(name.as_bytes()),
                at,
                "{name} is not in {key}'s slot"
            );
        }
    }
}
