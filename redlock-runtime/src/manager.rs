//! The lock manager: its settings, acquisition, locked calls, and the process-global manager.
//! Building one (targets, URL checks, TLS) is in `builder`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::error::LockError;
use crate::guard::{LockGuard, Tag, Token};
use crate::lease::answered_in_time;
use crate::options::{LockOptions, Settings};
use crate::scripts::{Attempt, Claim};
use crate::shared::Inner;
use crate::wait::{Backoff, Subscription};

/// Default key prefix: lock `account:7` lives at Redis key `lock:account:7`.
pub const DEFAULT_PREFIX: &str = "lock:";

/// Default URL of the global manager when `REDIS_URL` is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// Hands out distributed locks kept in Redis.
///
/// A manager holds a few multiplexed command connections per server (reconnecting by itself
/// after a restart), one set per tokio runtime that uses it, and, once a lock is contended, one
/// pub/sub connection on which waiters hear release notices, driven by a thread of the
/// library's own. Every call ends within its wait plus the operation timeout, whatever happens
/// to connections, and outside a tokio runtime it fails with [`LockError::Config`]. It is cheap
/// to clone (an `Arc`) and meant to be shared by the whole service.
///
/// ```no_run
/// # async fn demo() -> Result<(), redlock_runtime::LockError> {
/// use std::time::Duration;
/// use redlock_runtime::{LockManager, LockOptions};
///
/// let locks = LockManager::new("redis://127.0.0.1:6379")?;
/// let options = LockOptions::new(Duration::from_secs(3)).wait(Duration::from_secs(4));
/// let guard = locks.acquire_with("account:7", &options).await?;
/// println!("holding {} with fencing token {}", guard.key(), guard.fencing_token());
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LockManager {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for LockManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockManager")
            .field("redis", &self.inner.backend.describe())
            .field("prefix", &self.inner.config.prefix)
            .finish_non_exhaustive()
    }
}

impl LockManager {
    /// Builds the manager and checks that the server answers.
    pub async fn connect(url: &str) -> Result<Self, LockError> {
        let manager = Self::new(url)?;
        manager.ping().await?;
        Ok(manager)
    }

    /// Checks that the server answers within the operation timeout (for Redlock: a quorum of
    /// masters; for a cluster: one node).
    pub async fn ping(&self) -> Result<(), LockError> {
        let limit = self.inner.config.op_timeout;
        crate::deadline::within(limit, "", self.inner.backend.ping()).await
    }

    /// The key prefix of this manager.
    pub fn prefix(&self) -> &str {
        &self.inner.config.prefix
    }

    /// The settings made on the builder (`ttl`, `wait`, `renew`); what they leave unset comes
    /// from the library's defaults. A call's own options come first: see
    /// [`LockOptions::resolve`].
    pub fn default_options(&self) -> &LockOptions {
        &self.inner.config.defaults
    }

    /// Acquires `key` with the manager's ttl and wait.
    pub async fn acquire(&self, key: &str) -> Result<LockGuard, LockError> {
        self.acquire_with(key, &LockOptions::inherit()).await
    }

    /// Acquires `key`, waiting up to `options.wait` for a busy lock.
    ///
    /// Waiters wake on the holder's release notice, and poll with jittered backoff in case a
    /// notice is missed or the holder vanished; they never sleep past the holder's remaining lease
    /// or the deadline. A busy lock at the deadline gives [`LockError::Timeout`]; connection
    /// trouble is retried within the wait and otherwise reported as [`LockError::Redis`].
    pub async fn acquire_with(
        &self,
        key: &str,
        options: &LockOptions,
    ) -> Result<LockGuard, LockError> {
        let settings = self.settings(options)?;
        self.acquire_key(self.inner.redis_key(key), &settings, None)
            .await
    }

    /// `options` resolved against this manager's settings, checked.
    pub(crate) fn settings(&self, options: &LockOptions) -> Result<Settings, LockError> {
        options.checked(&self.inner.config.defaults)
    }

    /// Acquires `key` for a locked call (`with_lock`, the attribute): its buffer becomes the
    /// Redis key (prefix inserted in place), and a key held by a plain guard of the same task
    /// is an error at once ([`LockError::HeldByThisTask`]).
    pub(crate) async fn acquire_for_call(
        &self,
        mut key: String,
        settings: &Settings,
    ) -> Result<LockGuard, LockError> {
        key.insert_str(0, &self.inner.config.prefix);
        self.acquire_key(key, settings, Some(crate::guard::task_tag()))
            .await
    }

