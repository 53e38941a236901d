//! The lock manager: connections, configuration, acquisition, and the process-global manager.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::backend::Backend;
use crate::error::LockError;
use crate::fence;
use crate::guard::LockGuard;
use crate::node::Node;
use crate::options::LockOptions;
use crate::scripts::Attempt;
use crate::wait::{Backoff, Subscription};

/// Default key prefix: lock `account:7` lives at Redis key `lock:account:7`.
pub const DEFAULT_PREFIX: &str = "lock:";

/// Default URL of the global manager when `REDIS_URL` is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// Hands out distributed locks kept in Redis.
///
/// A manager holds one multiplexed command connection (reconnecting by itself after a restart) and,
/// once a lock is contended, one pub/sub connection on which waiters hear release notices. It is
/// cheap to clone (an `Arc`) and meant to be shared by the whole service.
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

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) backend: Backend,
}

/// Settings of a manager, fixed when it is built.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) prefix: String,
    pub(crate) defaults: LockOptions,
    pub(crate) op_timeout: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) fence_key: String,
}

impl std::fmt::Debug for LockManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockManager")
            .field("redis", &self.inner.backend.describe())
            .field("prefix", &self.inner.config.prefix)
            .finish_non_exhaustive()
    }
}

/// Builds a [`LockManager`] with non-default settings.
///
/// ```no_run
/// # fn demo() -> Result<(), redlock_runtime::LockError> {
/// use std::time::Duration;
/// let locks = redlock_runtime::LockManager::builder("redis://127.0.0.1:6379")
///     .prefix("billing:lock:")
///     .ttl(Duration::from_secs(10))
///     .wait(Duration::from_secs(2))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "call `.build()` to get a manager"]
pub struct LockManagerBuilder {
    url: String,
    config: Config,
    notifications: bool,
}

impl LockManagerBuilder {
    /// Prefix put before every lock key (default `"lock:"`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }

    /// Default lease for locks taken without options (default 30 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.defaults = self.config.defaults.clone().ttl(ttl);
        self
    }

    /// Default time to wait for a busy lock (default 0: one attempt).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.config.defaults = self.config.defaults.clone().wait(wait);
        self
    }

    /// Upper bound on one Redis round trip, including reconnecting (default 2 s). A server that
    /// does not answer within it gives a [`LockError::Redis`] instead of a hang.
    pub fn operation_timeout(mut self, limit: Duration) -> Self {
        self.config.op_timeout = limit;
        self
    }

    /// Bounds of the polling backoff used besides release notices (default 2 ms to 200 ms,
    /// exponential with full jitter, never past the holder's remaining lease).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.backoff_min = min;
        self.config.backoff_max = max;
        self
    }

    /// Redis key of the counter behind fencing tokens (default `"redlock:fence"`). Managers that
    /// lock the same keys must use the same counter.
    pub fn fence_key(mut self, key: impl Into<String>) -> Self {
        self.config.fence_key = key.into();
        self
    }

    /// Wake waiters on release notices over pub/sub (default `true`). With `false` waiters only
    /// poll.
    pub fn notifications(mut self, enabled: bool) -> Self {
        self.notifications = enabled;
        self
    }

    /// Checks the settings and builds the manager. Connections are opened on first use; call
    /// [`LockManager::ping`] to check the server early.
    pub fn build(self) -> Result<LockManager, LockError> {
        let config = self.config;
        config.defaults.validate()?;
        if config.op_timeout.is_zero() {
            return Err(LockError::Config(
                "operation timeout must be above zero".into(),
            ));
        }
        if config.backoff_min.is_zero() || config.backoff_min > config.backoff_max {
            return Err(LockError::Config("backoff needs 0 < min <= max".into()));
        }
        let client = redis::Client::open(self.url.as_str()).map_err(|e| {
            LockError::Config(format!("invalid redis URL `{}`: {e}", redact(&self.url)))
        })?;
        let node = Node::new(client, config.op_timeout, self.notifications);
        Ok(LockManager {
            inner: Arc::new(Inner {
                config,
                backend: Backend::Single(node),
            }),
        })
    }
}

