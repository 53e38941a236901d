//! What `#[distributed_lock]` expansions call. Not public API: no stability promises.

use std::future::Future;
use std::sync::Arc;

pub use crate::{LockError, LockGuard, LockManager, LockOptions, LockSet};
pub use core::time::Duration;

use crate::guard::release_after;
use crate::renew;

/// Where a locked call takes its manager from.
#[derive(Debug, Clone, Copy)]
pub enum Client<'a> {
    /// The process-global manager ([`crate::global`]).
    Global,
    /// A manager given with `client = expr`.
    Given(&'a LockManager),
}

/// `client = expr`: anything that gives a [`LockManager`].
#[diagnostic::on_unimplemented(
    message = "`client = ...` must give a `redlock::LockManager`, found `{Self}`",
    label = "not a lock manager",
    note = "pass an expression of type `LockManager`, `&LockManager` or `Arc<LockManager>`, such as `client = self.locks`"
)]
pub trait AsLockManager {
    /// The manager.
    fn as_lock_manager(&self) -> &LockManager;
}

impl AsLockManager for LockManager {
    fn as_lock_manager(&self) -> &LockManager {
        self
    }
}

impl<T: AsLockManager + ?Sized> AsLockManager for &T {
    fn as_lock_manager(&self) -> &LockManager {
        (**self).as_lock_manager()
    }
}

impl<T: AsLockManager + ?Sized> AsLockManager for &mut T {
    fn as_lock_manager(&self) -> &LockManager {
        (**self).as_lock_manager()
    }
}

impl<T: AsLockManager + ?Sized> AsLockManager for Arc<T> {
    fn as_lock_manager(&self) -> &LockManager {
        (**self).as_lock_manager()
    }
}

impl<T: AsLockManager + ?Sized> AsLockManager for Box<T> {
    fn as_lock_manager(&self) -> &LockManager {
        (**self).as_lock_manager()
    }
}

/// `client = expr`: borrowed only while the locks are taken, before the body runs, so the
/// body may still borrow `self` mutably.
pub fn client<M: AsLockManager + ?Sized>(manager: &M) -> Client<'_> {
    Client::Given(manager.as_lock_manager())
}

/// No `client = ...`: the global manager.
pub const fn global_client() -> Client<'static> {
    Client::Global
}

/// A key placeholder's value: formatted with `Display`.
#[diagnostic::on_unimplemented(
    message = "lock key placeholder value `{Self}` does not implement `std::fmt::Display`",
    label = "used in the lock key here",
    note = "placeholders are formatted with `Display`: use a field that implements it (`<arg.id>`), or implement `Display` for `{Self}`"
)]
pub trait KeyPart {
    /// Appends the value to the key.
    fn push_to(&self, key: &mut String);
}

impl<T: core::fmt::Display + ?Sized> KeyPart for T {
    fn push_to(&self, key: &mut String) {
        use core::fmt::Write;
        let _ = write!(key, "{self}");
    }
}

/// Appends one placeholder's value to a key under construction.
pub fn push_part<T: KeyPart + ?Sized>(key: &mut String, value: &T) {
    value.push_to(key);
}

/// The return type of a function locked with `on_busy = "error"` (the default).
#[diagnostic::on_unimplemented(
    message = "a `#[distributed_lock]` function must return `Result<T, E>` with `E: From<redlock::LockError>`, found `{Self}`",
    label = "this return type cannot carry a `redlock::LockError`",
    note = "return e.g. `Result<T, redlock::LockError>` or `anyhow::Result<T>`, implement `From<redlock::LockError>` for your error type, or use `on_busy = \"skip\"` to skip the body when the lock is busy"
)]
pub trait LockResult {
    /// The value returned when the lock could not be taken or was lost.
    fn from_lock_error(error: LockError) -> Self;
}

#[diagnostic::do_not_recommend]
impl<T, E: From<LockError>> LockResult for Result<T, E> {
    fn from_lock_error(error: LockError) -> Self {
        Err(E::from(error))
    }
}

