//! Where locks live: the kinds of deployment a manager can run on.
//!
//! The manager's acquisition loop, renewal and guards speak to a [`Backend`] with three
//! operations (attempt, release, extend) and an optional source of release notices; each kind of
//! deployment implements them its own way.

use crate::error::LockError;
use crate::node::Node;
use crate::scripts::Attempt;
use crate::wait::Notices;

/// The deployment behind a manager.
pub(crate) enum Backend {
    /// One Redis server (or a primary with replicas, used through the primary).
    Single(Node),
}

impl Backend {
    /// A description for `Debug` output.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Single(node) => node.addr(),
        }
    }

    pub(crate) fn notices(&self) -> Option<&Notices> {
        match self {
            Self::Single(node) => node.notices(),
        }
    }

    pub(crate) async fn ping(&self) -> Result<(), LockError> {
        match self {
            Self::Single(node) => node.ping().await,
        }
    }

    pub(crate) async fn attempt(
        &self,
        key: &str,
        redis_key: &str,
        fence_key: &str,
        token: &str,
        ttl_ms: u64,
        careful: bool,
    ) -> Result<Attempt, LockError> {
        match self {
            Self::Single(node) => {
                node.attempt(key, redis_key, fence_key, token, ttl_ms, careful)
                    .await
            }
        }
    }

    pub(crate) async fn release(
        &self,
        key: &str,
        redis_key: &str,
        token: &str,
    ) -> Result<bool, LockError> {
        match self {
            Self::Single(node) => node.release(key, redis_key, token).await,
        }
    }

    pub(crate) async fn extend(
        &self,
        key: &str,
        redis_key: &str,
        token: &str,
        ttl_ms: u64,
    ) -> Result<bool, LockError> {
        match self {
            Self::Single(node) => node.extend(key, redis_key, token, ttl_ms).await,
        }
    }
}
