//! Building a manager: where it locks (one server, Redlock masters, a cluster, sentinels), its
//! settings, URL checks and TLS. Its `Debug` shows the URLs with their passwords replaced, and
//! never a TLS key or certificate.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::error::LockError;
use crate::fence;
use crate::manager::{LockManager, DEFAULT_PREFIX};
use crate::node::{Node, ReplicaAcks};
use crate::options::LockOptions;
use crate::quorum::Quorum;
use crate::redact;
use crate::shared::{Config, Inner};

/// Default number of command connections per Redis server.
const DEFAULT_CONNECTIONS: usize = 2;
/// Most command connections per Redis server.
const MAX_CONNECTIONS: usize = 64;

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
#[derive(Clone)]
#[must_use = "call `.build()` to get a manager"]
pub struct LockManagerBuilder {
    target: Target,
    config: Config,
    notifications: bool,
    node_timeout: Option<Duration>,
    replica_acks: Option<ReplicaAcks>,
    #[cfg(feature = "tls")]
    tls: Option<redis::TlsCertificates>,
}

/// What a manager locks on.
#[derive(Clone)]
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

    /// Make every acquire and renewal wait until `replicas` replicas of the server have it
    /// (`WAIT replicas timeout`, pipelined with the write: no extra round trip), so that a
    /// failover to one of them cannot lose it (default: off).
    ///
    /// An acquire that fewer replicas acknowledge within `timeout` is given back and tried
    /// again within the wait, then fails with [`LockError::NotReplicated`]; a renewal that
    /// fewer acknowledge is not counted (it is retried until the lease runs out, then the lock
    /// is [`LockError::Lost`]). `WAIT` holds up its connection until the replicas answer, so
    /// these writes go over connections of their own: releases and other commands never queue
    /// behind one. One server, Redlock masters and Sentinel; not a cluster. `timeout` must be
    /// shorter than the operation timeout.
    pub fn replica_acks(mut self, replicas: usize, timeout: Duration) -> Self {
        self.replica_acks = Some(ReplicaAcks { replicas, timeout });
        self
    }

    /// Trust this CA certificate (PEM) for `rediss://` servers, instead of the system's roots
    /// (feature `tls`).
    ///
    /// TLS is rustls with the `ring` provider, installed as the process default when a
    /// `rediss://` manager is built and the application has installed none.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
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
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
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
        if let Some(acks) = self.replica_acks {
            if acks.replicas == 0 {
                return Err(LockError::Config(
                    "replica acknowledgement needs at least 1 replica".into(),
                ));
            }
            if acks.timeout.is_zero() || acks.timeout >= config.op_timeout {
                return Err(LockError::Config(format!(
                    "replica acknowledgement timeout must be above zero and below the operation \
                     timeout ({:?}), got {:?}",
                    config.op_timeout, acks.timeout
                )));
            }
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
            Target::Single(url) => Backend::Single(
                Node::new(
                    self.client(url)?,
                    config.op_timeout,
                    self.notifications,
                    config.connections,
                )
                .acknowledged(
                    self.replica_acks,
                    config.op_timeout,
                    config.connections,
                ),
            ),
            Target::Redlock(urls) => {
                check_urls("redlock", urls)?;
                if urls.len().is_multiple_of(2) {
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
                        )
                        .acknowledged(
                            self.replica_acks,
                            config.op_timeout,
                            config.connections,
                        ))
                    })
                    .collect::<Result<Vec<_>, LockError>>()?;
                Backend::Quorum(Quorum::new(nodes, config.op_timeout, self.node_timeout))
            }
            #[cfg(feature = "cluster")]
            Target::Cluster(urls) => {
                check_urls("cluster", urls)?;
                if self.replica_acks.is_some() {
                    return Err(LockError::Config(
                        "replica acknowledgement is not supported on a cluster manager".into(),
                    ));
                }
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
                        let urls = redact::urls(urls);
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
                    self.replica_acks,
                )
                .map_err(|e| {
                    let urls = redact::urls(sentinels);
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
            LockError::Config(format!("invalid redis URL `{}`: {e}", redact::url(url)))
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
            redact::url(dup)
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

impl std::fmt::Debug for LockManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("LockManagerBuilder");
        match &self.target {
            Target::Single(url) => out.field("url", &redact::url(url)),
            Target::Redlock(urls) => out.field("redlock", &redact::urls(urls)),
            #[cfg(feature = "cluster")]
            Target::Cluster(urls) => out.field("cluster", &redact::urls(urls)),
            #[cfg(feature = "sentinel")]
            Target::Sentinel { sentinels, service } => out
                .field("sentinels", &redact::urls(sentinels))
                .field("service", service),
        };
        out.field("config", &self.config)
            .field("notifications", &self.notifications)
            .field("node_timeout", &self.node_timeout)
            .field("replica_acks", &self.replica_acks);
        #[cfg(feature = "tls")]
        {
            let tls = self.tls.as_ref();
            out.field(
                "tls_root_certificate",
                &tls.is_some_and(|tls| tls.root_cert.is_some()),
            )
            .field(
                "tls_client_certificate",
                &tls.is_some_and(|tls| tls.client_tls.is_some()),
            );
        }
        out.finish()
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
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn cluster<I, S>(urls: I) -> Result<Self, LockError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::builder_cluster(urls).build()
    }

    /// Starts building a manager over a Redis Cluster (feature `cluster`).
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
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
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    pub fn sentinel<I, S>(sentinel_urls: I, service: &str) -> Result<Self, LockError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::builder_sentinel(sentinel_urls, service).build()
    }

    /// Starts building a manager on a master named by Redis Sentinel (feature `sentinel`).
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
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
            replica_acks: None,
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
}
