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

/// What `tracing` events of the current thread say while the returned value lives (a
/// current-thread `#[tokio::test]` runs every lock operation on its thread).
pub struct Logs {
    text: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    _default: tracing::subscriber::DefaultGuard,
}

impl Logs {
    /// Captures events at `debug` level and above.
    pub fn capture() -> Self {
        Self::capture_at(tracing::Level::DEBUG)
    }

    /// Captures every event, `trace` included, with span fields.
    pub fn capture_all() -> Self {
        Self::capture_at(tracing::Level::TRACE)
    }

    fn capture_at(level: tracing::Level) -> Self {
        let text = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = {
            let text = text.clone();
            move || Writer(text.clone())
        };
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(writer)
            .finish();
        Self {
            text,
            _default: tracing::subscriber::set_default(subscriber),
        }
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }

    /// Whether something logged so far contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.text().contains(needle)
    }
}

struct Writer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A current-thread runtime on which a task has started to lock `stalled` through `locks`
/// (connecting first), returned idle with that task under way: while the server is frozen, the
/// task waits for it, and nobody drives the runtime afterwards.
pub fn runtime_left_idle_while_locking(locks: &redlock::LockManager) -> tokio::runtime::Runtime {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        tokio::spawn({
            let locks = locks.clone();
            async move {
                let _ = locks.acquire_with("stalled", &options(5_000, 0)).await;
            }
        });
        for _ in 0..20 {
            tokio::task::yield_now().await; // the task runs until it waits for the server
        }
    });
    runtime
}
