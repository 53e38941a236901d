//! What a manager and its guards share: the deployment the locks live on and the manager's
//! settings. A guard holds this, not the manager, so guards sit below the manager.

use std::time::Duration;

use crate::deploy::Deployment;
use crate::options::LockOptions;

/// A manager's deployment and settings, behind its `Arc`.
pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) deployment: Deployment,
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
    /// Who this manager's locks are held by, as inspection shows it.
    pub(crate) holder: String,
    /// Whether acquires wait for replicas to acknowledge them
    /// ([`LockManagerBuilder::replica_acks`](crate::LockManagerBuilder::replica_acks)): a
    /// hand-off, written by a release that waits for no replica, is then confirmed by an
    /// acknowledged attempt before it counts.
    pub(crate) replica_acks: bool,
}

impl Inner {
    /// `redis_key` (the prefix, then the key) as a call names it.
    pub(crate) fn key<'a>(&self, redis_key: &'a str) -> crate::deploy::Key<'a> {
        crate::deploy::Key {
            redis: redis_key,
            name_at: self.config.prefix.len(),
        }
    }

    pub(crate) fn redis_key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.config.prefix.len() + key.len());
        full.push_str(&self.config.prefix);
        full.push_str(key);
        full
    }
}