    /// Acquires `redis_key` (the prefix, then the key); `caller` is set for locked calls.
    async fn acquire_key(
        &self,
        redis_key: String,
        settings: &Settings,
        caller: Option<Tag>,
    ) -> Result<LockGuard, LockError> {
        let key_len = redis_key.len() - self.inner.config.prefix.len();
        let key = &redis_key[self.inner.config.prefix.len()..];
        let asked = crate::metrics::Asked::now();
        let span = tracing::debug_span!("redlock.acquire", key, ttl_ms = settings.ttl_ms());
        let token = match caller {
            Some(_) => Token::locked_call(),
            None => Token::plain(),
        };
        // Bounded here, in the caller's task, whatever happens to connections: the wait, then
        // at most one operation timeout for the last attempt.
        let limit = settings.wait.saturating_add(self.inner.config.op_timeout);
        let result = crate::deadline::within(
            limit,
            key,
            self.acquire_inner(&redis_key, settings, &token, caller.as_ref()),
        )
        .in_span(span)
        .await
        .map(|(fence, sent)| {
            LockGuard::new(
                self.inner.clone(),
                redis_key,
                key_len,
                token,
                fence,
                settings.ttl,
                sent,
            )
        });
        asked.ended(&result);
        result
    }

    /// The acquisition loop; the fencing token and when the winning attempt was sent.
    async fn acquire_inner(
        &self,
        redis_key: &str,
        options: &Settings,
        token: &Token,
        caller: Option<&Tag>,
    ) -> Result<(u64, Instant), LockError> {
        let inner = &self.inner;
        let key_at = inner.config.prefix.len();
        let key = &redis_key[key_at..];
        let start = Instant::now();
        let deadline = start + options.wait;
        let caller = caller.map(Tag::as_str);
        let ttl_ms = options.ttl_ms();
        let mut backoff = Backoff::new(inner.config.backoff_min, inner.config.backoff_max);
        let mut subscription: Option<Subscription> = None;
        let mut attempts = 0u32;
        let mut seen_busy = false;
        let mut next_subscribe = start;
        // Tasks of this process already waiting for the key go first: a newcomer (often the
        // task that just released it) queues behind them, and each local release hands the
        // lock to the longest waiter, so waiting is first come, first served.
        if let Some(notices) = inner.backend.local_notices() {
            if notices.has_waiters(redis_key) && !options.wait.is_zero() {
                let left = deadline.saturating_duration_since(Instant::now());
                if let Ok(Ok(mut sub)) =
                    tokio::time::timeout(left, notices.subscribe(redis_key)).await
                {
                    sub.arm();
                    let patience = inner.config.backoff_max.min(left);
                    sub.wait(patience).await;
                    subscription = Some(sub);
                }
            }
        }
        loop {
            attempts += 1;
            if let Some(sub) = subscription.as_mut() {
                sub.arm();
            }
            let sent = Instant::now();
            let claim = Claim {
                key,
                redis_key,
                fence_key: &inner.config.fence_key,
                token: token.as_str(),
                ttl_ms,
                caller,
                likely_free: !seen_busy,
            };
            let outcome = inner.backend.attempt(claim).await;
            seen_busy = matches!(outcome, Ok(Attempt::Busy(_) | Attempt::HeldByThisTask));
            let (holder_left, failure) = match outcome {
                Ok(Attempt::Acquired(_)) if !answered_in_time(sent, options.ttl) => {
                    // The lease may have run out before the answer came: this token's place
                    // in the fencing order is not assured, so it is given back, not handed out.
                    tracing::debug!("acquired after the lease could have run out; retrying");
                    let _ = inner.backend.release(claim.holding()).await;
                    (None, None)
                }
                Ok(Attempt::Acquired(fence)) => {
                    let waited = start.elapsed();
                    tracing::debug!(
                        attempts,
                        waited_ms = waited.as_millis() as u64,
                        fence,
                        "acquired"
                    );
                    return Ok((fence, sent));
                }
                Ok(Attempt::WrongType(found)) => {
                    return Err(LockError::WrongType {
                        key: key.to_owned(),
                        found,
                    });
                }
                Ok(Attempt::HeldByThisTask) => {
                    return Err(LockError::HeldByThisTask {
                        key: key.to_owned(),
                    });
                }
                Ok(Attempt::NotReplicated { acked, required }) => {
                    // Not safe to hand out (a failover could lose it): given back, retried.
                    tracing::debug!(acked, required, "too few replicas acknowledged; retrying");
                    let _ = inner.backend.release(claim.holding()).await;
                    let failure = LockError::NotReplicated {
                        key: key.to_owned(),
                        acknowledged: acked,
                        required,
                    };
                    (None, Some(failure))
                }
                Ok(Attempt::Busy(pttl)) => (pttl.map(Duration::from_millis), None),
                Err(e) if retryable(&e) => (None, Some(e)),
                Err(e) => return Err(e),
            };
            let now = Instant::now();
            if now >= deadline {
                if let Some(e) = failure {
                    // The wait is over and the last attempt failed: that failure, not "busy".
                    return Err(e);
                }
                let waited = start.elapsed();
                tracing::debug!(attempts, waited_ms = waited.as_millis() as u64, "busy");
                return Err(LockError::Timeout {
                    key: key.to_owned(),
                    waited,
                });
            }
            let failed = failure.is_some();
            if let Some(e) = failure {
                tracing::debug!(error = %e, "acquire attempt failed; retrying within the wait");
            }
            // Notices are worth a round trip once a holder is seen, not while the servers do
            // not answer (the subscription would most likely fail the same way).
            if subscription.is_none() && !failed && now >= next_subscribe {
                // Bounded by the wait: a server that stops answering must not stretch it.
                let left = deadline.saturating_duration_since(now);
                let subscribed = tokio::time::timeout(left, inner.backend.subscribe(redis_key))
                    .await
                    .unwrap_or_else(|_| {
                        Some(Err(crate::error::timed_out(
                            "subscribing outlasted the wait",
                        )))
                    });
                match subscribed {
                    Some(Ok(sub)) => {
                        subscription = Some(sub);
                        // A release between the failed attempt and the subscription would
                        // not be heard: look again now that notices arrive.
                        continue;
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "no release notices; polling");
                        next_subscribe = Instant::now() + RESUBSCRIBE_AFTER;
                    }
                    None => next_subscribe = deadline,
                }
                if Instant::now() >= deadline {
                    continue; // the next attempt is the last one
                }
            }
            let now = Instant::now();
            let mut delay = backoff
                .next_delay()
                .min(deadline.saturating_duration_since(now));
            if let Some(left) = holder_left {
                delay = delay.min(left + Duration::from_millis(1));
            }
            match subscription.as_mut() {
                Some(sub) => sub.wait(delay).await,
                None => tokio::time::sleep(delay).await,
            }
        }
    }

    /// Acquires several keys together, all or nothing.
    ///
    /// Keys are deduplicated and taken one by one in sorted order, so two callers locking
    /// `{A, B}` and `{B, A}` never deadlock. If one key cannot be taken within what is left of
    /// the wait, the keys already taken are released and the error is returned. The guards come
    /// back in sorted key order.
    pub async fn acquire_many<K: AsRef<str>>(
        &self,
        keys: &[K],
        options: &LockOptions,
    ) -> Result<Vec<LockGuard>, LockError> {
        let settings = self.settings(options)?;
        let mut keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        keys.sort_unstable();
        keys.dedup();
        self.acquire_sorted(&keys, &settings, None).await
    }

    /// Acquires sorted, distinct `keys` one by one within one wait; `caller` is set for locked
    /// calls.
    pub(crate) async fn acquire_sorted(
        &self,
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
            let redis_key = self.inner.redis_key(key.as_ref());
            match self.acquire_key(redis_key, &left, caller).await {
                Ok(guard) => guards.push(guard),
                Err(e) => {
                    crate::guard::release_after(&guards).await;
                    return Err(e);
                }
            }
        }
        Ok(guards)
    }
}

