//! One Redis server: its command connections, its release notices, and replica
//! acknowledgement of writes.

use std::time::Duration;

use crate::deploy::{Call, Key, Place};
use crate::error::LockError;
use crate::link::Link;
use crate::notify::{Notices, Subscription};
use crate::wire::{ReplicaAcks, Wire};

/// A Redis server.
///
/// Commands go over a few multiplexed connections ([`Link`]s), each opened on first use (so a
/// manager can be built outside a runtime) and opened again after it broke. A key always uses
/// the same one, so the commands on one key stay in order; several keys spread over them, so
/// that under load Redis works through one connection's batch while this process prepares
/// another's. Every round trip is bounded by the operation timeout.
pub(crate) struct Server {
    client: redis::Client,
    links: Box<[Link]>,
    notices: Option<Notices>,
    /// Replica acknowledgement of acquires and renewals, on links of their own.
    acks: Option<(ReplicaAcks, Box<[Link]>)>,
}

impl Server {
    pub(crate) fn new(
        client: redis::Client,
        op_timeout: Duration,
        notifications: bool,
        connections: usize,
    ) -> Self {
        let notices = notifications.then(|| Notices::new(&client, op_timeout));
        Self {
            links: links(&client, op_timeout, connections),
            client,
            notices,
            acks: None,
        }
    }

    /// This server with acquires and renewals acknowledged by replicas, on `connections` links
    /// of their own.
    pub(crate) fn acknowledged(
        mut self,
        acks: Option<ReplicaAcks>,
        op_timeout: Duration,
        connections: usize,
    ) -> Self {
        self.acks = acks.map(|acks| (acks, links(&self.client, op_timeout, connections)));
        self
    }

    /// Where this server is, for `Debug` output.
    pub(crate) fn addr(&self) -> String {
        self.client.get_connection_info().addr().to_string()
    }

    /// Release notices of this server, if enabled.
    pub(crate) fn notices(&self) -> Option<&Notices> {
        self.notices.as_ref()
    }

    /// Subscribes to the release notices of `channel`, and to this manager's channel of its
    /// hand-offs where the key has a line of waiters (`line`: not on a Redlock master); `None`
    /// when notices are disabled.
    pub(crate) async fn subscribe(
        &self,
        channel: &str,
        line: bool,
    ) -> Option<redis::RedisResult<Subscription>> {
        let notices = self.notices.as_ref()?;
        let grants = line.then(|| notices.grant_channel(channel));
        Some(notices.subscribe(channel, grants).await)
    }

    /// Runs `call` on the connection of `key` (acknowledged calls on the acknowledging links); a
    /// connection found broken is replaced for the next request.
    pub(crate) async fn run<K: Call>(
        &self,
        key: Key<'_>,
        call: &K,
        at: Place,
    ) -> Result<K::Answer, LockError> {
        let (links, acks) = match &self.acks {
            Some((acks, links)) if K::ACKNOWLEDGED => (&links[..], Some(acks)),
            _ => (&self.links[..], None),
        };
        let link = match links.len() {
            1 => &links[0],
            n => &links[(xxhash_rust::xxh3::xxh3_64(key.redis.as_bytes()) % n as u64) as usize],
        };
        let mut conn = link.get(key.name()).await?;
        let (connection, bound) = conn.parts();
        let result = call
            .run(&mut Wire::new(connection, bound, key.name(), acks), at)
            .await;
        conn.settle(&result);
        result
    }
}

fn links(client: &redis::Client, op_timeout: Duration, connections: usize) -> Box<[Link]> {
    (0..connections.max(1))
        .map(|_| Link::new(client.clone(), op_timeout))
        .collect()
}
