//! A runtime of the library's own, on one thread, for the connections that live longer than any
//! call and serve every runtime of the process: a Redis Cluster's connections (its pub/sub
//! connection of release notices among them), and the tasks that retire a key's subscription.
//!
//! A connection's task runs on the runtime that spawned it: had the first caller's runtime
//! spawned it, a second runtime's callers would wait on a connection that nobody drives once the
//! first runtime goes idle (a current-thread runtime used at start-up, a runtime kept for
//! blocking work). Connections to one server, command and pub/sub alike, are instead kept one
//! per runtime (see `link` and `notify`), where the caller's own runtime drives them at no
//! extra cost.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Handle;

static RUNTIME: OnceLock<Result<Handle, String>> = OnceLock::new();

/// The library's runtime, started on first use.
fn handle() -> Result<&'static Handle, redis::RedisError> {
    RUNTIME
        .get_or_init(|| start().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| {
            redis::RedisError::from(std::io::Error::other(format!(
                "the connection thread could not start: {e}"
            )))
        })
}

fn start() -> std::io::Result<Handle> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("redlock-connections".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

/// Runs `future` on the library's runtime, so that whatever it spawns (a connection's task)
/// lives there; its output comes back to the caller's task, which bounds the wait.
#[cfg_attr(not(feature = "sentinel"), allow(dead_code))]
pub(crate) async fn run<F>(future: F) -> redis::RedisResult<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    handle()?.spawn(future).await.map_err(|e| {
        redis::RedisError::from(std::io::Error::other(format!(
            "the connection thread failed: {e}"
        )))
    })
}

/// Spawns `future` on the library's runtime without waiting for it (best effort: dropped if the
/// runtime could not start).
pub(crate) fn spawn<F>(future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    if let Ok(handle) = handle() {
        handle.spawn(future);
    }
}
