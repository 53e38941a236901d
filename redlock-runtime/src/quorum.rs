//! Redlock: one lock over N independent Redis masters, held when a majority agrees.
//!
//! A manager built with [`LockManager::redlock`](crate::LockManager::redlock) keeps one
//! connection per master (no replication between them) and runs every operation on all of them
//! at once, each request bounded by a per-node timeout that is small compared to the lease
//! (a tenth of the ttl, at most the operation timeout, unless set with
//! [`LockManagerBuilder::node_timeout`](crate::LockManagerBuilder::node_timeout)), so a
//! paused or unreachable master costs at most that timeout.
//!
//! - **Acquire**: `SET NX PX` (plus the master's fencing counter) on every master in parallel.
//!   The lock is held when a quorum of N/2+1 masters took it and time is left:
//!   validity = ttl − elapsed − drift, where elapsed counts from before the first request was
//!   sent and drift is 1% of the ttl plus 2 ms. The guard's lease is that validity. Otherwise the
//!   attempt is rolled back on *every* master (a request that timed out may still have set the
//!   key) and the lock counts as busy when the masters that answered show another holder (a
//!   [`LockError::Timeout`] once `wait` is over), or the attempt fails with
//!   [`LockError::QuorumNotReached`] when too few masters answered in time; the manager retries
//!   both within `wait`.
//! - **Release**: compare-and-delete on every master (bounded like an attempt); each one
//!   publishes a release notice.
//!   Waiters listen on one master (the first that accepts the subscription) and poll as
//!   everywhere else, so a master that is down costs only latency.
//! - **Extend**: compare-and-pexpire on every master; renewed when a quorum renewed, lost when so
//!   many masters no longer hold the token that no quorum can.
//!
//! ## Fencing tokens on a quorum
//!
//! Each master has its own counter. The holder's token is the **maximum** of the counters its
//! quorum returned (each incremented in the same atomic script that took the lock there); in the
//! same acquisition, every master of the quorum whose counter is lower is raised to that token
//! (`SET counter max(counter, token)`), while the lock is held there. The acquisition counts only
//! if at least a quorum of masters ends with a counter ≥ the token. Any later quorum shares a
//! master with that one, and takes the lock there only after this holder's key is gone, that
//! is after the raise, so its increment there gives more than this token: tokens stay strictly
//! increasing per key across holders. With all masters up the counters stay equal and no
//! raise is sent.
//!
//! ## Caveats
//!
//! Redlock's safety rests on timing assumptions: bounded clock drift between masters (a master
//! whose clock jumps forward expires keys early), bounded process pauses, and masters that do not
//! forget. A master that restarts without persistence forgets the locks *and* the counters it
//! held: run masters with `appendonly yes` and `appendfsync always`, or keep a restarted master
//! out for at least one max ttl (delayed restart). A holder that pauses past its lease (GC, a
//! stopped VM) still believes it holds the lock; fencing tokens checked by the protected store
//! are the answer to that (Kleppmann's critique), and the lease checks of this crate only
//! shorten the window. See "How to do distributed locking" (Martin Kleppmann, 2016) and "Is
//! Redlock safe?" (Salvatore Sanfilippo, 2016).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::error::LockError;
use crate::lease::drift;
use crate::node::Node;
use crate::scripts::{self, Attempt, Claim, Holding};
use crate::wait::Subscription;

/// Shortest per-node timeout derived from the ttl.
const MIN_NODE_TIMEOUT: Duration = Duration::from_millis(10);

/// Independent masters, used together.
pub(crate) struct Quorum {
    nodes: Vec<Node>,
    op_timeout: Duration,
    node_timeout: Option<Duration>,
    /// The master whose pub/sub last worked: tried first for the next subscription.
    listening: AtomicUsize,
}

/// What one master answered to an acquisition attempt.
struct Tally {
    acquired: Vec<(usize, u64)>,
    busy: usize,
    busy_left: Option<u64>,
    wrong_type: Option<String>,
    /// A master found the key held by a plain guard of the calling task.
    held_by_this_task: bool,
    failed: usize,
}

impl Quorum {
    pub(crate) fn new(
        nodes: Vec<Node>,
        op_timeout: Duration,
        node_timeout: Option<Duration>,
    ) -> Self {
        Self {
            nodes,
            op_timeout,
            node_timeout,
            listening: AtomicUsize::new(0),
        }
    }

    /// How many masters must agree: N/2 + 1.
    pub(crate) fn needed(&self) -> usize {
        self.nodes.len() / 2 + 1
    }

    /// A description for `Debug` output.
    pub(crate) fn describe(&self) -> String {
        let addrs: Vec<String> = self.nodes.iter().map(Node::addr).collect();
        format!("redlock[{}] (quorum {})", addrs.join(", "), self.needed())
    }

