//! One Redis server: its connection and the lock operations on it.
//!
//! The operations themselves ([`attempt_on`], [`release_on`], [`extend_on`]) are written once
//! for any async connection, so a Redis Cluster connection runs the very same fast path and
//! scripts as a single server.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, Script};

use crate::error::LockError;
use crate::link::{Bound, Conn, Link};
use crate::scripts::{self, Attempt, Claim, Holding};
use crate::wait::{Notices, Subscription};

/// A Redis server that holds locks.
///
/// Commands go over a few multiplexed connections ([`Link`]s), each opened on first use (so a
/// manager can be built outside a runtime) and opened again after it broke. A lock key always
/// uses the same one, so the commands on one lock stay in order; several keys spread over
/// them, so that under load Redis works through one connection's batch while this process
/// prepares another's. Every round trip is bounded by the operation timeout.
pub(crate) struct Node {
    client: redis::Client,
    links: Box<[Link]>,
    notices: Option<Notices>,
    /// Replica acknowledgement of acquires and renewals, on links of their own.
    acks: Option<(ReplicaAcks, Box<[Link]>)>,
}

/// How many replicas must acknowledge an acquire or a renewal (`WAIT`), and for how long to
/// wait for them.
///
/// `WAIT` blocks the connection it is sent on until the replicas answer or its timeout passes,
/// so acknowledged writes go over connections of their own: releases, pings and the commands
/// of a manager without acknowledgement never queue behind one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplicaAcks {
    pub(crate) replicas: usize,
    pub(crate) timeout: Duration,
}

impl ReplicaAcks {
    fn wait_cmd(&self) -> Cmd {
        let mut wait = Cmd::with_capacity(3, 24);
        wait.arg("WAIT")
            .arg(self.replicas)
            .arg(self.timeout.as_millis() as u64);
        wait
    }
}

impl Node {
    pub(crate) fn new(
        client: redis::Client,
        op_timeout: Duration,
        notifications: bool,
        connections: usize,
    ) -> Self {
        let notices = notifications.then(|| Notices::new(&client, op_timeout));
        Self {
            links: (0..connections.max(1))
                .map(|_| Link::new(client.clone(), op_timeout))
                .collect(),
            client,
            notices,
            acks: None,
        }
    }

    /// This node with acquires and renewals acknowledged by replicas, on `connections` links
    /// of their own.
    pub(crate) fn acknowledged(
        mut self,
        acks: Option<ReplicaAcks>,
        op_timeout: Duration,
        connections: usize,
    ) -> Self {
        self.acks = acks.map(|acks| {
            let links = (0..connections.max(1))
                .map(|_| Link::new(self.client.clone(), op_timeout))
                .collect();
            (acks, links)
        });
        self
    }

    /// Where this node is, for `Debug` output.
    pub(crate) fn addr(&self) -> String {
        self.client.get_connection_info().addr().to_string()
    }

    /// Release notices of this server, if enabled.
    pub(crate) fn notices(&self) -> Option<&Notices> {
        self.notices.as_ref()
    }

    /// Subscribes to the release notices of `channel`; `None` when notices are disabled.
    pub(crate) async fn subscribe(
        &self,
        channel: &str,
    ) -> Option<redis::RedisResult<Subscription>> {
        Some(self.notices.as_ref()?.subscribe(channel).await)
    }

