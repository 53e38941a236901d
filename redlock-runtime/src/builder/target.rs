//! Where a manager locks (its [`Target`]) and how a builder turns that into a deployment: URL
//! checks, clients with TLS, and the settings each kind of deployment takes.

use crate::builder::LockManagerBuilder;
use crate::deploy::redlock::Masters;
use crate::deploy::server::Server;
use crate::deploy::Deployment;
use crate::error::LockError;
use crate::redact;
use crate::shared::Config;

/// What a manager locks on.
#[derive(Clone)]
pub(super) enum Target {
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
    /// The deployment of this builder's target, with `config`'s settings.
    pub(super) fn deployment(&self, config: &Config) -> Result<Deployment, LockError> {
        Ok(match &self.target {
            Target::Single(url) => Deployment::Single(self.server(url, config)?),
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
                    .map(|url| self.server(url, config))
                    .collect::<Result<Vec<_>, LockError>>()?;
                Deployment::Redlock(Masters::new(nodes, config.op_timeout, self.node_timeout))
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
                let settings = crate::cluster_settings::ClusterSettings::new(
                    urls.clone(),
                    config.op_timeout,
                    #[cfg(feature = "tls")]
                    self.tls.clone(),
                );
                let cluster = crate::deploy::cluster::Cluster::new(settings, self.notifications)
                    .map_err(|e| {
                        let urls = redact::urls(urls);
                        LockError::Config(format!("invalid cluster URLs {urls:?}: {e}"))
                    })?;
                Deployment::Cluster(cluster)
            }
            #[cfg(feature = "sentinel")]
            Target::Sentinel { sentinels, service } => {
                check_urls("sentinel", sentinels)?;
                if service.is_empty() {
                    return Err(LockError::Config(
                        "sentinel needs the name of the monitored master".into(),
                    ));
                }
                let node = crate::deploy::sentinel::Sentinel::new(
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
                Deployment::Sentinel(node)
            }
        })
    }

    /// The server at `url`, with this builder's settings.
    fn server(&self, url: &str, config: &Config) -> Result<Server, LockError> {
        let server = Server::new(
            self.client(url)?,
            config.op_timeout,
            self.notifications,
            config.connections,
        );
        Ok(server.acknowledged(self.replica_acks, config.op_timeout, config.connections))
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
    pub(super) fn urls(&self) -> &[String] {
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
pub(super) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
