//! Redis Cluster: locks routed by hash slot.
//!
//! A manager built with [`LockManager::cluster`](crate::LockManager::cluster) talks to the
//! cluster through the `redis` crate's cluster connection, which learns the slot map from the
//! seed nodes, sends each command to the master of its key's slot, and follows `MOVED` / `ASK`
//! redirections while slots migrate. Each lock is an ordinary single-master lock on the master
//! of its slot, with the same fast path and scripts as a single server; several keys
//! (`keys = [...]`) may live on different masters and are taken one by one in sorted order.
//!
//! - **Fencing**: a script or transaction may only touch keys of one slot, so the fencing
//!   counter is one per slot: `<fence key>:{<tag>}`, where `<tag>` is a short string that hashes
//!   to the lock key's slot. At most 16384 counters exist, whatever the number of lock keys, and
//!   tokens are strictly increasing per key (a key never changes slot; a slot migration moves
//!   its counter along with its locks).
//! - **Release notices** use sharded pub/sub: the release script `SPUBLISH`es on the key's shard
//!   channel, and waiters `SSUBSCRIBE` through one RESP3 cluster connection, which sends each
//!   subscription to the master of the channel's slot. When a slot moves, Redis ends its
//!   subscriptions: the current waiters look again and poll, the next waiter subscribes on the
//!   new master.
//!
//! Caveat: a cluster replicates asynchronously. A master that fails after granting a lock and
//! before its replica received the key lets the promoted replica grant the lock again; a master
//! restarted without persistence forgets its locks. Where that matters, use Redlock over
//! independent masters, and fencing tokens checked by the protected store in any case.

use std::sync::{Arc, LazyLock};

use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

pub(crate) use crate::cluster_client::ClusterSettings;
use crate::error::LockError;
use crate::link::Bound;
use crate::node::{attempt_on, extend_on, query_on, release_on};
use crate::scripts::{self, Attempt, Claim, Holding};
use crate::wait::{Notices, Subscription};

/// Number of hash slots of a Redis Cluster.
const SLOTS: usize = 16384;

/// A connection attempt's outcome, once it ended.
type Attempting = tokio::sync::watch::Receiver<Option<Result<(), redis::RedisError>>>;

/// A Redis Cluster that holds locks.
pub(crate) struct ClusterNode {
    settings: Arc<ClusterSettings>,
    client: ClusterClient,
    /// The connection, once opened.
    conn: Arc<arc_swap::ArcSwapOption<ClusterConnection>>,
    /// The connection attempt under way, or the last one: its outcome once it ended.
    attempt: std::sync::Mutex<Option<Attempting>>,
    notices: Option<Notices>,
}

impl ClusterNode {
    pub(crate) fn new(settings: ClusterSettings, notifications: bool) -> redis::RedisResult<Self> {
        let client =
            settings.client(None::<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>)?;
        let settings = Arc::new(settings);
        let notices = notifications.then(|| Notices::cluster(settings.clone()));
        Ok(Self {
            settings,
            client,
            conn: Arc::default(),
            attempt: std::sync::Mutex::default(),
            notices,
        })
    }

    /// A description for `Debug` output.
    pub(crate) fn describe(&self) -> String {
        format!(
            "cluster[{}]",
            crate::redact::urls(&self.settings.urls).join(", ")
        )
    }

    /// Subscribes to the release notices of `channel` (sharded pub/sub).
    pub(crate) async fn subscribe(
        &self,
        channel: &str,
    ) -> Option<redis::RedisResult<Subscription>> {
        Some(self.notices.as_ref()?.subscribe(channel).await)
    }

    /// The cluster connection, opened on first use.
    async fn connection(&self, key: &str) -> Result<ClusterConnection, LockError> {
        if let Some(conn) = self.conn.load_full() {
            return Ok((*conn).clone());
        }
        Box::pin(self.connect(key)).await
    }

    /// Opens the connection, or waits for the attempt under way. The attempt runs on the
    /// library's runtime, which drives the connection's tasks for every runtime of the process,
    /// and stores the connection itself: a caller whose runtime goes idle stalls nobody else.
    async fn connect(&self, key: &str) -> Result<ClusterConnection, LockError> {
        let limit = self.settings.op_timeout;
        let mut outcome = {
            let mut attempt = self.attempt.lock().unwrap_or_else(|e| e.into_inner());
            match &*attempt {
                Some(under_way) if under_way.borrow().is_none() => under_way.clone(),
                _ => {
                    let (report, outcome) = tokio::sync::watch::channel(None);
                    let client = self.client.clone();
                    let slot = self.conn.clone();
                    crate::background::spawn(async move {
                        let opened = crate::deadline::within(limit, "", async {
                            let mut conn = client
                                .get_async_connection()
                                .await
                                .map_err(|e| LockError::redis("", e))?;
                            crate::scripts::load_all(&mut conn, "", limit).await?;
                            Ok(conn)
                        })
                        .await;
                        let ended = opened.map(|conn| slot.store(Some(Arc::new(conn))));
                        let _ = report.send(Some(ended.map_err(|e| match e {
                            LockError::Redis { source, .. } => source,
                            other => crate::error::timed_out(&other.to_string()),
                        })));
                    });
                    *attempt = Some(outcome.clone());
                    outcome
                }
            }
        };
        crate::deadline::within(limit, key, async {
            let ended = outcome.wait_for(Option::is_some).await.map_err(|_| {
                LockError::redis(
                    key,
                    crate::error::timed_out("the cluster connection attempt"),
                )
            })?;
            match &*ended {
                Some(Err(e)) => Err(LockError::redis(key, e.clone())),
                _ => Ok(()),
            }
        })
        .await?;
        match self.conn.load_full() {
            Some(conn) => Ok((*conn).clone()),
            None => Err(LockError::redis(
                key,
                crate::error::timed_out("the cluster connection attempt"),
            )),
        }
    }

