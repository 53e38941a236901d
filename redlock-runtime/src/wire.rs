//! Requests to one server, written once for any async connection (a single server's link, a
//! Redis Cluster connection): a command, a pipeline or a script call, bounded, with `EVALSHA`'s
//! `NOSCRIPT` fallback, and optionally followed by `WAIT` for replicas.
//!
//! A primitive builds [`Request`]s and reads their answers through a [`Wire`], which a
//! deployment hands it for the server that owns the key.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, Script};

use crate::error::LockError;
use crate::link::Bound;

/// How many replicas must acknowledge an acquire or a renewal (`WAIT`), and for how long to
/// wait for them.
///
/// `WAIT` blocks the connection it is sent on until the replicas answer or its timeout passes,
/// so a deployment sends acknowledged writes over connections of their own: releases, pings and
/// the commands of a manager without acknowledgement never queue behind one.
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

/// One request, sent as one round trip.
pub(crate) struct Request<'s> {
    body: Body,
    /// The script an `EVALSHA` in the request runs, loaded after a `NOSCRIPT` reply.
    script: Option<&'s Script>,
}

enum Body {
    One(Cmd),
    Many(Pipeline),
}

impl<'s> Request<'s> {
    /// One command.
    pub(crate) fn command(cmd: Cmd) -> Self {
        Self {
            body: Body::One(cmd),
            script: None,
        }
    }

    /// Several commands in one round trip (not a transaction).
    pub(crate) fn pipeline(cmds: impl IntoIterator<Item = Cmd>) -> Self {
        let mut pipe = Pipeline::with_capacity(2);
        for cmd in cmds {
            pipe.add_command(cmd);
        }
        Self {
            body: Body::Many(pipe),
            script: None,
        }
    }

    /// `EVALSHA` of `script` with `keys` keys, sized for `args` arguments (keys included) of
    /// about `bytes` bytes in all; add them with [`Self::arg`]. Built in place as a single
    /// command, without the intermediate lists of a `redis::ScriptInvocation`.
    pub(crate) fn script(script: &'s Script, keys: usize, args: usize, bytes: usize) -> Self {
        let mut cmd = Cmd::with_capacity(3 + args, 56 + bytes);
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys);
        Self {
            body: Body::One(cmd),
            script: Some(script),
        }
    }

    /// Appends a key or an argument to a script call or a single command.
    pub(crate) fn arg(&mut self, arg: impl redis::ToRedisArgs) -> &mut Self {
        if let Body::One(cmd) = &mut self.body {
            cmd.arg(arg);
        }
        self
    }

    /// This request followed by `then` in the same round trip.
    fn then(self, then: Cmd) -> Self {
        let pipe = match self.body {
            Body::One(cmd) => {
                let mut pipe = Pipeline::with_capacity(2);
                pipe.add_command(cmd);
                pipe
            }
            Body::Many(pipe) => pipe,
        };
        let mut pipe = pipe;
        pipe.add_command(then);
        Self {
            body: Body::Many(pipe),
            script: self.script,
        }
    }

    async fn send<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> redis::RedisResult<redis::Value> {
        let once = async |conn: &mut C| match &self.body {
            Body::One(cmd) => cmd.query_async(conn).await,
            Body::Many(pipe) => pipe.query_async(conn).await,
        };
        match once(conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                match self.script {
                    Some(script) => {
                        script.load_async(conn).await?;
                        once(conn).await
                    }
                    None => Err(e),
                }
            }
            other => other,
        }
    }
}

/// A write's answer and, when the deployment asks replicas to acknowledge writes, how many did.
pub(crate) struct Written<T> {
    pub(crate) answer: T,
    /// `Some((acknowledged, required))` when fewer replicas than required acknowledged.
    pub(crate) short: Option<(usize, usize)>,
}

/// A connection to the server that owns a key, handed to a primitive for one operation.
pub(crate) struct Wire<'a, C> {
    conn: &'a mut C,
    bound: Bound<'a>,
    /// The key the operation is for, as the caller named it (for errors).
    key: &'a str,
    acks: Option<&'a ReplicaAcks>,
}

impl<'a, C: ConnectionLike + Send> Wire<'a, C> {
    pub(crate) fn new(
        conn: &'a mut C,
        bound: Bound<'a>,
        key: &'a str,
        acks: Option<&'a ReplicaAcks>,
    ) -> Self {
        Self {
            conn,
            bound,
            key,
            acks,
        }
    }

    /// Sends `request` and reads its answer, bounded.
    pub(crate) async fn send<T: redis::FromRedisValue>(
        &mut self,
        request: &Request<'_>,
    ) -> Result<T, LockError> {
        let value = self.bound.run(self.key, request.send(self.conn)).await?;
        self.parse(value)
    }

    /// Sends a write that the server's replicas must acknowledge when the deployment asks for
    /// it: `WAIT` then follows in the same round trip.
    pub(crate) async fn write<T: redis::FromRedisValue>(
        &mut self,
        request: Request<'_>,
    ) -> Result<Written<T>, LockError> {
        let Some(acks) = self.acks else {
            let answer = self.send(&request).await?;
            return Ok(Written {
                answer,
                short: None,
            });
        };
        let single = matches!(request.body, Body::One(_));
        let request = request.then(acks.wait_cmd());
        let mut values: Vec<redis::Value> = self.send(&request).await?;
        let acked: usize = self.parse(values.pop().unwrap_or(redis::Value::Nil))?;
        let answer = match single {
            true => values.pop().unwrap_or(redis::Value::Nil),
            false => redis::Value::Array(values),
        };
        Ok(Written {
            answer: self.parse(answer)?,
            short: (acked < acks.replicas).then_some((acked, acks.replicas)),
        })
    }

    fn parse<T: redis::FromRedisValue>(&self, value: redis::Value) -> Result<T, LockError> {
        redis::from_redis_value(value)
            .map_err(|e| LockError::redis(self.key, redis::RedisError::from(e)))
    }
}