/// How long a waiter whose subscription failed polls before it tries to subscribe again.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// Whether a failed attempt may succeed later, within the wait: connection trouble, a quorum not
/// reached, or a cluster or replica in transition (`TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`,
/// `LOADING`, `READONLY`).
fn retryable(error: &LockError) -> bool {
    use redis::ServerErrorKind as Kind;
    match error {
        LockError::QuorumNotReached { .. } | LockError::NotReplicated { .. } => true,
        LockError::Redis { source, .. } => {
            error.is_transient()
                || matches!(
                    source.kind(),
                    redis::ErrorKind::Server(
                        Kind::TryAgain
                            | Kind::ClusterDown
                            | Kind::MasterDown
                            | Kind::BusyLoading
                            | Kind::ReadOnly
                    )
                )
        }
        _ => false,
    }
}

static GLOBAL: OnceLock<LockManager> = OnceLock::new();

/// Installs the process-global manager used by `#[distributed_lock]` without `client = ...`.
///
/// Returns the manager back if one was already installed (explicitly or lazily).
pub fn install(manager: LockManager) -> Result<(), LockManager> {
    GLOBAL.set(manager)
}

/// The process-global manager: the installed one, else one built from `REDIS_URL`
/// (default `redis://127.0.0.1:6379`) on first use.
///
/// Like every manager, it works from every tokio runtime of the process: each runtime that
/// uses it drives connections of its own, so a runtime used at start-up and then left idle, or
/// `#[tokio::test]`s that each create and drop a runtime, never hold up another's calls.
pub fn global() -> Result<&'static LockManager, LockError> {
    if let Some(manager) = GLOBAL.get() {
        return Ok(manager);
    }
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let manager = LockManager::new(&url)?;
    Ok(GLOBAL.get_or_init(|| manager))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_url_is_a_config_error() {
        let err = LockManager::new("http//nope").unwrap_err();
        assert!(matches!(err, LockError::Config(_)), "{err:?}");
        assert!(err.to_string().contains("invalid redis URL"), "{err}");
    }

    #[test]
    fn zero_ttl_is_rejected_at_build() {
        let err = LockManager::builder("redis://127.0.0.1")
            .ttl(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("ttl"), "{err}");
    }
}
