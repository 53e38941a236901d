//! Waiting for a busy lock: release notices over pub/sub, and jittered backoff as the fallback.
//!
//! A manager opens a pub/sub connection on first contention: on one server, one per tokio
//! runtime whose tasks wait, driven by that runtime, so that a notice is read on a thread of
//! the runtime it wakes a waiter of (see `listener`). Each waited-on key has an entry
//! with a reference count and a [`Notify`]; the first waiter subscribes to the key's channel, the
//! last one to leave unsubscribes. A release notice (published by the release script) wakes the
//! longest-waiting local waiter, not all of them, so a hand-off costs one round trip and no
//! thundering herd; a waiter that gives up after being woken passes the wake-up on. A lost
//! notice only costs latency: waiters also poll with exponential backoff and full jitter, never
//! sleeping past the holder's remaining lease. A dropped pub/sub connection wakes every waiter.
//!
//! A hand-off to a waiter in a key's line is told on a second channel, the manager's own for
//! that key and the waiter's runtime (`<key>:granted:<id>.<runtime>`, subscribed with the key's
//! in one command), which the waiter names in its place: of all the processes waiting for a
//! key, only the new holder's reads it, on the new holder's runtime. Told on the key's channel,
//! every waiting process would wake for every hand-off.
//!
//! Per deployment: one server (or the master named by Sentinel) uses `SUBSCRIBE`; a Redis
//! Cluster uses sharded pub/sub (`SSUBSCRIBE` through one RESP3 cluster connection, which sends
//! each subscription to the master of the channel's slot); a Redlock manager listens on one of
//! its masters, every master publishing each release. A waiter whose subscription fails polls,
//! and tries to subscribe again after a second.
//!
//! One concern in one file, a little over 400 lines: the table of waited-on keys, subscribing
//! and the dispatch of notices (hand-offs among them) share their private state; a waiter's own
//! side is `subscription`, the connections are `listener`, polling's backoff is `backoff`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::{PushInfo, PushKind, Value};
use tokio::sync::Notify;

mod backoff;
mod listener;
mod subscription;

use listener::{Listener, Listeners, Source};

pub(crate) use backoff::Backoff;
pub(crate) use subscription::Subscription;

type Table = Arc<Waiting>;

/// The keys this process waits for, each with its waiters' entry.
#[derive(Default)]
struct Waiting {
    entries: Mutex<HashMap<String, Entry>>,
    /// How many keys `entries` holds, readable without the lock: with nobody waiting, taking
    /// and releasing locks never touches the table.
    keys: AtomicUsize,
    /// Waiters in a key's line, by token: a hand-off to one of them wakes that one.
    grantees: Mutex<HashMap<String, Arc<Grant>>>,
}

impl Waiting {
    fn lock(&self) -> Entries<'_> {
        Entries {
            map: self.entries.lock().unwrap_or_else(|e| e.into_inner()),
            keys: &self.keys,
        }
    }

    fn is_empty(&self) -> bool {
        self.keys.load(Ordering::Acquire) == 0
    }

    fn grantees(&self) -> MutexGuard<'_, HashMap<String, Arc<Grant>>> {
        self.grantees.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A hand-off to `token`: it wakes that waiter, if it waits here.
    fn grant(&self, token: &str, fence: u64) {
        if let Some(grant) = self.grantees().get(token) {
            *grant.fence.lock().unwrap_or_else(|e| e.into_inner()) = Some(fence);
            grant.bell.notify_one();
        }
    }
}

/// The locked table; publishes its size when unlocked.
struct Entries<'a> {
    map: MutexGuard<'a, HashMap<String, Entry>>,
    keys: &'a AtomicUsize,
}

impl std::ops::Deref for Entries<'_> {
    type Target = HashMap<String, Entry>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl std::ops::DerefMut for Entries<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

impl Drop for Entries<'_> {
    fn drop(&mut self) {
        self.keys.store(self.map.len(), Ordering::Release);
    }
}

struct Entry {
    /// Waiters with a subscription; 0 while the entry lingers after the last one left.
    refs: usize,
    /// How many times the last waiter left: a lingering entry goes only if nobody came since.
    left: u64,
    /// Whether a task watches the entry to remove it once it lingered unused (one at a time).
    watched: bool,
    bell: Arc<Notify>,
    /// Releases this process handed to its own waiters whose published notice has not come
    /// back yet: those notices are echoes and wake nobody.
    echoes: usize,
    /// The key's subscriptions, one per connection its waiters listen on.
    on: Vec<Listening>,
}

/// A key's subscription on one connection.
struct Listening {
    listener: Arc<Listener>,
    subscribed: Arc<Subscribed>,
    /// The channel of the key's hand-offs to waiters listening here, if any (see
    /// [`Notices::subscribe`]).
    grants: Option<String>,
}

