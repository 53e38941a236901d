//! Acquiring an exclusive lock: attempt, and while the lock is busy wait for a release notice,
//! the next backoff step or the holder's lease, whichever comes first, then attempt again, until
//! the lock is taken or the wait is over.

use std::sync::Arc;
use std::time::Instant;

use crate::error::LockError;
use crate::lock::acquisition::Acquisition;
use crate::lock::guard::LockGuard;
use crate::lock::token::{Tag, Token};
use crate::options::Settings;
use crate::shared::Inner;

/// Acquires `redis_key` (the manager's prefix, then the key); `caller` is set for locked calls.
///
/// Bounded here, in the caller's task, whatever happens to connections: the wait, then at most
/// one operation timeout for the last attempt.
pub(crate) async fn acquire(
    inner: &Arc<Inner>,
    redis_key: String,
    settings: &Settings,
    caller: Option<Tag>,
) -> Result<LockGuard, LockError> {
    let key = inner.key(&redis_key);
    let asked = crate::metrics::Asked::now();
    let span = tracing::debug_span!(
        "redlock.acquire",
        key = key.name(),
        kind = %settings.kind,
        ttl_ms = settings.ttl_ms()
    );
    let token = match caller {
        Some(_) => Token::locked_call(),
        None => Token::plain(),
    };
    let caller = caller.as_ref().map(Tag::as_str);
    let limit = settings.wait.saturating_add(inner.config.op_timeout);
    let acquisition = Acquisition::new(inner, key, settings, token, caller);
    let result = crate::deadline::within(limit, key.name(), acquisition.run())
        .in_span(span)
        .await;
    let result = match result {
        Ok(taken) => {
            let key_len = redis_key.len() - inner.config.prefix.len();
            Ok(LockGuard::new(
                inner.clone(),
                redis_key,
                key_len,
                settings.kind,
                taken.token,
                taken.fence,
                settings.ttl,
                taken.sent,
            ))
        }
        Err(e) => Err(e),
    };
    asked.ended(settings.kind, &result);
    result
}

/// Acquires sorted, distinct `keys` one by one within one wait, all or nothing; `caller` is set
/// for locked calls.
pub(crate) async fn acquire_sorted(
    inner: &Arc<Inner>,
    keys: &[impl AsRef<str>],
    settings: &Settings,
    caller: Option<Tag>,
) -> Result<Vec<LockGuard>, LockError> {
    let deadline = Instant::now() + settings.wait;
    let mut guards = Vec::with_capacity(keys.len());
    for key in keys {
        let left = Settings {
            wait: deadline.saturating_duration_since(Instant::now()),
            ..*settings
        };
        match acquire(inner, inner.redis_key(key.as_ref()), &left, caller).await {
            Ok(guard) => guards.push(guard),
            Err(e) => {
                crate::lock::guard::release_after(&guards).await;
                return Err(e);
            }
        }
    }
    Ok(guards)
}
