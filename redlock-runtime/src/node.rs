//! One Redis server: its connection and the three lock operations on it.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::LockError;
use crate::scripts::{self, Attempt};
use crate::wait::Notices;

/// A Redis server that holds locks.
///
/// The command connection is a multiplexed [`ConnectionManager`] created on first use (so a
/// manager can be built outside a runtime) that reconnects by itself after a restart. Every
/// round trip is bounded by the operation timeout.
pub(crate) struct Node {
    client: redis::Client,
    conn: tokio::sync::OnceCell<ConnectionManager>,
    op_timeout: Duration,
    notices: Option<Notices>,
}

impl Node {
    pub(crate) fn new(client: redis::Client, op_timeout: Duration, notifications: bool) -> Self {
        let notices = notifications.then(|| Notices::new(&client, op_timeout));
        Self {
            client,
            conn: tokio::sync::OnceCell::new(),
            op_timeout,
            notices,
        }
    }

    /// Where this node is, for `Debug` output.
    pub(crate) fn addr(&self) -> String {
        self.client.get_connection_info().addr().to_string()
    }

    /// Release notices of this node, if enabled.
    pub(crate) fn notices(&self) -> Option<&Notices> {
        self.notices.as_ref()
    }

    /// The command connection, created on first use.
    async fn connection(&self, key: &str) -> Result<ConnectionManager, LockError> {
        let limit = self.op_timeout;
        self.conn
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(limit))
                    .set_response_timeout(Some(limit))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(20))
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                    .map_err(|e| LockError::redis(key, e))
            })
            .await
            .cloned()
    }

    /// Sends `PING`.
    pub(crate) async fn ping(&self) -> Result<(), LockError> {
        let _: String = self.query("", &redis::cmd("PING")).await?;
        Ok(())
    }

    /// One acquisition attempt.
    ///
    /// The fast path is a `MULTI` / `SET NX PX` / `INCR fence` / `PTTL` / `EXEC` transaction:
    /// atomic like a script, but cheaper for Redis to run. When it finds the key without an
    /// expiry (possibly not a lock at all), or when the previous attempt's reply was lost (so the
    /// lock may already be ours), the acquire script decides: it checks the key's type and
    /// recognises our own token.
    pub(crate) async fn attempt(
        &self,
        key: &str,
        redis_key: &str,
        fence_key: &str,
        token: &str,
        ttl_ms: u64,
        careful: bool,
    ) -> Result<Attempt, LockError> {
        if !careful {
            let mut tx = redis::pipe();
            tx.atomic()
                .cmd("SET")
                .arg(redis_key)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .cmd("INCR")
                .arg(fence_key)
                .cmd("PTTL")
                .arg(redis_key);
            let (set, fence, pttl): (redis::Value, u64, i64) = self.query(key, &tx).await?;
            if set != redis::Value::Nil {
                return Ok(Attempt::Acquired(fence));
            }
            if let Ok(left) = u64::try_from(pttl) {
                return Ok(Attempt::Busy(Some(left)));
            }
        }
        self.eval(
            key,
            scripts::ACQUIRE
                .key(redis_key)
                .key(fence_key)
                .arg(token)
                .arg(ttl_ms),
        )
        .await
    }

    /// Compare-and-delete (publishing a release notice); `false` when the token no longer holds
    /// the lock.
    pub(crate) async fn release(
        &self,
        key: &str,
        redis_key: &str,
        token: &str,
    ) -> Result<bool, LockError> {
        let released: i64 = self
            .eval(key, scripts::RELEASE.key(redis_key).arg(token))
            .await?;
        Ok(released == 1)
    }

    /// Compare-and-pexpire; `false` when the token no longer holds the lock.
    pub(crate) async fn extend(
        &self,
        key: &str,
        redis_key: &str,
        token: &str,
        ttl_ms: u64,
    ) -> Result<bool, LockError> {
        let renewed: i64 = self
            .eval(key, scripts::EXTEND.key(redis_key).arg(token).arg(ttl_ms))
            .await?;
        Ok(renewed == 1)
    }

    /// Runs one command or transaction within the operation timeout.
    async fn query<T: redis::FromRedisValue>(
        &self,
        key: &str,
        request: &(impl Request + ?Sized),
    ) -> Result<T, LockError> {
        let mut conn = self.connection(key).await?;
        let limit = self.op_timeout;
        match tokio::time::timeout(limit, request.send(&mut conn)).await {
            Ok(Ok(value)) => redis::from_redis_value(value)
                .map_err(|e| LockError::redis(key, redis::RedisError::from(e))),
            Ok(Err(e)) => Err(LockError::redis(key, e)),
            Err(_) => Err(LockError::no_answer(key, limit)),
        }
    }

    /// Runs one script within the operation timeout.
    async fn eval<T: redis::FromRedisValue>(
        &self,
        key: &str,
        invocation: &mut redis::ScriptInvocation<'_>,
    ) -> Result<T, LockError> {
        let mut conn = self.connection(key).await?;
        let limit = self.op_timeout;
        match tokio::time::timeout(limit, invocation.invoke_async(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(LockError::redis(key, e)),
            Err(_) => Err(LockError::no_answer(key, limit)),
        }
    }
}

/// A command or a pipeline, sent as one request.
trait Request {
    fn send<'a>(
        &'a self,
        conn: &'a mut ConnectionManager,
    ) -> impl std::future::Future<Output = redis::RedisResult<redis::Value>> + Send + 'a;
}

impl Request for redis::Cmd {
    fn send<'a>(
        &'a self,
        conn: &'a mut ConnectionManager,
    ) -> impl std::future::Future<Output = redis::RedisResult<redis::Value>> + Send + 'a {
        self.query_async(conn)
    }
}

impl Request for redis::Pipeline {
    fn send<'a>(
        &'a self,
        conn: &'a mut ConnectionManager,
    ) -> impl std::future::Future<Output = redis::RedisResult<redis::Value>> + Send + 'a {
        self.query_async(conn)
    }
}
