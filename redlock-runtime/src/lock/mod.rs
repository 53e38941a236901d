//! The lock family on any deployment: the exclusive lock (one holder at a time), and the
//! shared locks, read-write locks and semaphores, which differ from it only in their requests.
//!
//! - `calls`: the calls on the server that owns a key (attempt, release, extend, fence
//!   raise) and what their answers mean, the exclusive lock's requests in place;
//! - `shared`: the requests of read-write locks and semaphores;
//! - [`quorum`](crate::quorum): what a Redlock quorum of those answers means;
//! - `acquire` (entry points) and `acquisition` (one acquisition's state: attempt, a place in
//!   line, wait for a hand-off, a notice or a pause, again);
//! - `token`, `guard`, `set`: what a holder has.
//!
//! The functions below run a call on the deployment and read its answer, whichever kind the
//! deployment is: the only place where one server's answer and a quorum's part ways.

use std::time::Instant;

use crate::deploy::{Deployment, Replies};
use crate::error::LockError;

pub(crate) mod acquire;
pub(crate) mod acquisition;
pub(crate) mod calls;
pub(crate) mod claim;
pub(crate) mod guard;
pub(crate) mod inspect;
pub mod quorum;
pub(crate) mod set;
pub(crate) mod shared;
pub(crate) mod token;

use calls::{Attempt, Claim, Extend, Holding, Release, Released};

/// One acquisition attempt, sent at `sent`.
pub(crate) async fn attempt(
    deployment: &Deployment,
    claim: Claim<'_>,
    sent: Instant,
) -> Result<Attempt, LockError> {
    match deployment.run(claim.key, &claim).await {
        Replies::One(answer) => answer,
        Replies::Each(masters, answers) => {
            Box::pin(quorum::attempted(masters, claim, sent, answers)).await
        }
    }
}

/// Compare-and-delete, or a hand-off to the longest waiter in line; waiters are told.
pub(crate) async fn release(
    deployment: &Deployment,
    lock: Holding<'_>,
) -> Result<Released, LockError> {
    let call = Release { lock, notify: true };
    match deployment.run(lock.key, &call).await {
        Replies::One(answer) => answer,
        Replies::Each(masters, answers) => {
            let answers: Vec<Result<bool, LockError>> = answers
                .into_iter()
                .map(|answer| answer.map(|released| released != Released::NotHeld))
                .collect();
            let freed = masters.verdict(lock.key.name(), &answers)?;
            Ok(if freed {
                Released::Freed
            } else {
                Released::NotHeld
            })
        }
    }
}

/// Compare-and-pexpire; `false` when the token no longer holds the lock. `fence`, when given,
/// is written into the value where it does not show the holder's fencing token yet.
pub(crate) async fn extend(
    deployment: &Deployment,
    lock: Holding<'_>,
    ttl_ms: u64,
    fence: Option<u64>,
) -> Result<bool, LockError> {
    let call = Extend {
        lock,
        ttl_ms,
        fence,
    };
    match deployment.run(lock.key, &call).await {
        Replies::One(answer) => answer,
        Replies::Each(masters, answers) => masters.verdict(lock.key.name(), &answers),
    }
}
