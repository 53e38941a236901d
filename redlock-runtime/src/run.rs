//! Running a body under a set of locks: the one path behind [`LockManager::with_lock`],
//! [`LockManager::with_locks`] (both defined here) and the attribute.
//!
//! A locked call takes its keys (`enter`), then runs its body while renewing the leases,
//! drops the body when a lock is lost, and releases what it took (`run`). Reentrancy has one
//! rule, the same for every entry point:
//!
//! - A locked call inside another locked call of the same task (the body's future, however
//!   deeply nested) does not take again the keys an enclosing call holds through the same
//!   manager: it shares those locks, takes only the others, and releases only what it took.
//!   Concurrent branches of one task (`join!`) are not nested in each other: they wait for each
//!   other like separate tasks.
//! - Sharing needs the same kind of lock: a read inside a read or inside a write shares the
//!   enclosing lock, as does a permit inside a permit of the same semaphore; a write inside a
//!   read fails at once with [`LockError::Upgrade`] (it would wait for its own read share), and
//!   another kind of lock on the same key with [`LockError::OtherKind`].
//! - A locked call asking for a key that a plain [`LockGuard`] (from `acquire_with`) of the
//!   same task holds fails at once with [`LockError::HeldByThisTask`]: it cannot share a guard
//!   it does not see, and waiting would only wait for itself. (The guard's token in Redis names
//!   its task; see `lock::token::Token`.)
//! - A plain `acquire_with` never shares: it waits for a busy key whoever holds it.

use std::future::Future;
use std::sync::Arc;

use crate::error::LockError;
use crate::lock::guard::{release_after, LockGuard};
use crate::lock::set::LockSet;
use crate::manager::LockManager;
use crate::options::{LockKind, LockOptions};
use crate::renew;

impl LockManager {
    /// Acquires `key`, runs `body` while renewing the lease, then releases.
    ///
    /// `body` receives the guard (shared, so the future it returns may keep it). When the lock is
    /// found lost while `body` runs, `body` is dropped and the call returns [`LockError::Lost`].
    /// A failed release after a finished body is logged, not returned: the body's result stands
    /// and the lease expires by itself.
    ///
    /// This is the same locked call as the attribute's (see [`crate::run`]): nested inside
    /// another locked call of the same task that holds `key` (`with_lock`, `with_locks` or an
    /// attributed function), it shares that lock instead of waiting for it; a key held by a
    /// plain [`LockGuard`] of the same task fails at once with [`LockError::HeldByThisTask`].
    pub async fn with_lock<F, Fut, T>(
        &self,
        key: &str,
        options: &LockOptions,
        body: F,
    ) -> Result<T, LockError>
    where
        F: FnOnce(Arc<LockGuard>) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let mut keys = [key.to_owned()];
        let entered = enter(self, &mut keys, options).await;
        run(
            entered,
            |set| {
                let guard = set.shared()[0].clone();
                async move { Ok(body(guard).await) }
            },
            Err,
        )
        .await
    }

    /// Acquires `keys` together (deduplicated, in sorted order, all or nothing, as
    /// [`Self::acquire_many`]), runs `body` while renewing every lease, then releases: the
    /// several-key form of [`Self::with_lock`], with the same sharing of keys held by enclosing
    /// locked calls of the task.
    pub async fn with_locks<K, F, Fut, T>(
        &self,
        keys: &[K],
        options: &LockOptions,
        body: F,
    ) -> Result<T, LockError>
    where
        K: AsRef<str>,
        F: FnOnce(LockSet) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let mut keys: Vec<String> = keys.iter().map(|key| key.as_ref().to_owned()).collect();
        let entered = enter(self, &mut keys, options).await;
        run(entered, |set| async move { Ok(body(set).await) }, Err).await
    }
}

/// The locks taken by one enclosing locked call of the current task, and those of the calls
/// around it.
#[derive(Clone)]
struct Scope {
    manager: usize,
    /// The locks this call took itself.
    own: LockSet,
    outer: Option<Arc<Scope>>,
}

impl Scope {
    /// The guard of `key` held through `manager`, by this call or an enclosing one.
    fn find(&self, manager: usize, key: &str) -> Option<&Arc<LockGuard>> {
        let mut scope = Some(self);
        while let Some(call) = scope {
            if call.manager == manager {
                if let Some(guard) = call.own.find(key) {
                    return Some(guard);
                }
            }
            scope = call.outer.as_deref();
        }
        None
    }
}

tokio::task_local! {
    /// Locks held by the current task's enclosing locked calls (reentrancy).
    static HELD_KEYS: Scope;
}

/// The locks a call took (or found held by the calls around it), ready for its body.
#[doc(hidden)]
pub struct Entered {
    /// What the body sees.
    view: LockSet,
    scope: Scope,
    renew: bool,
}

