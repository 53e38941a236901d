//! Distributed locks for async Rust services, written as one attribute.
//!
//! ```
//! use redlock::{distributed_lock, LockError, LockManager};
//!
//! /// Withdraws from an account; one caller per account at a time, across every process.
//! #[distributed_lock(key = "account:<user_id>", ttl = "3s", wait = "4s", guard = lock)]
//! async fn withdraw(user_id: &str, amount: i64) -> Result<u64, LockError> {
//!     // read the balance, check it, write it back: safe, nobody else holds `account:<user_id>`
//!     Ok(lock.fencing_token())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = redlock::testing::RedisServer::spawn()?;
//! # let url = server.url();
//! // Once at start-up (without it, a manager is built from REDIS_URL on first use):
//! redlock::install(LockManager::new(&url)?).expect("first install");
//!
//! let first = withdraw("alice", 200).await?;
//! let second = withdraw("alice", 300).await?;
//! assert!(second > first, "fencing tokens increase");
//! # Ok(()) }
//! ```
//!
//! The attribute builds the key from the arguments, acquires the lock in Redis (waiting up to
//! `wait`, woken by the holder's release notice), runs the body while renewing the lease, stops
//! the body with [`LockError::Lost`] if the lock is lost, and releases it. See
//! [`distributed_lock`] for every option.
//!
//! Several keys, deadlock-free, and a manager passed explicitly (here from application state):
//!
//! ```
//! use redlock::{distributed_lock, LockError, LockManager};
//!
//! struct Bank {
//!     locks: LockManager,
//! }
//!
//! impl Bank {
//!     /// Locks both accounts in one canonical order: A→B and B→A never deadlock.
//!     #[distributed_lock(keys = ["account:<from>", "account:<to>"], wait = "2s", client = self.locks)]
//!     async fn transfer(&self, from: &str, to: &str, amount: i64) -> Result<(), LockError> {
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = redlock::testing::RedisServer::spawn()?;
//! let bank = Bank { locks: LockManager::new(&server.url())? };
//! let (a, b) = tokio::join!(bank.transfer("A", "B", 10), bank.transfer("B", "A", 20));
//! a?;
//! b?;
//! # Ok(()) }
//! ```
//!
//! Scheduled jobs that must run on one instance only skip instead of waiting:
//!
//! ```
//! use redlock::{distributed_lock, LockManager};
//!
//! #[distributed_lock(key = "job:nightly-report", ttl = "5m", on_busy = "skip", client = locks)]
//! async fn nightly_report(locks: &LockManager) -> Option<usize> {
//!     Some(42) // rows written
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = redlock::testing::RedisServer::spawn()?;
//! let locks = LockManager::new(&server.url())?;
//! let held = locks.acquire("job:nightly-report").await?; // another instance is running it
//! assert_eq!(nightly_report(&locks).await, None);
//! held.release().await?;
//! assert_eq!(nightly_report(&locks).await, Some(42));
//! # Ok(()) }
//! ```
//!
//! The runtime API ([`LockManager`], [`LockGuard`], [`LockManager::with_lock`]) serves code that
//! locks by hand; [`testing`] (feature `testing`) starts real `redis-server` processes for tests.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use redlock_macros::distributed_lock;
pub use redlock_runtime::{
    fence, global, install, renew, LockError, LockGuard, LockKind, LockManager, LockManagerBuilder,
    LockOptions, LockSet, DEFAULT_PREFIX, DEFAULT_RENEW, DEFAULT_TTL, DEFAULT_URL, DEFAULT_WAIT,
    MAX_TTL,
};

/// Real `redis-server` processes for tests (feature `testing`).
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub use redlock_runtime::testing;

#[doc(hidden)]
pub use redlock_runtime::__private;