    /// The command connection for `redis_key` among `links`.
    async fn connection<'a>(
        links: &'a [Link],
        key: &str,
        redis_key: &str,
    ) -> Result<Conn<'a>, LockError> {
        let link = match links.len() {
            1 => &links[0],
            n => &links[(xxhash_rust::xxh3::xxh3_64(redis_key.as_bytes()) % n as u64) as usize],
        };
        link.get(key).await
    }

    /// Runs `request` on the connection of `redis_key`; a connection found broken is
    /// replaced for the next request.
    async fn on<T>(
        &self,
        key: &str,
        redis_key: &str,
        request: impl AsyncFnOnce(&mut MultiplexedConnection, Bound<'_>) -> Result<T, LockError>,
    ) -> Result<T, LockError> {
        Self::on_links(&self.links, key, redis_key, request).await
    }

    async fn on_links<T>(
        links: &[Link],
        key: &str,
        redis_key: &str,
        request: impl AsyncFnOnce(&mut MultiplexedConnection, Bound<'_>) -> Result<T, LockError>,
    ) -> Result<T, LockError> {
        let mut conn = Self::connection(links, key, redis_key).await?;
        let (connection, bound) = conn.parts();
        let result = request(connection, bound).await;
        conn.settle(&result);
        result
    }

    /// Sends `PING`.
    pub(crate) async fn ping(&self) -> Result<(), LockError> {
        let ping = redis::cmd("PING");
        self.on("", "", async |conn, bound| {
            query_on::<_, String>(conn, bound, "", &ping).await
        })
        .await
        .map(drop)
    }

    /// One acquisition attempt (see [`attempt_on`]).
    pub(crate) async fn attempt(&self, claim: Claim<'_>) -> Result<Attempt, LockError> {
        if let Some((acks, links)) = &self.acks {
            return Box::pin(Self::on_links(
                links,
                claim.key,
                claim.redis_key,
                async |conn, bound| attempt_acked_on(conn, bound, claim, acks).await,
            ))
            .await;
        }
        self.on(claim.key, claim.redis_key, async |conn, bound| {
            attempt_on(conn, bound, claim).await
        })
        .await
    }

    /// Compare-and-delete with `script` (which may publish a release notice); `false` when the
    /// token no longer holds the lock here.
    pub(crate) async fn release_with(
        &self,
        script: &Script,
        lock: Holding<'_>,
    ) -> Result<bool, LockError> {
        self.on(lock.key, lock.redis_key, async |conn, bound| {
            release_on(conn, bound, script, lock).await
        })
        .await
    }

    /// Compare-and-delete publishing a release notice; `false` when the token no longer holds
    /// the lock.
    pub(crate) async fn release(&self, lock: Holding<'_>) -> Result<bool, LockError> {
        self.release_with(&scripts::RELEASE, lock).await
    }

    /// Compare-and-pexpire; `false` when the token no longer holds the lock.
    pub(crate) async fn extend(&self, lock: Holding<'_>, ttl_ms: u64) -> Result<bool, LockError> {
        if let Some((acks, links)) = &self.acks {
            return Box::pin(Self::on_links(
                links,
                lock.key,
                lock.redis_key,
                async |conn, bound| extend_acked_on(conn, bound, lock, ttl_ms, acks).await,
            ))
            .await;
        }
        self.on(lock.key, lock.redis_key, async |conn, bound| {
            extend_on(conn, bound, lock, ttl_ms).await
        })
        .await
    }

    /// Raises the fencing counter at `fence_key` to at least `token` (Redlock fencing).
    pub(crate) async fn raise_fence(
        &self,
        key: &str,
        fence_key: &str,
        token: u64,
    ) -> Result<u64, LockError> {
        let mut eval = Eval::new(&scripts::RAISE_FENCE, 1, 2, fence_key.len() + 24);
        eval.arg(fence_key).arg(token);
        self.on(key, fence_key, async |conn, bound| {
            eval_on(conn, bound, key, &eval).await
        })
        .await
    }
}

/// One acquisition attempt on `conn`.
///
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
pub(crate) async fn attempt_on<C: ConnectionLike + Send>(
    conn: &mut C,
    bound: Bound<'_>,
    claim: Claim<'_>,
) -> Result<Attempt, LockError> {
    if claim.likely_free {
        let (set, incr) = fast_path(claim);
        let mut pipe = redis::Pipeline::with_capacity(2);
        pipe.add_command(set).add_command(incr);
        let (set, fence): (redis::Value, u64) = query_on(conn, bound, claim.key, &pipe).await?;
        if set != redis::Value::Nil {
            return Ok(Attempt::Acquired(fence));
        }
    }
    let eval = acquire_script(claim);
    eval_on(conn, bound, claim.key, &eval).await
}

/// The fast path's commands: `SET key token NX PX ttl` and `INCR` of the fencing counter.
fn fast_path(claim: Claim<'_>) -> (Cmd, Cmd) {
    let mut set = Cmd::with_capacity(6, 64 + claim.redis_key.len());
    set.arg("SET")
        .arg(claim.redis_key)
        .arg(claim.token)
        .arg("NX")
        .arg("PX")
        .arg(claim.ttl_ms);
    let mut incr = Cmd::with_capacity(2, 8 + claim.fence_key.len());
    incr.arg("INCR").arg(claim.fence_key);
    (set, incr)
}

/// The acquire script for `claim` (with the caller's task tag for a locked call).
fn acquire_script(claim: Claim<'_>) -> Eval<'static> {
    let mut eval = Eval::new(&scripts::ACQUIRE, 2, 5, claim.redis_key.len() + 128);
    eval.arg(claim.redis_key)
        .arg(claim.fence_key)
        .arg(claim.token)
        .arg(claim.ttl_ms);
    if let Some(caller) = claim.caller {
        eval.arg(caller);
    }
    eval
}

/// The compare-and-pexpire script for `lock`.
fn extend_script(lock: Holding<'_>, ttl_ms: u64) -> Eval<'static> {
    let mut eval = Eval::new(&scripts::EXTEND, 1, 3, lock.redis_key.len() + 64);
    eval.arg(lock.redis_key).arg(lock.token).arg(ttl_ms);
    eval
}

/// [`attempt_on`] with `WAIT` for the replicas pipelined after the write, in the same round
/// trip: a lock taken but not acknowledged by enough replicas is [`Attempt::NotReplicated`].
async fn attempt_acked_on<C: ConnectionLike + Send>(
    conn: &mut C,
    bound: Bound<'_>,
    claim: Claim<'_>,
    acks: &ReplicaAcks,
) -> Result<Attempt, LockError> {
    let checked = |attempt: Attempt, acked: usize| match attempt {
        Attempt::Acquired(_) if acked < acks.replicas => Attempt::NotReplicated {
            acked,
            required: acks.replicas,
        },
        other => other,
    };
    if claim.likely_free {
        let (set, incr) = fast_path(claim);
        let mut pipe = redis::Pipeline::with_capacity(3);
        pipe.add_command(set)
            .add_command(incr)
            .add_command(acks.wait_cmd());
        let (set, fence, acked): (redis::Value, u64, usize) =
            query_on(conn, bound, claim.key, &pipe).await?;
        if set != redis::Value::Nil {
            return Ok(checked(Attempt::Acquired(fence), acked));
        }
    }
    let eval = acquire_script(claim);
    let (attempt, acked): (Attempt, usize) =
        eval_then_on(conn, bound, claim.key, &eval, &acks.wait_cmd()).await?;
    Ok(checked(attempt, acked))
}

/// [`extend_on`] with `WAIT` for the replicas pipelined after it: a renewal that too few
/// replicas acknowledged is [`LockError::NotReplicated`] (the lease is not counted as renewed).
async fn extend_acked_on<C: ConnectionLike + Send>(
    conn: &mut C,
    bound: Bound<'_>,
    lock: Holding<'_>,
    ttl_ms: u64,
    acks: &ReplicaAcks,
) -> Result<bool, LockError> {
    let eval = extend_script(lock, ttl_ms);
    let (renewed, acked): (i64, usize) =
        eval_then_on(conn, bound, lock.key, &eval, &acks.wait_cmd()).await?;
    if renewed == 1 && acked < acks.replicas {
        return Err(LockError::NotReplicated {
            key: lock.key.to_owned(),
            acknowledged: acked,
            required: acks.replicas,
        });
    }
    Ok(renewed == 1)
}

/// Compare-and-delete on `conn` with `script`; `false` when the token no longer holds the lock.
pub(crate) async fn release_on<C: ConnectionLike + Send>(
    conn: &mut C,
    bound: Bound<'_>,
    script: &Script,
    lock: Holding<'_>,
) -> Result<bool, LockError> {
    let mut eval = Eval::new(script, 1, 2, lock.redis_key.len() + 40);
    eval.arg(lock.redis_key).arg(lock.token);
    let released: i64 = eval_on(conn, bound, lock.key, &eval).await?;
    Ok(released == 1)
}

/// Compare-and-pexpire on `conn`; `false` when the token no longer holds the lock.
pub(crate) async fn extend_on<C: ConnectionLike + Send>(
    conn: &mut C,
    bound: Bound<'_>,
    lock: Holding<'_>,
    ttl_ms: u64,
) -> Result<bool, LockError> {
    let eval = extend_script(lock, ttl_ms);
    let renewed: i64 = eval_on(conn, bound, lock.key, &eval).await?;
    Ok(renewed == 1)
}

/// Runs one command or transaction, bounded.
pub(crate) async fn query_on<C: ConnectionLike + Send, T: redis::FromRedisValue>(
    conn: &mut C,
    bound: Bound<'_>,
    key: &str,
    request: &(impl Request + ?Sized),
) -> Result<T, LockError> {
    let value = bound.run(key, request.send(conn)).await?;
    redis::from_redis_value(value).map_err(|e| LockError::redis(key, redis::RedisError::from(e)))
}

/// One `EVALSHA` of a script, built in place as a single command (without the intermediate
/// lists of a `redis::ScriptInvocation`).
pub(crate) struct Eval<'a> {
    script: &'a Script,
    cmd: Cmd,
}

impl<'a> Eval<'a> {
    /// `EVALSHA` of `script` with `keys` keys, sized for `args` arguments (keys included) of
    /// about `bytes` bytes in all.
    pub(crate) fn new(script: &'a Script, keys: usize, args: usize, bytes: usize) -> Self {
        let mut cmd = Cmd::with_capacity(3 + args, 56 + bytes);
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys);
        Self { script, cmd }
    }

    /// Appends a key or an argument.
    pub(crate) fn arg(&mut self, arg: impl redis::ToRedisArgs) -> &mut Self {
        self.cmd.arg(arg);
        self
    }
}

/// Runs `eval`, bounded; after `NOSCRIPT` (a restarted or flushed server) loads the script and
/// runs it again.
pub(crate) async fn eval_on<C: ConnectionLike + Send, T: redis::FromRedisValue>(
    conn: &mut C,
    bound: Bound<'_>,
    key: &str,
    eval: &Eval<'_>,
) -> Result<T, LockError> {
    let request = async {
        match eval.cmd.query_async::<redis::Value>(conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                eval.script.load_async(conn).await?;
                eval.cmd.query_async(conn).await
            }
            other => other,
        }
    };
    let value = bound.run(key, request).await?;
    redis::from_redis_value(value).map_err(|e| LockError::redis(key, redis::RedisError::from(e)))
}