/// Takes `keys` for a locked call: those the task's enclosing locked calls do not hold yet,
/// together, all or nothing, in sorted order. `keys` are left reordered (and emptied).
pub(crate) async fn enter(
    manager: &LockManager,
    keys: &mut [String],
    options: &LockOptions,
) -> Result<Entered, LockError> {
    let settings = manager.settings(options)?;
    let id = Arc::as_ptr(&manager.inner) as usize;
    // A single key, the common case, is taken right here: without sorting, and without the
    // extra layer of `take`'s future, which measured about 1 % of a cycle in the benchmark.
    let keys = match keys {
        [] | [_] => keys,
        many => {
            many.sort_unstable();
            distinct(many)
        }
    };
    let scope = match HELD_KEYS.try_with(Clone::clone) {
        // The outermost locked call of its task: the common case, kept small.
        Err(_) => Scope {
            manager: id,
            own: match keys {
                [key] => LockSet::one(Arc::new(
                    manager
                        .acquire_for_call(std::mem::take(key), &settings)
                        .await?,
                )),
                // Boxed: inline, its future would make every single-key call's future larger.
                many => Box::pin(take(manager, many, &settings)).await?,
            },
            outer: None,
        },
        // Boxed: its future would make every outermost call's future larger.
        Ok(outer) => return Box::pin(enter_nested(manager, id, keys, settings, outer)).await,
    };
    Ok(Entered {
        view: scope.own.clone(),
        scope,
        renew: settings.renew,
    })
}

/// [`enter`] inside another locked call: keys an enclosing call holds are not taken again.
async fn enter_nested(
    manager: &LockManager,
    id: usize,
    keys: &mut [String],
    settings: crate::options::Settings,
    outer: Scope,
) -> Result<Entered, LockError> {
    for key in keys.iter() {
        if let Some(held) = outer.find(id, key) {
            shares(held, settings.kind)?;
        }
    }
    let mut missing: Vec<String> = keys
        .iter()
        .filter(|key| outer.find(id, key).is_none())
        .cloned()
        .collect();
    let own = take(manager, &mut missing, &settings).await?;
    let view = keys
        .iter()
        .map(|key| match outer.find(id, key).or_else(|| own.find(key)) {
            Some(guard) => guard.clone(),
            None => unreachable!("every missing key was acquired"),
        })
        .collect();
    Ok(Entered {
        view: LockSet::many(view),
        scope: Scope {
            manager: id,
            own,
            outer: Some(Arc::new(outer)),
        },
        renew: settings.renew,
    })
}

/// Whether a nested call asking for `asked` may share `held`, the enclosing call's lock of the
/// key: the same kind, or a read inside a write.
fn shares(held: &LockGuard, asked: LockKind) -> Result<(), LockError> {
    match (held.kind(), asked) {
        (found, wanted) if found == wanted => Ok(()),
        (LockKind::Write, LockKind::Read) => Ok(()),
        (LockKind::Read, LockKind::Write) => Err(LockError::Upgrade {
            key: held.key().to_owned(),
        }),
        (found, asked) => Err(LockError::OtherKind {
            key: held.key().to_owned(),
            found,
            asked,
        }),
    }
}

/// Runs `body` under the locks [`enter`] took; a failure to take them, or a lock lost while the
/// body runs, becomes the call's result through `failed`. Only the call that took a lock
/// renews and releases it.
pub(crate) async fn run<R, F, Fut>(
    entered: Result<Entered, LockError>,
    body: F,
    failed: impl FnOnce(LockError) -> R,
) -> R
where
    F: FnOnce(LockSet) -> Fut,
    Fut: Future<Output = R>,
{
    let Entered { view, scope, renew } = match entered {
        Ok(entered) => entered,
        Err(error) => return failed(error),
    };
    let own = scope.own.clone();
    let body = HELD_KEYS.scope(scope, body(view));
    let outcome = renew::hold(own.shared(), renew, body).await;
    release_after(own.shared()).await;
    outcome.unwrap_or_else(failed)
}

/// Acquires `keys` (sorted, distinct) together: all or nothing. A single key's buffer becomes
/// its Redis key.
async fn take(
    manager: &LockManager,
    keys: &mut [String],
    settings: &crate::options::Settings,
) -> Result<LockSet, LockError> {
    Ok(match keys {
        [] => LockSet::default(),
        [key] => LockSet::one(Arc::new(
            manager
                .acquire_for_call(std::mem::take(key), settings)
                .await?,
        )),
        many => LockSet::many(
            manager
                .acquire_sorted(many, settings, Some(crate::lock::token::task_tag()))
                .await?
                .into_iter()
                .map(Arc::new)
                .collect(),
        ),
    })
}

/// The distinct keys of sorted `keys`, moved to its front.
fn distinct(keys: &mut [String]) -> &mut [String] {
    let mut len = 0;
    for i in 0..keys.len() {
        if len == 0 || keys[i] != keys[len - 1] {
            keys.swap(len, i);
            len += 1;
        }
    }
    &mut keys[..len]
}
