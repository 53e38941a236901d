//! A held lock: its key, token, fencing token and lease.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::deploy::Key;
use crate::error::LockError;
use crate::lease::{drift, lease_end, nanos};
use crate::lock::calls::{Holding, Released};
use crate::lock::token::Token;
use crate::options::LockKind;
use crate::shared::Inner;

/// The guard still holds its lock, as far as it knows.
const HOLDS: u8 = 0;
const RELEASED: u8 = 1;
const LOST: u8 = 2;

/// Proof of holding a lock.
///
/// Dropping a guard that was not released sends a release in the background when a tokio
/// runtime is at hand (best effort); otherwise the lease simply expires. Prefer
/// [`LockGuard::release`], which reports the outcome.
#[must_use = "a lock is released as soon as its guard is dropped"]
pub struct LockGuard {
    manager: Arc<Inner>,
    /// The Redis key; the lock key is what follows the manager's prefix.
    redis_key: String,
    key_at: usize,
    kind: LockKind,
    token: Token,
    fence: u64,
    /// When the acquire that took the lock was sent.
    acquired_at: Instant,
    ttl: Duration,
    /// Local, conservative end of the lease, in nanoseconds after `acquired_at`: when the last
    /// confirmed acquire or renewal was *sent*, plus the ttl, minus the clock drift allowance.
    lease_end: AtomicU64,
    state: AtomicU8,
    /// Whether a renewal has written the fencing token into the lock's value (see
    /// `scripts/queue.lua`).
    fence_recorded: AtomicBool,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("key", &self.key())
            .field("kind", &self.kind)
            .field("fencing_token", &self.fence)
            .field("remaining", &self.remaining())
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    /// A guard for the lock at `redis_key`, whose last `key_len` bytes are the lock key, taken
    /// as `kind` with a lease of `ttl` counted from `sent`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        manager: Arc<Inner>,
        redis_key: String,
        key_len: usize,
        kind: LockKind,
        token: Token,
        fence: u64,
        ttl: Duration,
        sent: Instant,
    ) -> Self {
        Self {
            manager,
            key_at: redis_key.len() - key_len,
            redis_key,
            kind,
            token,
            fence,
            acquired_at: sent,
            ttl,
            lease_end: AtomicU64::new(nanos(lease_end(sent, ttl) - sent)),
            state: AtomicU8::new(HOLDS),
            fence_recorded: AtomicBool::new(kind.is_shared()),
        }
    }

    /// The lock key, without the manager's prefix.
    pub fn key(&self) -> &str {
        &self.redis_key[self.key_at..]
    }

    /// What the key is held as: an exclusive lock, a read share or the write side of a
    /// read-write lock, or a semaphore's permit.
    pub fn kind(&self) -> LockKind {
        self.kind
    }

    /// The Redis key of the lock (prefix included).
    pub fn redis_key(&self) -> &str {
        &self.redis_key
    }

    /// A number strictly greater than the fencing token of every earlier holder of this key.
    ///
    /// Pass it along with every write made under the lock; a store that remembers the highest
    /// token it has seen and refuses lower ones is safe even from a holder that paused past its
    /// lease. See the [`fence`](crate::fence) module.
    pub fn fencing_token(&self) -> u64 {
        self.fence
    }

    /// The lease this lock was taken with.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A conservative estimate of how long the lock is still held, measured on this machine's
    /// monotonic clock from when the last acquire or renewal was sent, minus a drift allowance.
    /// Zero once the lease may have run out, or after release.
    pub fn remaining(&self) -> Duration {
        if self.state.load(Ordering::Acquire) != HOLDS {
            return Duration::ZERO;
        }
        self.lease_end().saturating_duration_since(Instant::now())
    }

    /// Whether the guard still believes it holds the lock (not released, not found lost, lease
    /// not run out).
    pub fn is_held(&self) -> bool {
        !self.remaining().is_zero()
    }

    /// The local, conservative end of the lease on this machine's monotonic clock: the last
    /// confirmed acquire or renewal's send time plus the ttl, minus the drift allowance. While
    /// the lock is held, [`remaining`](Self::remaining) counts down to it. It moves forward only
    /// with a confirmed renewal, and after the lock is released or found lost it still tells
    /// when the lease ended (or would have): the moment a holder's work stopped being
    /// protected, for a history of who held what when.
    pub fn lease_end(&self) -> Instant {
        self.acquired_at + Duration::from_nanos(self.lease_end.load(Ordering::Acquire))
    }

    /// Renews the lease to a full ttl from now, if this guard still holds the lock.
    ///
    /// Returns [`LockError::Lost`] if the lock is no longer held by this guard.
    pub async fn extend(&self) -> Result<(), LockError> {
        if self.state.load(Ordering::Acquire) != HOLDS {
            return Err(self.lost());
        }
        let result = self.extend_once().await;
        crate::metrics::renew(&result);
        result
    }

    async fn extend_once(&self) -> Result<(), LockError> {
        let sent = Instant::now();
        let ttl_ms = self.ttl.as_millis() as u64;
        let limit = self.manager.config.op_timeout;
        let fence = match self.fence_recorded.load(Ordering::Relaxed) {
            true => None,
            false => Some(self.fence),
        };
        let deployment = &self.manager.deployment;
        let renewed = crate::deadline::within(
            limit,
            self.key(),
            once_more(|| crate::lock::extend(deployment, self.holding(), ttl_ms, fence)),
        )
        .await
        .or_else(not_ours)?;
        if renewed {
            self.fence_recorded.store(true, Ordering::Relaxed);
            // Of two renewals confirmed concurrently, the one sent later counts.
            let end = lease_end(sent, self.ttl) - self.acquired_at;
            self.lease_end.fetch_max(nanos(end), Ordering::AcqRel);
            tracing::trace!(key = self.key(), "renewed");
            Ok(())
        } else {
            self.mark_lost();
            Err(self.lost())
        }
    }

    /// Releases the lock now.
    ///
    /// Deletes the key only if this guard's token still holds it, and wakes waiters. Returns
    /// [`LockError::Lost`] if the lock had already expired or been taken over.
    pub async fn release(self) -> Result<(), LockError> {
        self.release_ref().await
    }

    pub(crate) async fn release_ref(&self) -> Result<(), LockError> {
        match self.state.swap(RELEASED, Ordering::AcqRel) {
            HOLDS => {}
            LOST => return Err(self.lost()),
            _ => return Ok(()),
        }
        let span = tracing::debug_span!("redlock.release", key = self.key());
        release(&self.manager, self.holding(), self.acquired_at)
            .instrument(span)
            .await
    }

    /// The lock as release and extend name it.
    fn holding(&self) -> Holding<'_> {
        Holding {
            key: Key {
                redis: &self.redis_key,
                name_at: self.key_at,
            },
            kind: self.kind,
            fence_key: &self.manager.config.fence_key,
            token: self.token.as_str(),
        }
    }

    pub(crate) fn mark_lost(&self) {
        self.lose("lock lost");
    }

    /// The lease ran out while a body that does not renew (`renew = false`) still runs: the
    /// guard no longer counts as held, and the moment is logged and counted.
    pub(crate) fn mark_expired(&self) {
        self.lose("lease ran out while the body still runs (renew = false)");
    }

    /// No longer held, for the reason `why`: logged and counted once.
    fn lose(&self, why: &'static str) {
        if self
            .state
            .compare_exchange(HOLDS, LOST, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            tracing::warn!(key = self.key(), fence = self.fence, "{why}");
            crate::metrics::lost();
        }
    }

    pub(crate) fn lost(&self) -> LockError {
        LockError::Lost {
            key: self.key().to_owned(),
        }
    }

    /// When the next renewal is due: a third of the lease after the last confirmed one.
    pub(crate) fn renew_at(&self) -> Instant {
        let end = self.lease_end() + drift(self.ttl);
        end - self.ttl + self.ttl / 3
    }
}

