//! Bounds enforced in the caller's own task: whatever happens to a connection (its runtime gone
//! idle, a server silent), a call ends within its limit with a typed error.

use std::future::Future;
use std::time::Duration;

use crate::error::LockError;

/// `operation`, or [`LockError::Redis`] ("did not answer within `limit`") once `limit` has
/// passed. Outside a tokio runtime (whose timers and connections every operation needs), a
/// [`LockError::Config`] at once instead of a panic.
pub(crate) async fn within<T>(
    limit: Duration,
    key: &str,
    operation: impl Future<Output = Result<T, LockError>>,
) -> Result<T, LockError> {
    // Inside a task there is a runtime (a thread-local read); only `block_on`'s own future or a
    // foreign executor needs the dearer look-up of the runtime's handle.
    if tokio::task::try_id().is_none() && tokio::runtime::Handle::try_current().is_err() {
        return Err(outside_runtime(key));
    }
    match tokio::time::timeout(limit, operation).await {
        Ok(result) => result,
        Err(_) => Err(LockError::no_answer(key, limit)),
    }
}

/// The error of a call made outside a tokio runtime.
pub(crate) fn outside_runtime(key: &str) -> LockError {
    LockError::Config(format!(
        "lock `{key}`: called outside a tokio runtime; redlock's futures must be awaited inside \
         one (`#[tokio::main]`, `Runtime::block_on`)"
    ))
}