/// A hand-off a waiter in line may receive (see `scripts/queue.lua`): the fencing token it was
/// granted the lock with, once the notice came.
#[derive(Default)]
struct Grant {
    fence: Mutex<Option<u64>>,
    bell: Notify,
}

/// Whether a key's channel is subscribed on one connection, and the one attempt under way.
///
/// The attempt runs where the connection is driven and reports its outcome from there: on one
/// server, the runtime of the waiters it serves; on a cluster, the library's runtime, so that a
/// waiter whose runtime goes idle mid-attempt holds no waiter of another runtime up.
struct Subscribed(tokio::sync::watch::Sender<Subscribing>);

#[derive(Clone)]
enum Subscribing {
    Not,
    UnderWay,
    Done,
    Failed(redis::RedisError),
}

impl Default for Subscribed {
    fn default() -> Self {
        Self(tokio::sync::watch::channel(Subscribing::Not).0)
    }
}

/// The release-notice side of a manager.
pub(crate) struct Notices {
    /// Names this process's channels of hand-offs: random, one per manager.
    id: String,
    listeners: Listeners,
    op_timeout: Duration,
    table: Table,
    /// Orders SUBSCRIBE and UNSUBSCRIBE, so a late unsubscribe never cancels a new subscription.
    order: Arc<tokio::sync::Mutex<()>>,
}

impl Notices {
    pub(crate) fn new(client: &redis::Client, op_timeout: Duration) -> Self {
        let info = client.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let info = info.set_redis_settings(settings);
        let client = redis::Client::open(info).unwrap_or_else(|_| client.clone());
        Self::with_source(Source::Single(client), op_timeout)
    }

    /// Release notices of a Redis Cluster, over sharded pub/sub.
    #[cfg(feature = "cluster")]
    pub(crate) fn cluster(settings: Arc<crate::cluster_settings::ClusterSettings>) -> Self {
        let op_timeout = settings.op_timeout;
        Self::with_source(Source::Cluster(settings), op_timeout)
    }

    fn with_source(source: Source, op_timeout: Duration) -> Self {
        let table = Table::default();
        Self {
            id: uuid::Uuid::new_v4().simple().to_string()[..16].to_owned(),
            listeners: Listeners::new(source, op_timeout, table.clone()),
            op_timeout,
            table,
            order: Arc::default(),
        }
    }

    /// Registers interest in `channel` (a lock's key) and returns once Redis confirmed the
    /// subscription, so every release after this returns is heard.
    ///
    /// With it comes `grants`, this process's own channel of the key's hand-offs (see
    /// [`Self::grant_channel`]), which a waiter in line names in its place
    /// ([`Subscription::grants`]): a release that hands the lock over tells the new holder's
    /// process only, not every process waiting for the key. Without one (a cluster key whose
    /// braces keep every such name out of its slot), hand-offs are told on the key's channel.
    pub(crate) async fn subscribe(
        &self,
        channel: &str,
        grants: Option<String>,
    ) -> redis::RedisResult<Subscription> {
        let listener = self.listeners.get().await?;
        let (bell, subscribed, grants) = {
            let mut table = self.table.lock();
            let entry = table.entry(channel.to_owned()).or_insert_with(|| Entry {
                refs: 0,
                bell: Arc::default(),
                echoes: 0,
                on: Vec::new(),
                left: 0,
                watched: false,
            });
            entry.refs += 1;
            let at = match entry
                .on
                .iter()
                .position(|on| Arc::ptr_eq(&on.listener, &listener))
            {
                Some(at) => at,
                None => {
                    entry.on.retain(|on| on.listener.alive());
                    entry.on.push(Listening {
                        listener: listener.clone(),
                        subscribed: Arc::default(),
                        grants,
                    });
                    entry.on.len() - 1
                }
            };
            let on = &entry.on[at];
            (entry.bell.clone(), on.subscribed.clone(), on.grants.clone())
        };
        let subscription = Subscription {
            table: self.table.clone(),
            channel: channel.to_owned(),
            grants,
            bell,
            armed: None,
            grant: None,
            order: self.order.clone(),
        };
        let limit = self.op_timeout;
        let mut outcome = subscribed.0.subscribe();
        let mut start = false;
        subscribed.0.send_if_modified(|state| {
            start = matches!(state, Subscribing::Not | Subscribing::Failed(_));
            if start {
                *state = Subscribing::UnderWay;
            }
            start
        });
        if start {
            let mut conn = listener.conn.clone();
            let channel = channel.to_owned();
            let grants = subscription.grants.clone();
            let order = self.order.clone();
            let report = subscribed.clone();
            // Where the connection is driven, ordered and bounded there.
            listener.spawn(async move {
                let ordered = async {
                    let _order = order.lock().await;
                    conn.subscribe(&channel, grants.as_deref()).await
                };
                let state = match tokio::time::timeout(limit, ordered).await {
                    Ok(Ok(())) => Subscribing::Done,
                    Ok(Err(e)) => Subscribing::Failed(e),
                    Err(_) => Subscribing::Failed(crate::error::timed_out("subscribe")),
                };
                report.0.send_replace(state);
            });
        }
        let ended =
            outcome.wait_for(|state| matches!(state, Subscribing::Done | Subscribing::Failed(_)));
        let state = match tokio::time::timeout(limit, ended).await {
            Ok(Ok(state)) => state.clone(),
            _ => return Err(crate::error::timed_out("subscribe")),
        };
        if let Subscribing::Failed(e) = state {
            return Err(e);
        }
        Ok(subscription)
    }
}

