//! The lock manager: connections, configuration, acquisition, and the process-global manager.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::backend::Backend;
use crate::error::LockError;
use crate::fence;
use crate::guard::{LockGuard, Tag, Token};
use crate::node::Node;
use crate::options::{LockOptions, Settings};
use crate::quorum::Quorum;
use crate::scripts::{Attempt, Claim};
use crate::set::LockSet;
use crate::wait::{Backoff, Subscription};

/// Default number of command connections per Redis server.
const DEFAULT_CONNECTIONS: usize = 2;
/// Most command connections per Redis server.
const MAX_CONNECTIONS: usize = 64;

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
    pub(crate) connections: usize,
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
    target: Target,
    config: Config,
    notifications: bool,
    node_timeout: Option<Duration>,
    #[cfg(feature = "tls")]
    tls: Option<redis::TlsCertificates>,
}

/// What a manager locks on.
#[derive(Debug, Clone)]
enum Target {
    Single(String),
    Redlock(Vec<String>),
    #[cfg(feature = "cluster")]
    Cluster(Vec<String>),
    #[cfg(feature = "sentinel")]
    Sentinel {
        sentinels: Vec<String>,
        service: String,
    },
}

impl LockManagerBuilder {
    /// Prefix put before every lock key (default `"lock:"`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }

