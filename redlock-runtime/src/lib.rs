//! Runtime of [redlock-attr](https://docs.rs/redlock-attr): distributed locks kept in Redis.
//!
//! Most users write `#[redlock::distributed_lock(...)]` and never touch this crate directly; it
//! holds what the attribute expands to, and an API for code that locks by hand:
//!
//! - [`LockManager`]: connections and settings; [`install`] / [`global`] for the process-global
//!   manager (built from `REDIS_URL` when none is installed).
//! - [`LockManager::acquire_with`] → [`LockGuard`] (key, [fencing token](fence), remaining
//!   lease, extend, release); [`LockManager::acquire_many`] for several keys, deadlock-free.
//! - [`LockManager::with_lock`]: acquire, run a future while renewing the lease, release; the
//!   future is stopped with [`LockError::Lost`] if the lock is lost.
//! - [`LockError`]: every failure, typed.
//! - The lock family, chosen with [`LockOptions`]: the exclusive lock (the default), a read
//!   share or the write side of a read-write lock ([`LockOptions::read`],
//!   [`LockOptions::write`]), a permit of a counting semaphore ([`LockOptions::permits`]); see
//!   [Read-write locks and semaphores](crate#read-write-locks-and-semaphores).
//!
//! Deployments: one server ([`LockManager::new`]), Redlock over independent masters
//! ([`LockManager::redlock`], see [`quorum`]), Redis Cluster (`LockManager::cluster`, feature
//! `cluster`) and Sentinel (`LockManager::sentinel`, feature `sentinel`); `rediss://` with the
//! `tls` feature. The attribute and the guards work the same over each.
//!
//! How it works: acquire is one round trip: `SET NX PX` pipelined with the fencing counter's
//! `INCR` while the lock looks free, a Lua script (taking the lock and the counter atomically,
//! or returning the holder's remaining lease) once it was seen busy; release is
//! compare-and-delete that publishes a release notice; extend is compare-and-pexpire. Waiters
//! wake on the notice (see [Waiting](crate#waiting)) and otherwise poll with jittered backoff,
//! never past the holder's lease.
//!
//! ```no_run
//! use std::time::Duration;
//! use redlock_runtime::{LockManager, LockOptions};
//!
//! # async fn demo() -> Result<(), redlock_runtime::LockError> {
//! let locks = LockManager::connect("redis://127.0.0.1:6379").await?;
//! let options = LockOptions::new(Duration::from_secs(3)).wait(Duration::from_secs(4));
//! let balance = locks
//!     .with_lock("account:7", &options, |guard| async move {
//!         // read-modify-write here; pass guard.fencing_token() to the store
//!         guard.fencing_token()
//!     })
//!     .await?;
//! # let _ = balance; Ok(()) }
//! ```
//!
//! # Waiting
//!
//! A busy lock is waited for up to `wait`, in line: the attempt that finds the lock busy puts
//! the waiter in the key's line of waiters on the server, in order of arrival, whichever
//! process it is in. The waiter subscribes to the key's notices (a pub/sub connection per
//! manager and runtime). A release hands the lock to the longest waiter in the same script that
//! deletes the holder's key, with the next fencing token, and tells the new holder's process
//! alone, on that process's own channel of the key's hand-offs (`<key>:granted:<id>.<runtime>`, named in
//! its place in line): the lock changes hands in one round trip, first come first served across
//! processes, and no other process wakes. A waiter attempts again only to keep its place, when the holder's lease
//! runs out, or at its deadline; without notices (or when one is missed) that attempt finds
//! the lock handed to it. Redlock keeps no line (a quorum of lines is not one line): its
//! waiters wake on any master's notice and poll with jittered backoff.
//!
//! Why it is safe:
//!
//! - **One holder.** The hand-off sets the lock key to the waiter's token only after deleting
//!   the releaser's, in one atomic script; nobody else can set it while it exists.
//! - **The lease never outlasts the server's.** A handed-over waiter counts its lease from when
//!   it sent its last attempt that found the lock busy. That attempt ran before the hand-off
//!   (had it run after, it would have found its own token and taken the lock itself), so the
//!   lease it counts ends no later than the one the server set.
//! - **Dead waiters are skipped.** A place lasts a grace (three of the longest backoff pauses
//!   plus a quarter of the operation timeout: 1.1 s by default) unless the waiter attempts
//!   again; expired places are skipped. A waiter killed less than one grace before its turn may
//!   still be handed the lock, which then expires after its ttl, as the lock of a killed holder
//!   does: the price of a hand-off that costs no further round trip.
//! - **Waiters that give up leave.** A wait that ends, an error or a dropped future takes the
//!   waiter out of line; if the lock was handed to it meanwhile, it is handed on. The line
//!   itself expires with its last place.
//! - **Fencing holds across hand-offs.** Each hand-off increments the key's counter in the same
//!   script, so tokens keep increasing with every holder.
//!
//! # Read-write locks and semaphores
//!
//! Both are *shared* locks, written once: the key is a sorted set of its holders, each scored
//! with the end of its own lease on the server's clock, plus one member naming the kind (`#rw`,
//! or `#<permits>` for a semaphore, so semaphores of different permits cannot share a key). A
//! holder is admitted when the key has room for it (a reader: no writer holds; a writer: nobody
//! holds; a permit: fewer than the permits hold) *and* nobody waits in line before it; a holder
//! whose lease ran out no longer counts and is removed by the next script that looks. Waiting,
//! hand-off, renewal, fencing and release work as for the exclusive lock, with one difference
//! in the hand-off: a release (or an attempt that finds expired holders) hands the key to the
//! longest waiters for as long as it admits them, in order, so readers behind a writer wait
//! for it and several readers behind a writer get in together when it leaves.
//!
//! Why it is safe: a writer is admitted only when the set holds nobody with a valid lease, and
//! nobody is admitted while a writer's lease is valid; a semaphore admits only while fewer than
//! its permits hold with a valid lease. Each holder's lease on the server starts at or after its
//! local lease (counted from when its attempt was sent), so no holder believes it holds after
//! the server stopped counting it. Every admission increments the key's fencing counter.
//!
//! On Redlock a read-write lock is held on a quorum (see [`quorum`]); no line is ordered there:
//! a waiting writer's place on a master keeps new readers out of that master, so readers cannot
//! starve writers, and writers take turns as exclusive locks do on Redlock. Semaphores are
//! refused on Redlock with [`LockError::Config`]: a quorum per holder does not bound holders.
//!
//! # Layers
//!
//! Modules import only from layers below them (no import circle), from the bottom up:
//!
//! 1. Leaves: `error`, `options` (defaults resolved in one place), `lease` (lease arithmetic),
//!    `redact`, `deadline` (bounds in the caller's task), `background` (the library's own
//!    connection thread), `metrics`, [`fence`], `scripts` (the Lua of every primitive, so a new
//!    connection loads them at once), `cluster_settings`.
//! 2. One server: `link` (a watched connection per runtime), `wire` (requests: commands,
//!    pipelines, scripts with the `NOSCRIPT` fallback, `WAIT` for replicas). Release notices:
//!    `notify`.
//! 3. `deploy`: where keys live, knowing no primitive. A deployment runs a primitive's call on
//!    the owner(s) of a key and returns the answers: `server` (one server), `redlock` (every
//!    master in parallel), [`cluster`] (the slot's master), [`sentinel`] (the named master).
//! 4. `shared` (a manager's deployment and settings), then the primitives. `lock`, the lock
//!    family: the calls and what their answers mean, once for every deployment
//!    (`lock::calls`, the shared locks' requests in `lock::shared`, and [`quorum`] for
//!    Redlock's answers), the acquisition loop (`lock::acquire`), `token`, [`LockGuard`],
//!    [`LockSet`]. Then [`renew`] (renewal while a body runs).
//! 5. [`LockManager`] (`manager`: plain guards, the global manager), then [`run`] (the one path
//!    for locked calls, `with_lock` and `with_locks` among them), then `builder` (targets, URL
//!    checks, TLS, constructors) and `__private` (the attribute's adapters).
//!
//! Read-write locks and semaphores were added this way: their scripts in `scripts`
//! (`shared_*.lua`, sharing the line's helpers with the exclusive lock's), their requests in
//! `lock::shared`, and a [`LockKind`] carried by each attempt, guard and release, so that the
//! acquisition loop, the guard, renewal and Redlock's quorum serve every kind unchanged. No
//! deployment changed. They did not get modules of their own beside `lock`, as first planned:
//! their answers are the exclusive lock's (taken, busy with a lease left, held by this task, lost,
//! another kind), so a module of their own would have repeated every call's reading.
//!
//! `testing` (feature `testing`) sits apart, on the public API.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

#[doc(hidden)]
pub mod __private;
mod admin;
mod background;
mod builder;
#[cfg(feature = "cluster")]
mod cluster_settings;
mod deadline;
mod deploy;
mod error;
pub mod fence;
mod kind;
mod lease;
mod link;
mod lock;
mod manager;
pub mod metrics;
mod notify;
mod options;
mod redact;
pub mod renew;
pub mod run;
mod scripts;
mod shared;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod wire;

#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub use deploy::cluster;
#[cfg(feature = "sentinel")]
#[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
pub use deploy::sentinel;
pub use lock::quorum;

pub use builder::LockManagerBuilder;
pub use error::LockError;
pub use lock::guard::LockGuard;
pub use lock::inspect::{Holder, Inspection};
pub use lock::set::LockSet;
pub use manager::{global, install, LockManager, DEFAULT_PREFIX, DEFAULT_URL};
pub use options::{LockKind, LockOptions, DEFAULT_RENEW, DEFAULT_TTL, DEFAULT_WAIT, MAX_TTL};