/// The URL with any password replaced, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl LockManager {
    /// A manager for the Redis at `url` (`redis://[user:password@]host:port[/db]`,
    /// `redis+unix:///path/to/socket`), with default settings.
    pub fn new(url: &str) -> Result<Self, LockError> {
        Self::builder(url).build()
    }

    /// Starts building a manager for the Redis at `url`.
    pub fn builder(url: impl Into<String>) -> LockManagerBuilder {
        LockManagerBuilder {
            url: url.into(),
            config: Config {
                prefix: DEFAULT_PREFIX.to_owned(),
                defaults: LockOptions::default(),
                op_timeout: Duration::from_secs(2),
                backoff_min: Duration::from_millis(2),
                backoff_max: Duration::from_millis(200),
                fence_key: fence::DEFAULT_COUNTER_KEY.to_owned(),
            },
            notifications: true,
        }
    }

    /// Builds the manager and checks that the server answers.
    pub async fn connect(url: &str) -> Result<Self, LockError> {
        let manager = Self::new(url)?;
        manager.ping().await?;
        Ok(manager)
    }

    /// Checks that the server answers within the operation timeout.
    pub async fn ping(&self) -> Result<(), LockError> {
        self.inner.backend.ping().await
    }

    /// The key prefix of this manager.
    pub fn prefix(&self) -> &str {
        &self.inner.config.prefix
    }

    /// The options used by [`LockManager::acquire`].
    pub fn default_options(&self) -> &LockOptions {
        &self.inner.config.defaults
    }

    /// Acquires `key` with the manager's default ttl and wait.
    pub async fn acquire(&self, key: &str) -> Result<LockGuard, LockError> {
        let options = self.inner.config.defaults.clone();
        self.acquire_with(key, &options).await
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
        options.validate()?;
        let span = tracing::debug_span!("redlock.acquire", key, ttl_ms = options.ttl_ms());
        self.acquire_inner(key, options).instrument(span).await
    }

    async fn acquire_inner(
        &self,
        key: &str,
        options: &LockOptions,
    ) -> Result<LockGuard, LockError> {
        let inner = &self.inner;
        let start = Instant::now();
        let deadline = start + options.wait_duration();
        let redis_key = inner.redis_key(key);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let ttl_ms = options.ttl_ms();
        let mut backoff = Backoff::new(inner.config.backoff_min, inner.config.backoff_max);
        let mut subscription: Option<Subscription> = None;
        let mut attempts = 0u32;
        let mut reply_lost = false;
        loop {
            attempts += 1;
            if let Some(sub) = subscription.as_mut() {
                sub.arm();
            }
            let sent = Instant::now();
            let outcome = inner
                .backend
                .attempt(
                    key,
                    &redis_key,
                    &inner.config.fence_key,
                    &token,
                    ttl_ms,
                    reply_lost,
                )
                .await;
            reply_lost = matches!(&outcome, Err(e) if e.is_transient());
            let holder_left = match outcome {
                Ok(Attempt::Acquired(fence)) => {
                    let waited = start.elapsed();
                    tracing::debug!(
                        attempts,
                        waited_ms = waited.as_millis() as u64,
                        fence,
                        "acquired"
                    );
                    return Ok(LockGuard::new(
                        self.inner.clone(),
                        key.to_owned(),
                        redis_key,
                        token,
                        fence,
                        options.ttl_duration(),
                        sent,
                    ));
                }
                Ok(Attempt::WrongType(found)) => {
                    return Err(LockError::WrongType {
                        key: key.to_owned(),
                        found,
                    });
                }
                Ok(Attempt::Busy(pttl)) => pttl.map(Duration::from_millis),
                Err(e) if e.is_transient() && Instant::now() < deadline => {
                    tracing::debug!(error = %e, "acquire attempt failed; retrying within the wait");
                    None
                }
                Err(e) => return Err(e),
            };
            let now = Instant::now();
            if now >= deadline {
                let waited = start.elapsed();
                tracing::debug!(attempts, waited_ms = waited.as_millis() as u64, "busy");
                return Err(LockError::Timeout {
                    key: key.to_owned(),
                    waited,
                });
            }
            if subscription.is_none() {
                if let Some(notices) = inner.backend.notices() {
                    match notices.subscribe(&redis_key).await {
                        Ok(sub) => {
                            subscription = Some(sub);
                            // A release between the failed attempt and the subscription would
                            // not be heard: look again now that notices arrive.
                            continue;
                        }
                        Err(e) => tracing::debug!(error = %e, "no release notices; polling"),
                    }
                }
            }
            let mut delay = backoff.next_delay().min(deadline - now);
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
        options.validate()?;
        let mut keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        keys.sort_unstable();
        keys.dedup();
        let deadline = Instant::now() + options.wait_duration();
        let mut guards = Vec::with_capacity(keys.len());
        for key in keys {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.acquire_with(key, &options.clone().wait(left)).await {
                Ok(guard) => guards.push(guard),
                Err(e) => {
                    let taken: Vec<&LockGuard> = guards.iter().collect();
                    crate::guard::release_after(&taken).await;
                    return Err(e);
                }
            }
        }
        Ok(guards)
    }

    /// Acquires `key`, runs `body` while renewing the lease, then releases.
    ///
    /// `body` receives the guard (shared, so the future it returns may keep it). When the lock is
    /// found lost while `body` runs, `body` is dropped and the call returns [`LockError::Lost`].
    /// A failed release after a finished body is logged, not returned: the body's result stands
    /// and the lease expires by itself.
    pub async fn with_lock<F, Fut, T>(
        &self,
        key: &str,
        options: &LockOptions,
        body: F,
    ) -> Result<T, LockError>
    where
        F: FnOnce(Arc<LockGuard>) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let guard = Arc::new(self.acquire_with(key, options).await?);
        let outcome = crate::renew::hold(&[&guard], options.renews(), body(guard.clone())).await;
        crate::guard::release_after(&[&guard]).await;
        outcome
    }
}

impl Inner {
    pub(crate) fn redis_key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.config.prefix.len() + key.len());
        full.push_str(&self.config.prefix);
        full.push_str(key);
        full
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
/// The manager's connections are driven by the tokio runtime that first uses them: a service
/// with one runtime (the usual `#[tokio::main]`) needs nothing more; code that creates and drops
/// runtimes (such as `#[tokio::test]`s) should pass its own manager with `client = ...`.
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
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("redis://:secret@host:6379"),
            "redis://:***@host:6379"
        );
        assert_eq!(redact("redis://app:secret@host"), "redis://app:***@host");
        assert_eq!(redact("redis://host:6379/2"), "redis://host:6379/2");
    }

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
