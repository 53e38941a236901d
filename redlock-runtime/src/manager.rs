//! The lock manager: its public API for plain guards, and the process-global manager.
//! Building one (targets, URL checks, TLS) is in `builder`; locked calls (`with_lock`,
//! `with_locks`) are in `run`; the acquisition loop is in `lock::acquire`.

use std::sync::{Arc, OnceLock};

use crate::error::LockError;
use crate::lock::acquire::{acquire, acquire_sorted};
use crate::lock::guard::LockGuard;
use crate::lock::token::{task_tag, Tag};
use crate::options::{LockKind, LockOptions, Settings};
use crate::shared::Inner;

/// Default key prefix: lock `account:7` lives at Redis key `lock:account:7`.
pub const DEFAULT_PREFIX: &str = "lock:";

/// Default URL of the global manager when `REDIS_URL` is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// Hands out distributed locks kept in Redis.
///
/// A manager holds a few multiplexed command connections per server (reconnecting by itself
/// after a restart), one set per tokio runtime that uses it, and, once a lock is contended, a
/// pub/sub connection on which waiters hear release notices: one per runtime whose tasks wait
/// (on a cluster, one for the process, driven by a thread of the library's own). Every call ends within its wait plus the operation timeout, whatever happens
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
            .field("redis", &self.inner.deployment.describe())
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
        crate::deadline::within(limit, "", self.inner.deployment.ping()).await
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
        acquire(&self.inner, self.inner.redis_key(key), &settings, None).await
    }

    /// `options` resolved against this manager's settings, checked.
    ///
    /// A Redlock manager refuses semaphores: see [`quorum`](crate::quorum#semaphores).
    pub(crate) fn settings(&self, options: &LockOptions) -> Result<Settings, LockError> {
        let settings = options.checked(&self.inner.config.defaults)?;
        if let (LockKind::Permits(_), false) = (settings.kind, self.inner.deployment.keeps_lines())
        {
            return Err(LockError::Config(
                "a Redlock manager cannot hold semaphores (`permits`): each master counts its \
                 own holders, so more holders than permits can each reach a quorum; use one \
                 server, Sentinel or a cluster for semaphores"
                    .to_owned(),
            ));
        }
        Ok(settings)
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
        acquire(&self.inner, key, settings, Some(task_tag())).await
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
        acquire_sorted(&self.inner, keys, settings, caller).await
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
    use std::time::Duration;

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
