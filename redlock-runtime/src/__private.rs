//! What `#[distributed_lock]` expansions call. Not public API: no stability promises.

use std::future::Future;
use std::sync::Arc;

pub use crate::{LockError, LockGuard, LockManager, LockOptions, LockSet};
pub use core::time::Duration;

use crate::guard::release_after;
use crate::renew;

/// Where a locked call takes its manager from.
#[derive(Debug, Clone)]
pub enum Client {
    /// The process-global manager ([`crate::global`]).
    Global,
    /// A manager given with `client = expr`.
    Given(LockManager),
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

/// `client = expr`, resolved before the body runs (a cheap clone, so the body may still
/// borrow `self` mutably).
pub fn client<M: AsLockManager + ?Sized>(manager: &M) -> Client {
    Client::Given(manager.as_lock_manager().clone())
}

/// No `client = ...`: the global manager.
pub const fn global_client() -> Client {
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
#[derive(Debug, Clone)]
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

#[derive(Clone)]
struct HeldKey {
    manager: usize,
    guard: Arc<LockGuard>,
}

tokio::task_local! {
    /// Locks held by the current task's enclosing locked calls (reentrancy).
    static HELD: Vec<HeldKey>;
}

/// Runs `body` under `keys` with `on_busy = "error"`.
pub async fn lock<R, F, Fut>(client: Client, keys: Vec<String>, options: LockOptions, body: F) -> R
where
    R: LockResult,
    F: FnOnce(Held) -> Fut,
    Fut: Future<Output = R>,
{
    match run(client, keys, options, body).await {
        Ok(output) => output,
        Err(error) => R::from_lock_error(error),
    }
}

/// Runs `body` under `keys` with `on_busy = "skip"`.
pub async fn lock_or_skip<R, F, Fut>(
    client: Client,
    keys: Vec<String>,
    options: LockOptions,
    body: F,
) -> R
where
    R: SkipResult,
    F: FnOnce(Held) -> Fut,
    Fut: Future<Output = R>,
{
    match run(client, keys, options, body).await {
        Ok(output) => output,
        Err(LockError::Timeout { key, waited }) => {
            tracing::debug!(
                key,
                waited_ms = waited.as_millis() as u64,
                "lock busy; body skipped"
            );
            R::skipped()
        }
        Err(error) => R::from_lock_error(error),
    }
}

async fn run<R, F, Fut>(
    client: Client,
    mut keys: Vec<String>,
    options: LockOptions,
    body: F,
) -> Result<R, LockError>
where
    F: FnOnce(Held) -> Fut,
    Fut: Future<Output = R>,
{
    let manager = match client {
        Client::Global => crate::global()?.clone(),
        Client::Given(manager) => manager,
    };
    let id = Arc::as_ptr(&manager.inner) as usize;
    keys.sort_unstable();
    keys.dedup();
    let outer: Vec<HeldKey> = HELD.try_with(Clone::clone).unwrap_or_default();
    let reused = |key: &str| {
        outer
            .iter()
            .find(|held| held.manager == id && held.guard.key() == key)
            .map(|held| held.guard.clone())
    };
    // The keys this task does not hold yet (all of them outside any locked call), taken
    // together, all or nothing, in sorted order.
    let acquired = if outer.is_empty() {
        take(&manager, &keys, &options).await?
    } else {
        let fresh: Vec<&str> = keys
            .iter()
            .map(String::as_str)
            .filter(|key| reused(key).is_none())
            .collect();
        take(&manager, &fresh, &options).await?
    };
    let guards: Vec<Arc<LockGuard>> = if acquired.len() == keys.len() {
        acquired.clone()
    } else {
        keys.iter()
            .map(|key| match reused(key) {
                Some(guard) => guard,
                None => acquired
                    .iter()
                    .find(|guard| guard.key() == key)
                    .cloned()
                    .unwrap_or_else(|| unreachable!("every fresh key was acquired")),
            })
            .collect()
    };
    let set = Arc::new(LockSet::new(guards));
    let mut scope = outer;
    scope.extend(acquired.iter().map(|guard| HeldKey {
        manager: id,
        guard: guard.clone(),
    }));
    let body = HELD.scope(scope, body(Held(set)));
    let outcome = renew::hold(&acquired, options.renews(), body).await;
    release_after(&acquired).await;
    outcome
}

/// Acquires `keys` (sorted, distinct) together: all or nothing.
async fn take<K: AsRef<str>>(
    manager: &LockManager,
    keys: &[K],
    options: &LockOptions,
) -> Result<Vec<Arc<LockGuard>>, LockError> {
    Ok(match keys {
        [] => Vec::new(),
        [key] => vec![Arc::new(manager.acquire_with(key.as_ref(), options).await?)],
        many => manager
            .acquire_many(many, options)
            .await?
            .into_iter()
            .map(Arc::new)
            .collect(),
    })
}