/// The return type of a function locked with `on_busy = "skip"`.
#[diagnostic::on_unimplemented(
    message = "with `on_busy = \"skip\"` a `#[distributed_lock]` function must return `()`, `Option<T>` or `Result<Option<T>, E>`, found `{Self}`",
    label = "cannot represent a skipped call",
    note = "a busy lock gives `()`, `None` or `Ok(None)`"
)]
pub trait SkipResult {
    /// The value returned when the lock was busy and the body skipped.
    fn skipped() -> Self;
    /// The value returned for other failures (lost lock, Redis errors).
    fn from_lock_error(error: LockError) -> Self;
}

impl SkipResult for () {
    fn skipped() -> Self {}
    fn from_lock_error(error: LockError) -> Self {
        tracing::error!(error = %error, "locked call failed");
    }
}

impl<T> SkipResult for Option<T> {
    fn skipped() -> Self {
        None
    }
    fn from_lock_error(error: LockError) -> Self {
        tracing::error!(error = %error, "locked call failed");
        None
    }
}

#[diagnostic::do_not_recommend]
impl<T, E: From<LockError>> SkipResult for Result<Option<T>, E> {
    fn skipped() -> Self {
        Ok(None)
    }
    fn from_lock_error(error: LockError) -> Self {
        Err(E::from(error))
    }
}

/// What the body of a locked call receives: the locks it holds.
#[derive(Debug)]
pub struct Held(Arc<LockSet>);

impl Held {
    /// The (first) lock: what `guard = name` binds with `key = ...`.
    pub fn guard(&self) -> &LockGuard {
        match self.0.iter().next() {
            Some(guard) => guard,
            None => unreachable!("a locked call holds at least one lock"),
        }
    }

    /// All locks: what `guard = name` binds with `keys = [...]`.
    pub fn set(&self) -> &LockSet {
        &self.0
    }
}

/// The locks taken by one enclosing locked call of the current task, and those of the calls
/// around it.
#[derive(Clone)]
struct Scope {
    manager: usize,
    /// The locks this call took itself.
    taken: Arc<LockSet>,
    outer: Option<Arc<Scope>>,
}

impl Scope {
    /// Where the guard of `key` is held through `manager`, by this call or an enclosing one.
    fn find(&self, manager: usize, key: &str) -> Option<(Arc<LockSet>, usize)> {
        let mut scope = Some(self);
        while let Some(held) = scope {
            if held.manager == manager {
                if let Some(position) = held.taken.position(key) {
                    return Some((held.taken.clone(), position));
                }
            }
            scope = held.outer.as_deref();
        }
        None
    }
}

tokio::task_local! {
    /// Locks held by the current task's enclosing locked calls (reentrancy).
    static HELD: Scope;
}

/// The locks a call took (or found held by the calls around it), ready for its body.
pub struct Taken {
    /// What the body sees.
    set: Arc<LockSet>,
    scope: Scope,
    renew: bool,
}

/// Takes `keys` for a locked call: those the task does not hold yet, together, all or
/// nothing, in sorted order. Needs the manager only until it returns.
pub async fn enter<const N: usize>(
    client: Client<'_>,
    mut keys: [String; N],
    options: LockOptions,
) -> Result<Taken, LockError> {
    let manager = match client {
        Client::Global => crate::global()?,
        Client::Given(manager) => manager,
    };
    let id = Arc::as_ptr(&manager.inner) as usize;
    // A single key, the common case, is taken right here: without sorting, and without the
    // extra layer of `take`'s future, which measured about 1 % of a cycle in the benchmark.
    let keys = match &mut keys[..] {
        [] | [_] => &mut keys[..],
        many => {
            many.sort_unstable();
            distinct(many)
        }
    };
    let renew = options.renews();
    let scope = match HELD.try_with(Clone::clone) {
        // The outermost locked call of its task: the common case, kept small.
        Err(_) => Scope {
            manager: id,
            taken: Arc::new(match keys {
                [key] => LockSet::one(manager.acquire_owned(std::mem::take(key), &options).await?),
                // Boxed: inline, its future would make every single-key call's future larger.
                many => Box::pin(take(manager, many, &options)).await?,
            }),
            outer: None,
        },
        // Boxed: its future would make every outermost call's future larger.
        Ok(outer) => return Box::pin(enter_nested(manager, id, keys, options, outer)).await,
    };
    Ok(Taken {
        set: scope.taken.clone(),
        scope,
        renew,
    })
}