/// Sends a compare-and-extend or compare-and-delete, and once more if the connection broke under
/// the first one (after a Redis restart the old connection fails once, the new one works). Both
/// are idempotent, so a first attempt that did reach Redis is harmless.
async fn once_more<T, F: std::future::Future<Output = Result<T, LockError>>>(
    send: impl Fn() -> F,
) -> Result<T, LockError> {
    match send().await {
        Err(e) if e.is_connection_dropped() => {
            tracing::debug!(error = %e, "connection dropped; sending again");
            send().await
        }
        other => other,
    }
}

/// A compare-and-extend or compare-and-delete that found the key holding another Redis type
/// (someone deleted the lock and stored, say, a list there) is a definite answer: the token is
/// not there, the lock is not ours. Any other error stays an error.
fn not_ours(error: LockError) -> Result<bool, LockError> {
    match &error {
        LockError::Redis { source, .. } if source.code() == Some("WRONGTYPE") => Ok(false),
        _ => Err(error),
    }
}

async fn release(
    manager: &Inner,
    lock: Holding<'_>,
    acquired_at: Instant,
) -> Result<(), LockError> {
    let result = release_once(manager, lock).await;
    crate::metrics::release(lock.kind, &result, acquired_at);
    result
}

async fn release_once(manager: &Inner, lock: Holding<'_>) -> Result<(), LockError> {
    let limit = manager.config.op_timeout;
    let released = crate::deadline::within(
        limit,
        lock.key.name(),
        once_more(|| crate::lock::release(&manager.deployment, lock)),
    )
    .await
    .or_else(|e| not_ours(e).map(|_| Released::NotHeld))?;
    if released != Released::NotHeld {
        let notices = manager.deployment.local_notices();
        match (&released, notices) {
            (Released::Freed, Some(notices)) => notices.released_locally(lock.key.redis),
            (Released::HandedOff(to, fence), Some(notices)) => {
                notices.handed_locally(to, *fence);
            }
            (Released::Shared { told_all, granted }, Some(notices)) => {
                for (to, fence) in granted {
                    notices.handed_locally(to, *fence);
                }
                if *told_all {
                    notices.released_locally(lock.key.redis);
                }
            }
            _ => {}
        }
        let handed_off = match &released {
            Released::HandedOff(..) => 1,
            Released::Shared { granted, .. } => granted.len(),
            _ => 0,
        };
        tracing::debug!(handed_off, "released");
        Ok(())
    } else {
        tracing::debug!("already expired or taken over at release");
        Err(LockError::Lost {
            key: lock.key.name().to_owned(),
        })
    }
}