impl Notices {
    /// The channel of hand-offs of `key` (a lock's key, which is also its channel) to waiters
    /// of this manager on the caller's runtime: `<key>:granted:<id>.<runtime>`, named after the
    /// key so that whoever may listen on the key's channel (an ACL's channel pattern) may
    /// listen on it too.
    pub(crate) fn grant_channel(&self, key: &str) -> String {
        let runtime = tokio::runtime::Handle::try_current()
            .map(|handle| handle.id().to_string())
            .unwrap_or_default();
        format!("{key}:granted:{}.{runtime}", self.id)
    }

    /// This process released `channel`: wake its longest-waiting local waiter now, without
    /// waiting for the published notice (which, when it comes back, wakes nobody).
    pub(crate) fn released_locally(&self, channel: &str) {
        if self.table.is_empty() {
            return; // nobody here waits; a waiter arriving now hears the published notice
        }
        if let Some(entry) = self.table.lock().get_mut(channel) {
            if entry.refs > 0 {
                entry.echoes += 1;
                entry.bell.notify_one();
            }
        }
    }

    /// This process handed `channel` to the waiter with `token`: if that waiter is here, it
    /// learns of it now rather than from the published notice (which then finds it gone).
    pub(crate) fn handed_locally(&self, token: &str, fence: u64) {
        if self.table.is_empty() {
            return;
        }
        self.table.grant(token, fence);
    }

    /// Whether this process waited for `channel` lately (a waiter subscribed now, or one that
    /// left less than [`LINGER`] ago): the key is contended, so an attempt goes straight to the
    /// script rather than trying a bare `SET NX` first.
    pub(crate) fn contended(&self, channel: &str) -> bool {
        !self.table.is_empty() && self.table.lock().contains_key(channel)
    }
}

/// How long a key's channel stays subscribed after its last waiter here left (at least; at most
/// twice as long): a process that contends for a key again and again (a service replica taking
/// its turn) does not subscribe and unsubscribe around every acquisition.
pub(crate) const LINGER: Duration = Duration::from_millis(500);

fn dispatch(table: &Table, info: PushInfo) {
    match info.kind {
        PushKind::Message | PushKind::SMessage => {
            let channel = match info.data.first() {
                Some(Value::BulkString(bytes)) => std::str::from_utf8(bytes).ok(),
                Some(Value::SimpleString(s)) => Some(s.as_str()),
                _ => None,
            };
            if let Some((token, fence)) = info.data.get(1).and_then(granted) {
                table.grant(token, fence);
                return;
            }
            let mut entries = table.lock();
            if let Some(entry) = channel.and_then(|c| entries.get_mut(c)) {
                if entry.echoes > 0 {
                    entry.echoes -= 1;
                } else if entry.refs > 0 {
                    entry.bell.notify_one();
                }
            }
        }
        // The end of a sharded subscription; unasked when its slot moved to another master.
        // The key's next waiter subscribes again (now on the new master); the current ones look
        // again at once and poll meanwhile.
        PushKind::SUnsubscribe => {
            let channel = match info.data.first() {
                Some(Value::BulkString(bytes)) => std::str::from_utf8(bytes).ok(),
                _ => None,
            };
            if let Some(entry) = channel.and_then(|c| {
                table.lock().get_mut(c).map(|e| {
                    for on in &mut e.on {
                        on.subscribed = Arc::default();
                    }
                    e.bell.clone()
                })
            }) {
                entry.notify_waiters();
            }
        }
        PushKind::Disconnection => {
            // Notices may have been missed: let every waiter look again.
            for entry in table.lock().values_mut() {
                entry.echoes = 0;
                entry.bell.notify_waiters();
            }
            for grant in table.grantees().values() {
                grant.bell.notify_one();
            }
        }
        _ => {}
    }
}

/// `granted <token> <fence>`: a hand-off notice.
fn granted(message: &Value) -> Option<(&str, u64)> {
    let text = match message {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?,
        Value::SimpleString(s) => s.as_str(),
        _ => return None,
    };
    let mut words = text.strip_prefix("granted ")?.split(' ');
    let token = words.next()?;
    let fence = words.next()?.parse().ok()?;
    Some((token, fence))
}
