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
//!   both within `wait`, with a fresh token: a rollback that reaches a master late (sent on a
//!   connection that was then given up, and delivered after a new connection's requests, when
//!   a partition heals) names the old token and cannot undo the retry's lock there. A writer
//!   waiting in line keeps its token, which names its place.
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
//! ## Read-write locks
//!
//! A read-write lock is held on a quorum like the exclusive lock: a reader when a quorum of
//! masters admits it (no writer there), a writer when a quorum of masters has no holder at all.
//! Any two quorums share a master, which never holds a writer with anyone else, so a writer
//! never holds together with a reader or another writer. A writer that waits keeps a place on
//! every master it reached, and a master admits no new reader while a writer waits there, so a
//! stream of readers cannot starve writers; writers among themselves take turns as exclusive
//! locks do on Redlock (no line is kept, no hand-off made).
//!
//! ## Semaphores
//!
//! A Redlock manager refuses semaphores (`permits`) with [`LockError::Config`]. Each master
//! counts its own holders, and a quorum of masters admitting each holder does not bound the
//! holders: with 3 masters and 2 permits, holders A on masters 1 and 2, B on 2 and 3 and C on 1
//! and 3 each reach a quorum while no master counts more than 2, so 3 hold 2 permits. A sound
//! quorum semaphore needs agreement between the masters, which Redlock's independent masters do
//! not have.
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

use std::time::{Duration, Instant};

use crate::deploy::redlock::Masters;
use crate::error::LockError;
use crate::lease::drift;
use crate::lock::calls::{Attempt, Claim, Holding, RaiseFence, Release};

/// What the masters answered to an acquisition attempt.
struct Tally {
    acquired: Vec<(usize, u64)>,
    busy: usize,
    busy_left: Option<u64>,
    wrong_type: Option<String>,
    /// A master found the key held by a plain guard of the calling task.
    held_by_this_task: bool,
    failed: usize,
}

/// Reads the masters' `answers` to `claim`, sent at `started`: a quorum reached in time is the
/// lock (its fencing counters raised first), anything else is rolled back on every master.
pub(crate) async fn attempted(
    masters: &Masters,
    claim: Claim<'_>,
    started: Instant,
    answers: Vec<Result<Attempt, LockError>>,
) -> Result<Attempt, LockError> {
    let key = claim.key;
    let ttl = Duration::from_millis(claim.ttl_ms);
    let tally = Tally::of(answers);
    let needed = masters.needed();
    let mut reached = tally.acquired.len();
    if reached >= needed {
        let fence = tally.acquired.iter().map(|&(_, f)| f).max().unwrap_or(0);
        reached = raise_fences(masters, &claim, fence, &tally).await;
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
    rollback(masters, claim.holding()).await;
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
    Err(masters.not_reached(key.name(), reached))
}

/// Raises the fencing counters of the quorum to `fence`; returns how many masters of the
/// quorum end with a counter ≥ `fence`.
async fn raise_fences(masters: &Masters, claim: &Claim<'_>, fence: u64, tally: &Tally) -> usize {
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
    let raise = RaiseFence {
        fence_key: claim.fence_key,
        token: fence,
        ttl_ms: claim.ttl_ms,
    };
    let raised = masters.run_on(behind, claim.key, &raise).await;
    level
        + raised
            .iter()
            .filter(|r| matches!(r, Ok(value) if *value >= fence))
            .count()
}

/// Deletes the caller's key on every master (it may be set where a reply was lost), without a
/// release notice.
async fn rollback(masters: &Masters, lock: Holding<'_>) {
    let call = Release {
        lock,
        notify: false,
    };
    let answers = masters.run(lock.key, &call).await;
    for error in answers.iter().filter_map(|r| r.as_ref().err()) {
        tracing::debug!(%error, "rollback on a redlock master failed; its key will expire");
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
                Ok(Attempt::NotReplicated {
                    acked, required, ..
                }) => {
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
