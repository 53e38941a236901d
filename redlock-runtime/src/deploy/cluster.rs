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
//! - **Lines of waiters** live in their key's slot too: `<fence key>:queue:{<tag>}:<key>` and
//!   `<fence key>:waiters:{<tag>}:<key>`, the tag before the key so that braces in the key (an
//!   unclosed `{`, an empty `{}`) never pair with the tag's.
//! - **Release notices** use sharded pub/sub: the release script `SPUBLISH`es on the key's shard
//!   channel, and waiters `SSUBSCRIBE` through one RESP3 cluster connection, which sends each
//!   subscription to the master of the channel's slot. A hand-off is told on the manager's own
//!   shard channel of the key, `<key>:granted:<id>.<runtime>` (with `:{<tag>}` after it when the key has
//!   no hash tag of its own); a key whose braces keep both names out of its slot has its
//!   hand-offs told on its own channel. When a slot moves, Redis ends its
//!   subscriptions: the current waiters look again and poll, the next waiter subscribes on the
//!   new master.
//!
//! Caveat: a cluster replicates asynchronously. A master that fails after granting a lock and
//! before its replica received the key lets the promoted replica grant the lock again; a master
//! restarted without persistence forgets its locks. Where that matters, use Redlock over
//! independent masters, and fencing tokens checked by the protected store in any case.

use std::sync::Arc;

use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

pub(crate) use crate::cluster_settings::ClusterSettings;
use crate::deploy::{slot, Call, Key, Notice, Place};
use crate::error::LockError;
use crate::link::Bound;
use crate::notify::{Notices, Subscription};
use crate::wire::Wire;

/// A connection attempt's outcome, once it ended.
type Attempting = tokio::sync::watch::Receiver<Option<Result<(), redis::RedisError>>>;

/// A Redis Cluster that holds locks.
pub(crate) struct Cluster {
    settings: Arc<ClusterSettings>,
    client: ClusterClient,
    /// The connection, once opened.
    conn: Arc<arc_swap::ArcSwapOption<ClusterConnection>>,
    /// The connection attempt under way, or the last one: its outcome once it ended.
    attempt: std::sync::Mutex<Option<Attempting>>,
    notices: Option<Notices>,
}

impl Cluster {
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
        let notices = self.notices.as_ref()?;
        Some(
            notices
                .subscribe(channel, grant_channel(notices, channel))
                .await,
        )
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

    /// Runs `call` on the master of the key's slot.
    pub(crate) async fn run<K: Call>(
        &self,
        key: Key<'_>,
        call: &K,
    ) -> Result<K::Answer, LockError> {
        let mut conn = self.connection(key.name()).await?;
        let bound = Bound::Timer(self.settings.op_timeout);
        let at = Place {
            slot: Some(slot::key_slot(key.redis.as_bytes())),
            notice: Notice::SPublish,
            hand_offs: true,
        };
        call.run(&mut Wire::new(&mut conn, bound, key.name(), None), at)
            .await
    }
}

impl Cluster {
    /// Every key matching `pattern` on every master, `count` at a time (`SCAN` sent to each
    /// master by its address, as `CLUSTER SLOTS` names them).
    pub(crate) async fn scan(&self, pattern: &str, count: usize) -> Result<Vec<String>, LockError> {
        use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
        let mut conn = self.connection("").await?;
        let limit = self.settings.op_timeout;
        let failed = |e: redis::RedisError| LockError::redis("", e);
        let slots = crate::deadline::within(limit, "", async {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SLOTS");
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
            conn.route_command(cmd, routing).await.map_err(failed)
        })
        .await?;
        // Each slot range: [start, end, [host, port, id], replicas...].
        let ranges: Vec<Vec<redis::Value>> =
            redis::from_redis_value(slots).map_err(|e| failed(redis::RedisError::from(e)))?;
        let mut masters: Vec<(String, u16)> = ranges
            .into_iter()
            .filter_map(|range| {
                let node = range.into_iter().nth(2)?;
                let (host, port): (String, u16) =
                    redis::from_redis_value::<Vec<redis::Value>>(node)
                        .ok()
                        .and_then(|node| {
                            let mut node = node.into_iter();
                            Some((
                                redis::from_redis_value(node.next()?).ok()?,
                                redis::from_redis_value(node.next()?).ok()?,
                            ))
                        })?;
                Some((host, port))
            })
            .collect();
        masters.sort_unstable();
        masters.dedup();
        let mut keys = Vec::new();
        for (host, port) in masters {
            let mut cursor = 0u64;
            loop {
                let step = crate::deadline::within(limit, "", async {
                    let mut cmd = redis::cmd("SCAN");
                    cmd.arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(count);
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port,
                    });
                    let reply = conn.route_command(cmd, routing).await.map_err(failed)?;
                    redis::from_redis_value::<(u64, Vec<String>)>(reply)
                        .map_err(|e| failed(redis::RedisError::from(e)))
                })
                .await?;
                keys.extend(step.1);
                if step.0 == 0 {
                    break;
                }
                cursor = step.0;
            }
        }
        Ok(keys)
    }
}

/// The manager's channel of hand-offs of `key`, in the key's slot (a shard channel must be):
/// the plain name when the key's own hash tag decides its slot, else with a tag of the key's
/// slot after it; `None` for the rare key whose braces keep both out of its slot (an unclosed
/// `{`), whose hand-offs are then told on its own channel.
fn grant_channel(notices: &Notices, key: &str) -> Option<String> {
    use super::slot::{companion, key_slot};
    let slot = key_slot(key.as_bytes());
    let plain = notices.grant_channel(key);
    let tagged = companion(&plain, slot);
    [plain, tagged]
        .into_iter()
        .find(|name| key_slot(name.as_bytes()) == slot)
}
