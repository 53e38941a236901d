//! The constructors of [`LockManager`]: one per kind of deployment, each with its builder.

use crate::builder::target::Target;
use crate::builder::LockManagerBuilder;
use crate::error::LockError;
use crate::manager::LockManager;

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
}
