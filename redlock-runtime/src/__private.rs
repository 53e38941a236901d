//! What `#[distributed_lock]` expansions call. Not public API: no stability promises.

use std::future::Future;
use std::sync::Arc;

pub use crate::error::LockError;
pub use crate::lock::guard::LockGuard;
pub use crate::lock::set::LockSet;
pub use crate::manager::LockManager;
pub use crate::options::LockOptions;
pub use core::time::Duration;

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
pub struct BodyLocks(LockSet);

impl BodyLocks {
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

pub use crate::run::Entered;

/// Takes `keys` for a locked call (see [`crate::run`]). Needs the manager only until it
/// returns; the options are those written in the attribute, the manager resolves the rest.
pub async fn enter<const N: usize>(
    client: Client<'_>,
    mut keys: [String; N],
    options: LockOptions,
) -> Result<Entered, LockError> {
    let manager = match client {
        Client::Global => crate::manager::global()?,
        Client::Given(manager) => manager,
    };
    crate::run::enter(manager, &mut keys, &options).await
}

/// Runs `body` under the locks `enter` took, with `on_busy = "error"`.
pub fn lock<R, F, Fut>(entered: Result<Entered, LockError>, body: F) -> impl Future<Output = R>
where
    R: LockResult,
    F: FnOnce(BodyLocks) -> Fut,
    Fut: Future<Output = R>,
{
    run(entered, body, R::from_lock_error)
}

/// Runs `body` under the locks `enter` took, with `on_busy = "skip"`.
pub fn lock_or_skip<R, F, Fut>(
    entered: Result<Entered, LockError>,
    body: F,
) -> impl Future<Output = R>
where
    R: SkipResult,
    F: FnOnce(BodyLocks) -> Fut,
    Fut: Future<Output = R>,
{
    run(entered, body, |error| match error {
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

/// Runs `body` under the locks `enter` took.
fn run<R, F, Fut>(
    entered: Result<Entered, LockError>,
    body: F,
    failed: impl FnOnce(LockError) -> R,
) -> impl Future<Output = R>
where
    F: FnOnce(BodyLocks) -> Fut,
    Fut: Future<Output = R>,
{
    crate::run::run(entered, |set| body(BodyLocks(set)), failed)
}
