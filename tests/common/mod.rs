//! Small helpers shared by the integration test suites: a server, lock options, a plain Redis
//! connection, bounded waits and polling.

#![allow(dead_code)] // each suite uses part of the helpers

use std::future::Future;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redlock::testing::RedisServer;
use redlock::LockOptions;

/// Upper bound for any one step; never a performance claim.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A fresh `redis-server` on a free port.
pub fn server() -> RedisServer {
    RedisServer::spawn().expect("start redis-server")
}

/// Lock options with a `ttl_ms` lease and a `wait_ms` wait.
pub fn options(ttl_ms: u64, wait_ms: u64) -> LockOptions {
    LockOptions::new(Duration::from_millis(ttl_ms)).wait(Duration::from_millis(wait_ms))
}

/// A plain Redis connection, beside the lock manager, to look at or change keys directly.
pub async fn connect(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection")
}

/// Whether `key` exists.
pub async fn exists(conn: &mut MultiplexedConnection, key: impl AsRef<[u8]>) -> bool {
    redis::cmd("EXISTS")
        .arg(key.as_ref())
        .query_async::<i64>(conn)
        .await
        .expect("EXISTS")
        == 1
}

/// Awaits `future`; panics if it takes longer than [`PATIENCE`].
pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("did not finish in time")
}

/// Awaits every spawned task, each within [`PATIENCE`]; panics if one panicked.
pub async fn joined<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(within(task).await.expect("task"));
    }
    outputs
}

/// Polls `condition` every 2 ms until it holds; panics with `what` after `limit`.
pub async fn until(limit: Duration, what: &str, condition: impl FnMut() -> bool) {
    until_every(limit, Duration::from_millis(2), what, condition).await;
}

/// Polls `condition` every `every` until it holds; panics with `what` after `limit`.
pub async fn until_every(
    limit: Duration,
    every: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(every).await;
    }
}