/// Releases guards after a locked body finished; failures are logged, never returned, so they
/// cannot override the body's result (the lease expires anyway).
pub(crate) async fn release_after(guards: &[impl std::borrow::Borrow<LockGuard>]) {
    for guard in guards.iter().map(std::borrow::Borrow::borrow) {
        if guard.state.load(Ordering::Acquire) == LOST {
            continue;
        }
        if let Err(e) = guard.release_ref().await {
            tracing::warn!(key = guard.key(), error = %e, "release failed; the lease will expire");
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.state.load(Ordering::Acquire) != HOLDS {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(
                key = self.key(),
                "guard dropped outside a runtime; the lease will expire"
            );
            return;
        };
        let manager = self.manager.clone();
        let key_at = self.key_at;
        let kind = self.kind;
        let redis_key = std::mem::take(&mut self.redis_key);
        let token = self.token;
        let acquired_at = self.acquired_at;
        let span = tracing::debug_span!(
            "redlock.release",
            key = &redis_key[key_at..],
            on_drop = true
        );
        handle.spawn(
            async move {
                let lock = Holding {
                    key: Key {
                        redis: &redis_key,
                        name_at: key_at,
                    },
                    kind,
                    fence_key: &manager.config.fence_key,
                    token: token.as_str(),
                };
                if let Err(e) = release(&manager, lock, acquired_at).await {
                    tracing::debug!(error = %e, "release on drop failed; the lease will expire");
                }
            }
            .instrument(span),
        );
    }
}
