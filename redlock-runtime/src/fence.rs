//! Fencing tokens.
//!
//! A lease-based lock cannot stop a holder that pauses (a GC pause, a stopped VM, a slow
//! network) past its lease from writing after someone else took the lock. Fencing tokens can:
//! every acquisition gets a number strictly greater than every earlier holder's, and a store
//! that keeps the highest token it has seen and refuses writes carrying a lower one is safe.
//!
//! ## Scheme
//!
//! Every acquisition increments one counter (default Redis key `redlock:fence`, set with
//! [`LockManagerBuilder::fence_key`](crate::LockManagerBuilder::fence_key)) and takes the new
//! value as its token. The counter is shared by all keys, so tokens are strictly increasing per
//! key (and globally), across holders, across expiries, and across processes, while the only
//! state is that one counter: locking a million distinct keys leaves nothing behind once their
//! leases are gone. A server restart without persistence resets the counter, like every lock it
//! held; run Redis with AOF or RDB if tokens must survive that.
//!
//! A lock that is likely free is taken with `SET NX PX` and `INCR` pipelined in one round trip
//! (the cost of a bare lock); otherwise one script does both atomically. The pipelined pair is
//! not atomic, and need not be: between our `SET` and our `INCR` nobody else can take the key
//! unless our lease ran out in between, and an answer that arrives later than the lease (less
//! 1% for clock rates) is never handed out: the lock is given back and the attempt counts as
//! failed. So every token in use was drawn while its holder held the lock, and holders hold it
//! one after another: a later holder's `INCR` comes after an earlier holder's.
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
