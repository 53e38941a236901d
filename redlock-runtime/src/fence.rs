//! Fencing tokens.
//!
//! A lease-based lock cannot stop a holder that pauses (a GC pause, a stopped VM, a slow
//! network) past its lease from writing after someone else took the lock. Fencing tokens can:
//! every acquisition gets a number strictly greater than every earlier holder's, and a store
//! that keeps the highest token it has seen and refuses writes carrying a lower one is safe.
//!
//! ## Scheme
//!
//! The acquire script increments one counter (default Redis key `redlock:fence`, set with
//! [`LockManagerBuilder::fence_key`](crate::LockManagerBuilder::fence_key)) in the same atomic
//! step that takes the lock, and returns the new value as the token. The counter is shared by
//! all keys, so tokens are strictly increasing per key (and globally), across holders, across
//! expiries, and across processes, while the only state is that one counter: locking a million
//! distinct keys leaves nothing behind once their leases are gone. A server restart without
//! persistence resets the counter, like every lock it held; run Redis with AOF or RDB if tokens
//! must survive that.
//!
//! ```
//! /// A store that refuses writes from holders that lost their lock.
//! struct FencedStore { highest_token: u64, value: i64 }
//!
//! impl FencedStore {
//!     fn write(&mut self, token: u64, value: i64) -> Result<(), &'static str> {
//!         if token < self.highest_token {
//!             return Err("stale fencing token: a newer holder has written");
//!         }
//!         self.highest_token = token;
//!         self.value = value;
//!         Ok(())
//!     }
//! }
//!
//! let mut store = FencedStore { highest_token: 0, value: 0 };
//! store.write(8, 500).unwrap();            // the current holder
//! assert!(store.write(7, 700).is_err());   // a holder that paused past its lease
//! ```

/// Default Redis key of the fencing counter.
pub const DEFAULT_COUNTER_KEY: &str = "redlock:fence";
