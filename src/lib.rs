//! Distributed locks for async Rust services, written as one attribute.
//!
//! See the README for the tour; the attribute is documented on [`distributed_lock`], the runtime
//! API on [`LockManager`] and [`LockGuard`].

pub use redlock_macros::distributed_lock;
pub use redlock_runtime::{
    fence, global, install, renew, LockError, LockGuard, LockManager, LockManagerBuilder,
    LockOptions, LockSet, DEFAULT_PREFIX, DEFAULT_URL, MAX_TTL,
};

/// Real `redis-server` processes for tests (feature `testing`).
#[cfg(feature = "testing")]
pub use redlock_runtime::testing;

#[doc(hidden)]
pub use redlock_runtime::__private;