    /// The bound on one master's answer for a lock of this ttl.
    fn node_limit(&self, ttl: Duration) -> Duration {
        self.node_timeout
            .unwrap_or_else(|| (ttl / 10).max(MIN_NODE_TIMEOUT))
            .min(self.op_timeout)
    }

    fn quorum_error(&self, key: &str, reached: usize) -> LockError {
        LockError::QuorumNotReached {
            key: key.to_owned(),
            reached,
            needed: self.needed(),
        }
    }

    /// `PING`s every master; fine when a quorum answers.
    pub(crate) async fn ping(&self) -> Result<(), LockError> {
        let replies = join_all(self.nodes.iter().map(Node::ping)).await;
        let answered = replies.iter().filter(|r| r.is_ok()).count();
        if answered >= self.needed() {
            return Ok(());
        }
        for error in replies.iter().filter_map(|r| r.as_ref().err()) {
            tracing::debug!(%error, "redlock master did not answer PING");
        }
        Err(self.quorum_error("", answered))
    }

    /// Subscribes on one master, starting with the one that worked last.
    pub(crate) async fn subscribe(
        &self,
        channel: &str,
    ) -> Option<redis::RedisResult<Subscription>> {
        let first = self.listening.load(Ordering::Relaxed);
        let limit = self.node_limit(self.op_timeout);
        let mut last = None;
        for i in 0..self.nodes.len() {
            let index = (first + i) % self.nodes.len();
            let outcome = tokio::time::timeout(limit, self.nodes[index].subscribe(channel)).await;
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

    /// One acquisition attempt on every master; see the module docs.
    pub(crate) async fn attempt(&self, claim: Claim<'_>) -> Result<Attempt, LockError> {
        let Claim {
            key,
            fence_key,
            ttl_ms,
            ..
        } = claim;
        let started = Instant::now();
        let ttl = Duration::from_millis(ttl_ms);
        let limit = self.node_limit(ttl);
        let replies = join_all(
            self.nodes
                .iter()
                .map(|node| bounded(key, limit, node.attempt(claim))),
        )
        .await;
        let tally = Tally::of(replies);
        let needed = self.needed();
        let mut reached = tally.acquired.len();
        if reached >= needed {
            let fence = tally.acquired.iter().map(|&(_, f)| f).max().unwrap_or(0);
            reached = self
                .raise_fences(key, fence_key, fence, &tally, limit)
                .await;
            let elapsed = started.elapsed();
            if reached >= needed && elapsed + drift(ttl) < ttl {
                return Ok(Attempt::Acquired(fence));
            }
            tracing::debug!(
                reached,
                elapsed_ms = elapsed.as_millis() as u64,
                "quorum reached too late or fence not raised; rolling back"
            );
        }
        self.rollback(claim.holding(), limit).await;
        if let Some(found) = tally.wrong_type {
            return Ok(Attempt::WrongType(found));
        }
        if tally.held_by_this_task {
            return Ok(Attempt::HeldByThisTask);
        }
        if tally.busy > 0 && tally.acquired.len() + tally.busy >= needed {
            return Ok(Attempt::Busy(tally.busy_left));
        }
        tracing::debug!(
            acquired = tally.acquired.len(),
            busy = tally.busy,
            failed = tally.failed,
            needed,
            "quorum not reached"
        );
        Err(self.quorum_error(key, reached))
    }

    /// Raises the fencing counters of the quorum to `fence`; returns how many masters of the
    /// quorum end with a counter ≥ `fence`.
    async fn raise_fences(
        &self,
        key: &str,
        fence_key: &str,
        fence: u64,
        tally: &Tally,
        limit: Duration,
    ) -> usize {
        let level = tally.acquired.iter().filter(|&&(_, f)| f == fence).count();
        let behind: Vec<usize> = tally
            .acquired
            .iter()
            .filter(|&&(_, f)| f < fence)
            .map(|&(i, _)| i)
            .collect();
        if behind.is_empty() {
            return level;
        }
        let raised = join_all(
            behind
                .iter()
                .map(|&i| bounded(key, limit, self.nodes[i].raise_fence(key, fence_key, fence))),
        )
        .await;
        level
            + raised
                .iter()
                .filter(|r| matches!(r, Ok(value) if *value >= fence))
                .count()
    }

    /// Deletes the caller's key on every master (it may be set where a reply was lost).
    async fn rollback(&self, lock: Holding<'_>, limit: Duration) {
        let replies = join_all(
            self.nodes
                .iter()
                .map(|node| bounded(lock.key, limit, node.release_with(&scripts::ROLLBACK, lock))),
        )
        .await;
        for error in replies.iter().filter_map(|r| r.as_ref().err()) {
            tracing::debug!(%error, "rollback on a redlock master failed; its key will expire");
        }
    }

    /// Compare-and-delete on every master. `true` when a quorum released, `false` when too many
    /// masters no longer hold the token for any quorum to, else the quorum error.
    pub(crate) async fn release(&self, lock: Holding<'_>) -> Result<bool, LockError> {
        // Bounded like an attempt, so a paused master does not hold up every release; the key
        // it may still hold expires with its lease.
        let limit = self.node_limit(self.op_timeout);
        let replies = join_all(self.nodes.iter().map(|node| {
            bounded(
                lock.key,
                limit,
                node.release_with(&scripts::RELEASE_QUORUM, lock),
            )
        }))
        .await;
        self.verdict(lock.key, &replies)
    }

    /// Compare-and-pexpire on every master; same verdict as [`Self::release`].
    pub(crate) async fn extend(&self, lock: Holding<'_>, ttl_ms: u64) -> Result<bool, LockError> {
        let limit = self.node_limit(Duration::from_millis(ttl_ms));
        let replies = join_all(
            self.nodes
                .iter()
                .map(|node| bounded(lock.key, limit, node.extend(lock, ttl_ms))),
        )
        .await;
        self.verdict(lock.key, &replies)
    }

    fn verdict(&self, key: &str, replies: &[Result<bool, LockError>]) -> Result<bool, LockError> {
        let yes = replies.iter().filter(|r| matches!(r, Ok(true))).count();
        let no = replies.iter().filter(|r| matches!(r, Ok(false))).count();
        if yes >= self.needed() {
            Ok(true)
        } else if no > self.nodes.len() - self.needed() {
            Ok(false)
        } else {
            for error in replies.iter().filter_map(|r| r.as_ref().err()) {
                tracing::debug!(%error, "redlock master did not answer");
            }
            Err(self.quorum_error(key, yes))
        }
    }
}

impl Tally {
    fn of(replies: Vec<Result<Attempt, LockError>>) -> Self {
        let mut tally = Tally {
            acquired: Vec::new(),
            busy: 0,
            busy_left: None,
            wrong_type: None,
            held_by_this_task: false,
            failed: 0,
        };
        for (index, reply) in replies.into_iter().enumerate() {
            match reply {
                Ok(Attempt::Acquired(fence)) => tally.acquired.push((index, fence)),
                Ok(Attempt::Busy(left)) => {
                    tally.busy += 1;
                    tally.busy_left = match (tally.busy_left, left) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                Ok(Attempt::WrongType(found)) => tally.wrong_type = Some(found),
                Ok(Attempt::NotReplicated { acked, required }) => {
                    tracing::debug!(
                        acked,
                        required,
                        "redlock master's replicas did not acknowledge the attempt"
                    );
                    tally.failed += 1;
                }
                Ok(Attempt::HeldByThisTask) => {
                    tally.busy += 1;
                    tally.held_by_this_task = true;
                }
                Err(error) => {
                    tracing::debug!(%error, "redlock master did not answer the attempt");
                    tally.failed += 1;
                }
            }
        }
        tally
    }
}

/// `future`, or a "no answer" error after `limit`.
fn bounded<'a, T: 'a>(
    key: &'a str,
    limit: Duration,
    future: impl std::future::Future<Output = Result<T, LockError>> + 'a,
) -> impl std::future::Future<Output = Result<T, LockError>> + 'a {
    crate::deadline::within(limit, key, future)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quorum(n: usize) -> Quorum {
        let nodes = (0..n)
            .map(|i| {
                let client =
                    redis::Client::open(format!("redis://127.0.0.1:{}", 1000 + i)).unwrap();
                Node::new(client, Duration::from_secs(2), false, 1)
            })
            .collect();
        Quorum::new(nodes, Duration::from_secs(2), None)
    }

    #[test]
    fn quorum_is_a_strict_majority() {
        assert_eq!(quorum(1).needed(), 1);
        assert_eq!(quorum(2).needed(), 2);
        assert_eq!(quorum(3).needed(), 2);
        assert_eq!(quorum(5).needed(), 3);
    }

    #[test]
    fn node_timeout_is_a_tenth_of_the_ttl_within_bounds() {
        let q = quorum(3);
        assert_eq!(
            q.node_limit(Duration::from_secs(3)),
            Duration::from_millis(300)
        );
        assert_eq!(
            q.node_limit(Duration::from_secs(60)),
            Duration::from_secs(2)
        );
        assert_eq!(q.node_limit(Duration::from_millis(20)), MIN_NODE_TIMEOUT);
    }

    #[test]
    fn verdict_needs_a_quorum_either_way() {
        let q = quorum(5);
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