    /// `PING`s a random master.
    pub(crate) async fn ping(&self) -> Result<(), LockError> {
        let mut conn = self.connection("").await?;
        let _: String = query_on(
            &mut conn,
            Bound::Timer(self.settings.op_timeout),
            "",
            &redis::cmd("PING"),
        )
        .await?;
        Ok(())
    }

    /// One acquisition attempt on the master of the key's slot, with the slot's fence counter.
    pub(crate) async fn attempt(&self, claim: Claim<'_>) -> Result<Attempt, LockError> {
        let mut conn = self.connection(claim.key).await?;
        let fence_key = slot_fence_key(claim.fence_key, claim.redis_key);
        let claim = Claim {
            fence_key: &fence_key,
            ..claim
        };
        attempt_on(&mut conn, Bound::Timer(self.settings.op_timeout), claim).await
    }

    /// Compare-and-delete with a sharded release notice.
    pub(crate) async fn release(&self, lock: Holding<'_>) -> Result<bool, LockError> {
        let mut conn = self.connection(lock.key).await?;
        let bound = Bound::Timer(self.settings.op_timeout);
        release_on(&mut conn, bound, &scripts::RELEASE_SHARDED, lock).await
    }

    /// Compare-and-pexpire.
    pub(crate) async fn extend(&self, lock: Holding<'_>, ttl_ms: u64) -> Result<bool, LockError> {
        let mut conn = self.connection(lock.key).await?;
        extend_on(
            &mut conn,
            Bound::Timer(self.settings.op_timeout),
            lock,
            ttl_ms,
        )
        .await
    }
}

/// The fencing counter for `redis_key`: `<fence_key>:{<tag>}` in the key's slot.
pub(crate) fn slot_fence_key(fence_key: &str, redis_key: &str) -> String {
    let slot = key_slot(redis_key.as_bytes());
    format!("{fence_key}:{{{}}}", slot_tag(slot))
}

/// The hash slot of a key: CRC16 (XMODEM) of its hash tag (the first non-empty `{...}`) or of
/// the whole key, modulo 16384.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS as u16
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// For each slot, the smallest number whose base-36 spelling hashes to it.
static TAGS: LazyLock<Vec<u32>> = LazyLock::new(|| {
    let mut tags = vec![u32::MAX; SLOTS];
    let mut missing = SLOTS;
    let mut n = 0u32;
    while missing > 0 {
        let slot = usize::from(crc16(base36(n).as_bytes()) % SLOTS as u16);
        if tags[slot] == u32::MAX {
            tags[slot] = n;
            missing -= 1;
        }
        n += 1;
    }
    tags
});

/// A short string (no braces) whose hash slot is `slot`.
pub(crate) fn slot_tag(slot: u16) -> String {
    base36(TAGS[usize::from(slot) % SLOTS])
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::with_capacity(4);
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use redis::cluster_routing::Slot;

    use super::*;

    #[test]
    fn key_slot_matches_the_redis_crate_and_redis() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        for key in ["lock:account:7", "a", "{a}b", "x{}y", "{", "}{z}", ""] {
            assert_eq!(
                Slot::new(key_slot(key.as_bytes())),
                Some(Slot::for_key(key)),
                "{key}"
            );
        }
    }

    #[test]
    fn every_slot_has_a_tag_that_hashes_to_it() {
        for slot in 0..SLOTS as u16 {
            let tag = slot_tag(slot);
            assert!(tag.len() <= 4, "{tag}");
            assert_eq!(key_slot(tag.as_bytes()), slot);
        }
    }

    #[test]
    fn fence_counter_lives_in_the_lock_keys_slot() {
        for key in ["lock:a", "lock:account:7", "lock:{acct}:b", "x"] {
            let fence = slot_fence_key("redlock:fence", key);
            assert_eq!(
                key_slot(fence.as_bytes()),
                key_slot(key.as_bytes()),
                "{fence}"
            );
        }
    }
}