/// [`enter`] inside another locked call: keys an enclosing call holds are not taken again.
async fn enter_nested(
    manager: &LockManager,
    id: usize,
    keys: &mut [String],
    options: LockOptions,
    outer: Scope,
) -> Result<Taken, LockError> {
    let mut missing: Vec<String> = keys
        .iter()
        .filter(|key| outer.find(id, key).is_none())
        .cloned()
        .collect();
    let taken = Arc::new(take(manager, &mut missing, &options).await?);
    let held = keys
        .iter()
        .map(|key| {
            outer
                .find(id, key)
                .unwrap_or_else(|| match taken.position(key) {
                    Some(position) => (taken.clone(), position),
                    None => unreachable!("every missing key was acquired"),
                })
        })
        .collect();
    Ok(Taken {
        set: Arc::new(LockSet::held(held)),
        scope: Scope {
            manager: id,
            taken,
            outer: Some(Arc::new(outer)),
        },
        renew: options.renews(),
    })
}

/// Runs `body` under the locks `enter` took, with `on_busy = "error"`.
pub fn lock<R, F, Fut>(taken: Result<Taken, LockError>, body: F) -> impl Future<Output = R>
where
    R: LockResult,
    F: FnOnce(Held) -> Fut,
    Fut: Future<Output = R>,
{
    run(taken, body, R::from_lock_error)
}

/// Runs `body` under the locks `enter` took, with `on_busy = "skip"`.
pub fn lock_or_skip<R, F, Fut>(taken: Result<Taken, LockError>, body: F) -> impl Future<Output = R>
where
    R: SkipResult,
    F: FnOnce(Held) -> Fut,
    Fut: Future<Output = R>,
{
    run(taken, body, |error| match error {
        LockError::Timeout { key, waited } => {
            tracing::debug!(
                key,
                waited_ms = waited.as_millis() as u64,
                "lock busy; body skipped"
            );
            R::skipped()
        }
        error => R::from_lock_error(error),
    })
}

/// Runs `body` under the locks `enter` took; a failure to take them, or a lock lost while the
/// body runs, becomes the call's result through `failed`.
async fn run<R, F, Fut>(
    taken: Result<Taken, LockError>,
    body: F,
    failed: impl FnOnce(LockError) -> R,
) -> R
where
    F: FnOnce(Held) -> Fut,
    Fut: Future<Output = R>,
{
    let Taken { set, scope, renew } = match taken {
        Ok(taken) => taken,
        Err(error) => return failed(error),
    };
    // Only the call that took a lock renews and releases it.
    let taken = scope.taken.clone();
    let body = HELD.scope(scope, body(Held(set)));
    let outcome = renew::hold(taken.taken(), renew, body).await;
    release_after(taken.taken()).await;
    outcome.unwrap_or_else(failed)
}

/// Acquires `keys` (sorted, distinct) together: all or nothing. A single key's buffer becomes
/// its Redis key.
async fn take(
    manager: &LockManager,
    keys: &mut [String],
    options: &LockOptions,
) -> Result<LockSet, LockError> {
    Ok(match keys {
        [] => LockSet::default(),
        [key] => LockSet::one(manager.acquire_owned(std::mem::take(key), options).await?),
        many => LockSet::many(manager.acquire_many(many, options).await?),
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
