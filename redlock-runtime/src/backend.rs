//! Where locks live: the kinds of deployment a manager can run on.
//!
//! The manager's acquisition loop, renewal and guards speak to a [`Backend`] with three
//! operations (attempt, release, extend) and a source of release notices; each kind of
//! deployment implements them its own way:
//!
//! | kind | built with | module |
//! |---|---|---|
//! | one server (or a primary used directly) | `LockManager::new(url)` | `node` |
//! | Redlock over N independent masters | `LockManager::redlock(urls)` | [`quorum`](crate::quorum) |
//! | Redis Cluster (feature `cluster`) | `LockManager::cluster(urls)` | `cluster` |
//! | master named by Sentinel (feature `sentinel`) | `LockManager::sentinel(urls, name)` | `sentinel` |

#[cfg(feature = "cluster")]
use crate::cluster::ClusterNode;
use crate::error::LockError;
use crate::node::Node;
use crate::quorum::Quorum;
use crate::scripts::{Attempt, Claim, Holding};
#[cfg(feature = "sentinel")]
use crate::sentinel::SentinelNode;
use crate::wait::{Notices, Subscription};

/// The deployment behind a manager.
// One per manager, behind its `Arc`: never moved around, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    /// One Redis server (or a primary with replicas, used through the primary).
    Single(Node),
    /// Redlock: independent masters, a majority of which must agree.
    Quorum(Quorum),
    /// A Redis Cluster: each key on the master of its slot.
    #[cfg(feature = "cluster")]
    Cluster(ClusterNode),
    /// The master named by Redis Sentinel, looked up again after a failover.
    #[cfg(feature = "sentinel")]
    Sentinel(SentinelNode),
}

/// Awaits the same method on whichever deployment this is.
///
/// The futures of the multi-server kinds are boxed: it costs one allocation per round trip,
/// and keeps the nesting of future types shallow, which rustc needs in order to lay out the
/// futures of locked calls (without it, code locking through a sentinel manager overflowed
/// rustc 1.95's query depth: "queries overflow the depth limit!").
macro_rules! dispatch {
    ($backend:expr, $node:ident => $call:expr) => {
        match $backend {
            Backend::Single($node) => $call.await,
            Backend::Quorum($node) => Box::pin($call).await,
            #[cfg(feature = "cluster")]
            Backend::Cluster($node) => Box::pin($call).await,
            #[cfg(feature = "sentinel")]
            Backend::Sentinel($node) => Box::pin($call).await,
        }
    };
}

impl Backend {
    /// A description for `Debug` output.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Single(node) => node.addr(),
            Self::Quorum(quorum) => quorum.describe(),
            #[cfg(feature = "cluster")]
            Self::Cluster(cluster) => cluster.describe(),
            #[cfg(feature = "sentinel")]
            Self::Sentinel(sentinel) => sentinel.describe(),
        }
    }

    /// The notices of a single server, where this process can hand a released lock to its own
    /// waiters directly (the other kinds rely on the published notice).
    pub(crate) fn local_notices(&self) -> Option<&Notices> {
        match self {
            Self::Single(node) => node.notices(),
            _ => None,
        }
    }

    /// Subscribes to the release notices of `channel`; `None` when notices are disabled.
    pub(crate) async fn subscribe(
        &self,
        channel: &str,
    ) -> Option<redis::RedisResult<Subscription>> {
        dispatch!(self, node => node.subscribe(channel))
    }

    pub(crate) async fn ping(&self) -> Result<(), LockError> {
        dispatch!(self, node => node.ping())
    }

    pub(crate) async fn attempt(&self, claim: Claim<'_>) -> Result<Attempt, LockError> {
        dispatch!(self, node => node.attempt(claim))
    }

    pub(crate) async fn release(&self, lock: Holding<'_>) -> Result<bool, LockError> {
        dispatch!(self, node => node.release(lock))
    }

    pub(crate) async fn extend(&self, lock: Holding<'_>, ttl_ms: u64) -> Result<bool, LockError> {
        dispatch!(self, node => node.extend(lock, ttl_ms))
    }
}
