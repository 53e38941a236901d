//! Building a manager: where it locks (one server, Redlock masters, a cluster, sentinels), its
//! settings, URL checks and TLS. Its `Debug` shows the URLs with their passwords replaced, and
//! never a TLS key or certificate.

use std::sync::Arc;
use std::time::Duration;

use crate::error::LockError;
use crate::fence;
use crate::manager::{LockManager, DEFAULT_PREFIX};
use crate::options::LockOptions;
use crate::redact;
use crate::shared::{Config, Inner};
use crate::wire::ReplicaAcks;

mod constructors;
mod target;

use target::Target;

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

    /// The name every lock, read share and permit taken through this manager is recorded with,
    /// as [`LockManager::inspect`](crate::LockManager::inspect) and the `redlock` tool show it
    /// (default: the host's name and the process id, `host:1234`). 1 to 128 bytes, without
    /// whitespace or `|`.
    pub fn holder_name(mut self, name: impl Into<String>) -> Self {
        self.config.holder = name.into();
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
        let mut config = self.config.clone();
        config.replica_acks = self.replica_acks.is_some();
        config.defaults.validate()?;
        if config.op_timeout.is_zero() {
            return Err(LockError::Config(
                "operation timeout must be above zero".into(),
            ));
        }
        if config.backoff_min.is_zero() || config.backoff_min > config.backoff_max {
            return Err(LockError::Config("backoff needs 0 < min <= max".into()));
        }
        check_holder(&config.holder)?;
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
            target::install_crypto_provider();
        }
        let deployment = self.deployment(&config)?;
        Ok(LockManager {
            inner: Arc::new(Inner { config, deployment }),
        })
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
                holder: default_holder(),
                replica_acks: false,
            },
            notifications: true,
        }
    }
}

/// The host's name and this process's id, `host:1234` (whitespace and `|` in a host's name
/// become `-`).
fn default_holder() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '|' {
                '-'
            } else {
                c
            }
        })
        .take(100)
        .collect();
    let host = if host.is_empty() {
        "unknown".to_owned()
    } else {
        host
    };
    format!("{host}:{}", std::process::id())
}

/// A holder name is recorded in lock values and places in line, separated by spaces and `|`.
fn check_holder(name: &str) -> Result<(), LockError> {
    if name.is_empty()
        || name.len() > 128
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '|' || c.is_control())
    {
        return Err(LockError::Config(format!(
            "holder name must be 1 to 128 bytes without whitespace or `|`, got {name:?}"
        )));
    }
    Ok(())
}
