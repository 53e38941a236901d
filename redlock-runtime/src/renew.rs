//! Renewal: keep leases alive while a locked body runs, and stop the body when a lock is lost.
//!
//! The renewal loop is not a detached task: it is polled together with the body inside the
//! locked call, so it cannot outlive it. Every ttl/3 it extends each lease (compare-and-pexpire).
//! A renewal that finds the token gone, or that cannot be confirmed before the local estimate of
//! the lease (minus clock drift) runs out, declares the lock lost: the body future is dropped at
//! its next await point and the call returns [`LockError::Lost`].
//!
//! The body is never polled again once a lease has run out on the local clock: after a pause
//! of the whole process (a stopped VM, a long GC-like stall of the runtime) the renewal loop and
//! the body wake together, and the body must not take one more step without a valid lease.

use std::borrow::Borrow;
use std::future::Future;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::error::LockError;
use crate::lock::guard::LockGuard;

/// Pause between retries of a renewal that failed for connection reasons.
const RETRY: Duration = Duration::from_millis(50);

/// Runs `body` while `guards` are held, renewing them when `renew` is set.
pub async fn hold<F: Future>(
    guards: &[impl Borrow<LockGuard>],
    renew: bool,
    body: F,
) -> Result<F::Output, LockError> {
    if guards.is_empty() {
        return Ok(body.await);
    }
    if !renew {
        return Ok(unrenewed(guards, body).await);
    }
    let mut body = std::pin::pin!(body);
    let mut renewal = std::pin::pin!(keep_alive(guards));
    // The renewal loop starts once the body first waits: a body that finishes in its first poll
    // (no renewal can be due yet) never sets a timer.
    let mut renewing = false;
    std::future::poll_fn(|cx| {
        // Renewal first, so a confirmation that has arrived counts before the lease check.
        if renewing {
            if let Poll::Ready(lost) = renewal.as_mut().poll(cx) {
                return Poll::Ready(Err(lost));
            }
        }
        let now = Instant::now();
        if let Some(guard) = guards
            .iter()
            .map(Borrow::borrow)
            .find(|guard| guard.lease_end() <= now)
        {
            tracing::warn!(
                key = guard.key(),
                "lease ran out before the body could run again"
            );
            guard.mark_lost();
            return Poll::Ready(Err(guard.lost()));
        }
        if let Poll::Ready(output) = body.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        if !renewing {
            renewing = true;
            if let Poll::Ready(lost) = renewal.as_mut().poll(cx) {
                return Poll::Ready(Err(lost));
            }
        }
        Poll::Pending
    })
    .await
}

/// Runs `body` to its end without renewal; a lease that runs out meanwhile is made visible (a
/// warning, the lost-lock metric, the guard no longer held) but does not stop the body: the
/// caller asked for no renewal.
async fn unrenewed<F: Future>(guards: &[impl Borrow<LockGuard>], body: F) -> F::Output {
    let mut body = std::pin::pin!(body);
    let mut watch = std::pin::pin!(async {
        for guard in guards.iter().map(Borrow::borrow) {
            tokio::time::sleep_until(guard.lease_end().into()).await;
            guard.mark_expired();
        }
        std::future::pending::<()>().await
    });
    // As with renewal, the timer is set only once the body waits: a body that finishes in its
    // first poll never sets one.
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = body.as_mut().poll(cx) {
            // A lease that ran out by the time the body ended counts too, timer or not.
            let now = Instant::now();
            for guard in guards.iter().map(Borrow::borrow) {
                if guard.lease_end() <= now {
                    guard.mark_expired();
                }
            }
            return Poll::Ready(output);
        }
        let _ = watch.as_mut().poll(cx);
        Poll::Pending
    })
    .await
}

/// Renews every guard when due; returns only when one of them is lost.
async fn keep_alive(guards: &[impl Borrow<LockGuard>]) -> LockError {
    loop {
        let due = guards
            .iter()
            .map(|guard| guard.borrow().renew_at())
            .min()
            .unwrap_or_else(Instant::now);
        tokio::time::sleep_until(due.into()).await;
        for guard in guards.iter().map(Borrow::borrow) {
            if guard.renew_at() <= Instant::now() {
                if let Err(lost) = renew_one(guard).await {
                    return lost;
                }
            }
        }
    }
}

/// Extends one lease, retrying connection trouble until the lease runs out.
async fn renew_one(guard: &LockGuard) -> Result<(), LockError> {
    loop {
        let lease_end = guard.lease_end();
        if Instant::now() >= lease_end {
            tracing::warn!(
                key = guard.key(),
                "no renewal confirmed before the lease ran out"
            );
            guard.mark_lost();
            return Err(guard.lost());
        }
        match tokio::time::timeout_at(lease_end.into(), guard.extend()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e @ LockError::Lost { .. })) => return Err(e),
            Ok(Err(e)) => {
                tracing::debug!(key = guard.key(), error = %e, "renewal failed; retrying");
                let pause = RETRY.min(lease_end.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
            }
            Err(_) => {} // the lease ran out while waiting: the loop head reports it
        }
    }
}