    /// Lease of every lock whose call (or attribute) sets none (library default 30 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.defaults = self.config.defaults.clone().ttl(ttl);
        self
    }

    /// Time to wait for a busy lock, for every call (or attribute) that sets none (library
    /// default 0: one attempt).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.config.defaults = self.config.defaults.clone().wait(wait);
        self
    }

    /// Whether locked bodies renew their leases, for every call (or attribute) that does not
    /// say (library default `true`); see [`LockOptions::renew`].
    pub fn renew(mut self, renew: bool) -> Self {
        self.config.defaults = self.config.defaults.clone().renew(renew);
        self
    }

    /// How long Redis may stay silent before a request gives up (default 2 s): connecting is
    /// bounded by it, and a connection on which requests wait with no answer for that long is
    /// closed, failing them with a [`LockError::Redis`] ("did not answer") instead of a hang,
    /// after at most about 1¼ times this. The next request connects again. (Over TLS, and on
    /// a Redis Cluster, each request has a timer of this length instead.)
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

    /// Command connections per Redis server (default 2, at most 64; not for a cluster, whose
    /// connection already has one per node). Each lock key always uses the same connection,
    /// so the commands on one lock stay in order; several keys spread over them, which lets
    /// Redis and this process overlap their work when many tasks lock at once.
    pub fn connections(mut self, per_server: usize) -> Self {
        self.config.connections = per_server;
        self
    }

    /// Redlock only: upper bound on one master's answer during acquire and extend (default: a
    /// tenth of the lock's ttl, at least 10 ms, at most the operation timeout). A master that
    /// is down or paused costs at most this much per attempt.
    pub fn node_timeout(mut self, limit: Duration) -> Self {
        self.node_timeout = Some(limit);
        self
    }

    /// Trust this CA certificate (PEM) for `rediss://` servers, instead of the system's roots
    /// (feature `tls`).
    ///
    /// TLS is rustls with the `ring` provider, installed as the process default when a
    /// `rediss://` manager is built and the application has installed none.
    #[cfg(feature = "tls")]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        let mut tls = self.tls.take().unwrap_or(redis::TlsCertificates {
            client_tls: None,
            root_cert: None,
        });
        tls.root_cert = Some(pem.into());
        self.tls = Some(tls);
        self
    }

    /// Present this client certificate and key (PEM) to `rediss://` servers that require
    /// mutual TLS (`tls-auth-clients yes`) (feature `tls`).
    #[cfg(feature = "tls")]
    pub fn tls_client_certificate(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        let mut tls = self.tls.take().unwrap_or(redis::TlsCertificates {
            client_tls: None,
            root_cert: None,
        });
        tls.client_tls = Some(redis::ClientTlsConfig {
            client_cert: cert_pem.into(),
            client_key: key_pem.into(),
        });
        self.tls = Some(tls);
        self
    }

    /// Checks the settings and builds the manager. Connections are opened on first use; call
    /// [`LockManager::ping`] to check the servers early.
    pub fn build(self) -> Result<LockManager, LockError> {
        let config = self.config.clone();
        config.defaults.validate()?;
        if config.op_timeout.is_zero() {
            return Err(LockError::Config(
                "operation timeout must be above zero".into(),
            ));
        }
        if config.backoff_min.is_zero() || config.backoff_min > config.backoff_max {
            return Err(LockError::Config("backoff needs 0 < min <= max".into()));
        }
        if !(1..=MAX_CONNECTIONS).contains(&config.connections) {
            return Err(LockError::Config(format!(
                "connections per server must be 1 to {MAX_CONNECTIONS}, got {}",
                config.connections
            )));
        }
        if self.node_timeout.is_some_and(|limit| limit.is_zero()) {
            return Err(LockError::Config("node timeout must be above zero".into()));
        }
        #[cfg(feature = "tls")]
        if self
            .target
            .urls()
            .iter()
            .any(|url| url.starts_with("rediss://"))
        {
            install_crypto_provider();
        }
        let backend = match &self.target {
            Target::Single(url) => Backend::Single(Node::new(
                self.client(url)?,
                config.op_timeout,
                self.notifications,
                config.connections,
            )),
            Target::Redlock(urls) => {
                check_urls("redlock", urls)?;
                if urls.len() % 2 == 0 {
                    tracing::warn!(
                        masters = urls.len(),
                        "redlock over an even number of masters tolerates no more failures \
                         than one master fewer"
                    );
                }
                let nodes = urls
                    .iter()
                    .map(|url| {
                        Ok(Node::new(
                            self.client(url)?,
                            config.op_timeout,
                            self.notifications,
                            config.connections,
                        ))
                    })
                    .collect::<Result<Vec<_>, LockError>>()?;
                Backend::Quorum(Quorum::new(nodes, config.op_timeout, self.node_timeout))
            }
            #[cfg(feature = "cluster")]
            Target::Cluster(urls) => {
                check_urls("cluster", urls)?;
                if config.fence_key.contains('{') || config.fence_key.contains('}') {
                    return Err(LockError::Config(format!(
                        "fence key `{}` must not contain braces on a cluster: the manager adds \
                         a hash tag per slot",
                        config.fence_key
                    )));
                }
                let settings = crate::cluster::ClusterSettings::new(
                    urls.clone(),
                    config.op_timeout,
                    #[cfg(feature = "tls")]
                    self.tls.clone(),
                );
                let cluster = crate::cluster::ClusterNode::new(settings, self.notifications)
                    .map_err(|e| {
                        let urls: Vec<String> = urls.iter().map(|u| redact(u)).collect();
                        LockError::Config(format!("invalid cluster URLs {urls:?}: {e}"))
                    })?;
                Backend::Cluster(cluster)
            }
            #[cfg(feature = "sentinel")]
            Target::Sentinel { sentinels, service } => {
                check_urls("sentinel", sentinels)?;
                if service.is_empty() {
                    return Err(LockError::Config(
                        "sentinel needs the name of the monitored master".into(),
                    ));
                }
                let node = crate::sentinel::SentinelNode::new(
                    sentinels,
                    service,
                    config.op_timeout,
                    self.notifications,
                    config.connections,
                )
                .map_err(|e| {
                    let urls: Vec<String> = sentinels.iter().map(|u| redact(u)).collect();
                    LockError::Config(format!("invalid sentinel URLs {urls:?}: {e}"))
                })?;
                Backend::Sentinel(node)
            }
        };
        Ok(LockManager {
            inner: Arc::new(Inner { config, backend }),
        })
    }

    /// A client for one server URL, with the TLS settings.
    fn client(&self, url: &str) -> Result<redis::Client, LockError> {
        let invalid = |e: redis::RedisError| {
            LockError::Config(format!("invalid redis URL `{}`: {e}", redact(url)))
        };
        #[cfg(feature = "tls")]
        if let Some(certs) = &self.tls {
            if url.starts_with("rediss://") {
                return redis::Client::build_with_tls(url, certs.clone()).map_err(invalid);
            }
        }
        redis::Client::open(url).map_err(invalid)
    }
}