/// Runs `eval` and then `then` in one pipeline, bounded; after `NOSCRIPT` loads the script and
/// runs both again.
async fn eval_then_on<C: ConnectionLike + Send, T: redis::FromRedisValue>(
    conn: &mut C,
    bound: Bound<'_>,
    key: &str,
    eval: &Eval<'_>,
    then: &Cmd,
) -> Result<T, LockError> {
    let mut pipe = redis::Pipeline::with_capacity(2);
    pipe.add_command(eval.cmd.clone()).add_command(then.clone());
    let request = async {
        match pipe.query_async::<redis::Value>(conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                eval.script.load_async(conn).await?;
                pipe.query_async(conn).await
            }
            other => other,
        }
    };
    let value = bound.run(key, request).await?;
    redis::from_redis_value(value).map_err(|e| LockError::redis(key, redis::RedisError::from(e)))
}

/// A command or a pipeline, sent as one request.
pub(crate) trait Request: Sync {
    fn send<'a, C: ConnectionLike + Send>(
        &'a self,
        conn: &'a mut C,
    ) -> impl std::future::Future<Output = redis::RedisResult<redis::Value>> + Send + 'a;
}

impl Request for redis::Cmd {
    fn send<'a, C: ConnectionLike + Send>(
        &'a self,
        conn: &'a mut C,
    ) -> impl std::future::Future<Output = redis::RedisResult<redis::Value>> + Send + 'a {
        self.query_async(conn)
    }
}

impl Request for redis::Pipeline {
    fn send<'a, C: ConnectionLike + Send>(
        &'a self,
        conn: &'a mut C,
    ) -> impl std::future::Future<Output = redis::RedisResult<redis::Value>> + Send + 'a {
        self.query_async(conn)
    }
}
