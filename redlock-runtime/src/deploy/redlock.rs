//! Redlock's deployment: N independent masters (no replication between them), each call run on
//! all of them in parallel, each master's answer bounded by the node timeout. How a primitive
//! reads the masters' answers (a quorum of N/2+1) is the primitive's; see
//! [`quorum`](crate::quorum) for the exclusive lock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;

use crate::deploy::server::Server;
use crate::deploy::{Call, Key, Notice, Place};
use crate::error::LockError;
use crate::notify::Subscription;

/// Shortest per-node timeout derived from a lease.
pub(crate) const MIN_NODE_TIMEOUT: Duration = Duration::from_millis(10);

/// Where a call runs on a Redlock master: waiters listen on one master only, so every master
/// announces every release.
const MASTER: Place = Place {
    slot: None,
    notice: Notice::PublishAlways,
    hand_offs: false,
};

/// Independent masters, used together.
pub(crate) struct Masters {
    servers: Vec<Server>,
    op_timeout: Duration,
    node_timeout: Option<Duration>,
    /// The master whose pub/sub last worked: tried first for the next subscription.
    listening: AtomicUsize,
}

impl Masters {
    pub(crate) fn new(
        servers: Vec<Server>,
        op_timeout: Duration,
        node_timeout: Option<Duration>,
    ) -> Self {
        Self {
            servers,
            op_timeout,
            node_timeout,
            listening: AtomicUsize::new(0),
        }
    }

    /// How many masters there are.
    pub(crate) fn len(&self) -> usize {
        self.servers.len()
    }

    /// How many masters make a quorum: N/2 + 1.
    pub(crate) fn needed(&self) -> usize {
        self.servers.len() / 2 + 1
    }

    /// A description for `Debug` output.
    pub(crate) fn describe(&self) -> String {
        let addrs: Vec<String> = self.servers.iter().map(Server::addr).collect();
        format!("redlock[{}] (quorum {})", addrs.join(", "), self.needed())
    }

    /// The bound on one master's answer to a call about a lease of `lease` (a tenth of it, at
    /// least [`MIN_NODE_TIMEOUT`], at most the operation timeout), or the node timeout set on
    /// the builder.
    pub(crate) fn node_limit(&self, lease: Option<Duration>) -> Duration {
        let lease = lease.unwrap_or(self.op_timeout);
        self.node_timeout
            .unwrap_or_else(|| (lease / 10).max(MIN_NODE_TIMEOUT))
            .min(self.op_timeout)
    }

    /// The error of a call that `reached` masters agreed to, too few.
    pub(crate) fn not_reached(&self, key: &str, reached: usize) -> LockError {
        LockError::QuorumNotReached {
            key: key.to_owned(),
            reached,
            needed: self.needed(),
        }
    }

    /// Runs `call` on every master at once, each bounded by the node limit; the answers in the
    /// order of the masters.
    pub(crate) async fn run<K: Call>(
        &self,
        key: Key<'_>,
        call: &K,
    ) -> Vec<Result<K::Answer, LockError>> {
        self.run_on(0..self.servers.len(), key, call).await
    }

    /// Runs `call` on the masters `which` at once, each bounded by the node limit.
    pub(crate) async fn run_on<K: Call>(
        &self,
        which: impl IntoIterator<Item = usize>,
        key: Key<'_>,
        call: &K,
    ) -> Vec<Result<K::Answer, LockError>> {
        let limit = self.node_limit(call.lease());
        join_all(which.into_iter().map(|i| {
            crate::deadline::within(limit, key.name(), self.servers[i].run(key, call, MASTER))
        }))
        .await
    }

    /// Fine when a quorum of `answers` is fine; else the quorum error.
    pub(crate) fn enough(&self, answers: &[Result<(), LockError>]) -> Result<(), LockError> {
        let answered = answers.iter().filter(|r| r.is_ok()).count();
        if answered >= self.needed() {
            return Ok(());
        }
        for error in answers.iter().filter_map(|r| r.as_ref().err()) {
            tracing::debug!(%error, "redlock master did not answer");
        }
        Err(self.not_reached("", answered))
    }

    /// A quorum's yes or no to a call each master answers with `true` or `false`: `true` when a
    /// quorum said yes, `false` when so many said no that no quorum can say yes, else the
    /// quorum error.
    pub(crate) fn verdict(
        &self,
        key: &str,
        answers: &[Result<bool, LockError>],
    ) -> Result<bool, LockError> {
        let yes = answers.iter().filter(|r| matches!(r, Ok(true))).count();
        let no = answers.iter().filter(|r| matches!(r, Ok(false))).count();
        if yes >= self.needed() {
            Ok(true)
        } else if no > self.servers.len() - self.needed() {
            Ok(false)
        } else {
            for error in answers.iter().filter_map(|r| r.as_ref().err()) {
                tracing::debug!(%error, "redlock master did not answer");
            }
            Err(self.not_reached(key, yes))
        }
    }

    /// Subscribes on one master, starting with the one that worked last.
    pub(crate) async fn subscribe(
        &self,
        channel: &str,
    ) -> Option<redis::RedisResult<Subscription>> {
        let first = self.listening.load(Ordering::Relaxed);
        let limit = self.node_limit(None);
        let mut last = None;
        for i in 0..self.servers.len() {
            let index = (first + i) % self.servers.len();
            let outcome =
                tokio::time::timeout(limit, self.servers[index].subscribe(channel, false)).await;
            match outcome {
                Ok(None) => return None,
                Ok(Some(Ok(subscription))) => {
                    self.listening.store(index, Ordering::Relaxed);
                    return Some(Ok(subscription));
                }
                Ok(Some(Err(e))) => last = Some(e),
                Err(_) => last = Some(crate::error::timed_out("subscribe timed out")),
            }
        }
        last.map(Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn masters(n: usize) -> Masters {
        let servers = (0..n)
            .map(|i| {
                let client =
                    redis::Client::open(format!("redis://127.0.0.1:{}", 1000 + i)).unwrap();
                Server::new(client, Duration::from_secs(2), false, 1)
            })
            .collect();
        Masters::new(servers, Duration::from_secs(2), None)
    }

    #[test]
    fn quorum_is_a_strict_majority() {
        assert_eq!(masters(1).needed(), 1);
        assert_eq!(masters(2).needed(), 2);
        assert_eq!(masters(3).needed(), 2);
        assert_eq!(masters(5).needed(), 3);
    }

    #[test]
    fn node_timeout_is_a_tenth_of_the_lease_within_bounds() {
        let q = masters(3);
        let lease = |ms| Some(Duration::from_millis(ms));
        assert_eq!(q.node_limit(lease(3000)), Duration::from_millis(300));
        assert_eq!(q.node_limit(lease(60_000)), Duration::from_secs(2));
        assert_eq!(q.node_limit(lease(20)), MIN_NODE_TIMEOUT);
    }

    #[test]
    fn verdict_needs_a_quorum_either_way() {
        let q = masters(5);
        let lost = || Err(LockError::no_answer("k", Duration::from_millis(1)));
        assert!(q
            .verdict("k", &[Ok(true), Ok(true), Ok(true), lost(), lost()])
            .unwrap());
        assert!(!q
            .verdict("k", &[Ok(false), Ok(false), Ok(false), Ok(true), lost()])
            .unwrap());
        let err = q
            .verdict("k", &[Ok(true), Ok(true), Ok(false), lost(), lost()])
            .unwrap_err();
        assert!(
            matches!(
                err,
                LockError::QuorumNotReached {
                    reached: 2,
                    needed: 3,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