impl Target {
    /// Every URL the manager connects to (for a Sentinel manager: the sentinels').
    #[cfg(feature = "tls")]
    fn urls(&self) -> &[String] {
        match self {
            Self::Single(url) => std::slice::from_ref(url),
            Self::Redlock(urls) => urls,
            #[cfg(feature = "cluster")]
            Self::Cluster(urls) => urls,
            #[cfg(feature = "sentinel")]
            Self::Sentinel { sentinels, .. } => sentinels,
        }
    }
}

/// Several URLs of one deployment: at least one, no duplicates.
fn check_urls(kind: &str, urls: &[String]) -> Result<(), LockError> {
    if urls.is_empty() {
        return Err(LockError::Config(format!("{kind} needs at least one URL")));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = urls.iter().find(|url| !seen.insert(url.as_str())) {
        return Err(LockError::Config(format!(
            "{kind} URL `{}` is given twice",
            redact(dup)
        )));
    }
    Ok(())
}

/// `rediss://` uses rustls with the `ring` provider: when the application has not installed a
/// process-default provider, install `ring`'s (with several providers compiled in, rustls would
/// otherwise refuse to pick one). An application that wants another provider installs it before
/// building a `rediss://` manager.
#[cfg(feature = "tls")]
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
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
    /// `rediss://...` with the `tls` feature, `redis+unix:///path/to/socket`), with default
    /// settings.
    pub fn new(url: &str) -> Result<Self, LockError> {
        Self::builder(url).build()
    }

    /// Starts building a manager for the Redis at `url`.
    pub fn builder(url: impl Into<String>) -> LockManagerBuilder {
        Self::builder_for(Target::Single(url.into()))
    }

    /// A Redlock manager over independent masters (no replication between them; typically 3
    /// or 5), with default settings. A lock is held when a majority (N/2+1) of them granted it
    /// in time; see the [`quorum`](crate::quorum) module for the algorithm and its caveats.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), redlock_runtime::LockError> {
    /// let locks = redlock_runtime::LockManager::redlock([
    ///     "redis://10.0.0.1:6379",
    ///     "redis://10.0.0.2:6379",
    ///     "redis://10.0.0.3:6379",
    /// ])?;
    /// # let _ = locks; Ok(()) }
    /// ```
    pub fn redlock<I, S>(urls: I) -> Result<Self, LockError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::builder_redlock(urls).build()
    }

    /// Starts building a Redlock manager over independent masters.
    pub fn builder_redlock<I, S>(urls: I) -> LockManagerBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::builder_for(Target::Redlock(urls.into_iter().map(Into::into).collect()))
    }

    /// A manager over a Redis Cluster, given one or more of its nodes as seeds (feature
    /// `cluster`). Each lock lives on the master of its key's slot; see the
    /// [`cluster`](crate::cluster) module.
    #[cfg(feature = "cluster")]
    pub fn cluster<I, S>(urls: I) -> Result<Self, LockError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::builder_cluster(urls).build()
    }

    /// Starts building a manager over a Redis Cluster (feature `cluster`).
    #[cfg(feature = "cluster")]
    pub fn builder_cluster<I, S>(urls: I) -> LockManagerBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::builder_for(Target::Cluster(urls.into_iter().map(Into::into).collect()))
    }

    /// A manager on the master that the sentinels at `sentinel_urls` name for `service`
    /// (feature `sentinel`). After a failover, new locks go to the new master; see the
    /// [`sentinel`](crate::sentinel) module for the failover caveat.
    #[cfg(feature = "sentinel")]
    pub fn sentinel<I, S>(sentinel_urls: I, service: &str) -> Result<Self, LockError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::builder_sentinel(sentinel_urls, service).build()
    }

    /// Starts building a manager on a master named by Redis Sentinel (feature `sentinel`).
    #[cfg(feature = "sentinel")]
    pub fn builder_sentinel<I, S>(sentinel_urls: I, service: &str) -> LockManagerBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::builder_for(Target::Sentinel {
            sentinels: sentinel_urls.into_iter().map(Into::into).collect(),
            service: service.to_owned(),
        })
    }

    fn builder_for(target: Target) -> LockManagerBuilder {
        LockManagerBuilder {
            target,
            node_timeout: None,
            #[cfg(feature = "tls")]
            tls: None,
            config: Config {
                prefix: DEFAULT_PREFIX.to_owned(),
                defaults: LockOptions::inherit(),
                op_timeout: Duration::from_secs(2),
                backoff_min: Duration::from_millis(2),
                backoff_max: Duration::from_millis(200),
                fence_key: fence::DEFAULT_COUNTER_KEY.to_owned(),
                connections: DEFAULT_CONNECTIONS,
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

    /// Checks that the server answers within the operation timeout (for Redlock: a quorum of
    /// masters; for a cluster: one node).
    pub async fn ping(&self) -> Result<(), LockError> {
        self.inner.backend.ping().await
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
        let key = &redis_key[self.inner.config.prefix.len()..];
        let asked = crate::metrics::Asked::now();
        let span = tracing::debug_span!("redlock.acquire", key, ttl_ms = settings.ttl_ms());
        let result = self
            .acquire_inner(redis_key, settings, caller)
            .instrument(span)
            .await;
        asked.ended(&result);
        result
    }

    async fn acquire_inner(
        &self,
        redis_key: String,
        options: &Settings,
        caller: Option<Tag>,
    ) -> Result<LockGuard, LockError> {
        let inner = &self.inner;
        let key_at = inner.config.prefix.len();
        let key = &redis_key[key_at..];
        let start = Instant::now();
        let deadline = start + options.wait;
        let token = match caller {
            Some(_) => Token::locked_call(),
            None => Token::plain(),
        };
        let caller = caller.as_ref().map(Tag::as_str);
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
            if notices.has_waiters(&redis_key) && !options.wait.is_zero() {
                let left = deadline.saturating_duration_since(Instant::now());
                if let Ok(Ok(mut sub)) =
                    tokio::time::timeout(left, notices.subscribe(&redis_key)).await
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
                redis_key: &redis_key,
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
                    let key_len = key.len();
                    return Ok(LockGuard::new(
                        self.inner.clone(),
                        redis_key,
                        key_len,
                        token,
                        fence,
                        options.ttl,
                        sent,
                    ));
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
                let subscribed = tokio::time::timeout(left, inner.backend.subscribe(&redis_key))
                    .await
                    .unwrap_or_else(|_| {
                        Some(Err(redis::RedisError::from(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "subscribing outlasted the wait",
                        ))))
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

    /// Acquires `key`, runs `body` while renewing the lease, then releases.
    ///
    /// `body` receives the guard (shared, so the future it returns may keep it). When the lock is
    /// found lost while `body` runs, `body` is dropped and the call returns [`LockError::Lost`].
    /// A failed release after a finished body is logged, not returned: the body's result stands
    /// and the lease expires by itself.
    ///
    /// This is the same locked call as the attribute's (see [`crate::run`]): nested inside
    /// another locked call of the same task that holds `key` (`with_lock`, `with_locks` or an
    /// attributed function), it shares that lock instead of waiting for it; a key held by a
    /// plain [`LockGuard`] of the same task fails at once with [`LockError::HeldByThisTask`].
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
        let mut keys = [key.to_owned()];
        let taken = crate::run::enter(self, &mut keys, options).await;
        crate::run::run(
            taken,
            |set| {
                let guard = set.shared()[0].clone();
                async move { Ok(body(guard).await) }
            },
            Err,
        )
        .await
    }

    /// Acquires `keys` together (deduplicated, in sorted order, all or nothing, as
    /// [`Self::acquire_many`]), runs `body` while renewing every lease, then releases: the
    /// several-key form of [`Self::with_lock`], with the same sharing of keys held by enclosing
    /// locked calls of the task.
    pub async fn with_locks<K, F, Fut, T>(
        &self,
        keys: &[K],
        options: &LockOptions,
        body: F,
    ) -> Result<T, LockError>
    where
        K: AsRef<str>,
        F: FnOnce(LockSet) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let mut keys: Vec<String> = keys.iter().map(|key| key.as_ref().to_owned()).collect();
        let taken = crate::run::enter(self, &mut keys, options).await;
        crate::run::run(taken, |set| async move { Ok(body(set).await) }, Err).await
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
        LockError::QuorumNotReached { .. } => true,
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

/// Whether an answer to an attempt sent at `sent` came while its lease surely still ran: within
/// the ttl less 1% for the clocks of this machine and Redis running at different rates.
fn answered_in_time(sent: Instant, ttl: Duration) -> bool {
    sent.elapsed() < ttl - ttl / 100
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
