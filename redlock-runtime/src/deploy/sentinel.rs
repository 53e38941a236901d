//! Redis Sentinel: locks on the master that the sentinels name.
//!
//! A manager built with [`LockManager::sentinel`](crate::LockManager::sentinel) asks the
//! sentinels for the current master of a named service (checking that the server it finds
//! does consider itself a master) and then works exactly like a single-server manager on it.
//! When the master answers `READONLY` (it was demoted to a replica by a failover) the master is
//! looked up again and the operation repeated there once; after connection errors the next
//! operation looks it up again, so after a failover new locks go to the new master.
//!
//! ## The failover caveat
//!
//! Replication is asynchronous. A lock granted by the old master just before it failed may not
//! have reached the replica that is promoted: the new master then grants the same lock to
//! someone else while the first holder still runs. Likewise, an old master cut off by a
//! network partition keeps granting locks until it is demoted, and those are lost with it. The
//! lock is therefore safe across a failover only as far as the replica had caught up; protect
//! writes with fencing tokens (tokens from the new master continue the replicated counter,
//! except for increments that were lost), or use Redlock over independent masters.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};

use crate::deploy::server::Server;
use crate::deploy::{Call, Key, Place};
use crate::error::LockError;
use crate::notify::Subscription;
use crate::wire::ReplicaAcks;

/// The master named by a set of sentinels, looked up again after a failover.
pub(crate) struct Sentinel {
    /// Asked on the library's runtime only, one look-up at a time: a caller whose runtime goes
    /// idle mid-look-up never holds the others up.
    sentinels: Arc<tokio::sync::Mutex<SentinelClient>>,
    describe: String,
    master: Mutex<Option<Arc<Server>>>,
    op_timeout: Duration,
    notifications: bool,
    connections: usize,
    acks: Option<ReplicaAcks>,
}

impl Sentinel {
    pub(crate) fn new(
        sentinel_urls: &[String],
        service: &str,
        op_timeout: Duration,
        notifications: bool,
        connections: usize,
        acks: Option<ReplicaAcks>,
    ) -> redis::RedisResult<Self> {
        #[allow(unused_mut)]
        let mut node_info = SentinelNodeConnectionInfo::default();
        #[cfg(feature = "tls")]
        if sentinel_urls.iter().any(|url| url.starts_with("rediss://")) {
            node_info = node_info.set_tls_mode(redis::TlsMode::Secure);
        }
        // A `String` (the parameter is `impl AsRef<str>` with TLS, `String` without).
        let service_name: String = service.into();
        let client = SentinelClient::build(
            sentinel_urls.iter().map(String::as_str).collect(),
            service_name,
            Some(node_info),
            SentinelServerType::Master,
        )?;
        Ok(Self {
            sentinels: Arc::new(tokio::sync::Mutex::new(client)),
            describe: format!(
                "sentinel[{}] master `{service}`",
                crate::redact::urls(sentinel_urls).join(", ")
            ),
            master: Mutex::new(None),
            op_timeout,
            notifications,
            connections,
            acks,
        })
    }

    /// A description for `Debug` output.
    pub(crate) fn describe(&self) -> String {
        match self.current() {
            Some(node) => format!("{} at {}", self.describe, node.addr()),
            None => self.describe.clone(),
        }
    }

    fn current(&self) -> Option<Arc<Server>> {
        self.master
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current master, asking the sentinels when it is not known.
    async fn master(&self, key: &str) -> Result<Arc<Server>, LockError> {
        if let Some(node) = self.current() {
            return Ok(node);
        }
        let limit = self.op_timeout;
        let sentinels = self.sentinels.clone();
        let lookup = async {
            // Bounded there too, so that a silent sentinel frees the look-up for the next one.
            crate::background::run(async move {
                let ask = async { sentinels.lock().await.async_get_client().await };
                tokio::time::timeout(limit, ask)
                    .await
                    .unwrap_or_else(|_| Err(crate::error::timed_out("asking the sentinels")))
            })
            .await
            .and_then(|client| client)
            .map_err(|e| LockError::redis(key, e))
        };
        let client = crate::deadline::within(limit, key, lookup).await?;
        if let Some(node) = self.current() {
            return Ok(node); // found by another task meanwhile
        }
        let node = Arc::new(
            Server::new(
                client,
                self.op_timeout,
                self.notifications,
                self.connections,
            )
            .acknowledged(self.acks, self.op_timeout, self.connections),
        );
        tracing::debug!(master = %node.addr(), "sentinels named the master");
        *self.master.lock().unwrap_or_else(|e| e.into_inner()) = Some(node.clone());
        Ok(node)
    }

    /// Forgets `node` as the master (if it still is the current one).
    fn forget(&self, node: &Arc<Server>) {
        let mut master = self.master.lock().unwrap_or_else(|e| e.into_inner());
        if master.as_ref().is_some_and(|m| Arc::ptr_eq(m, node)) {
            tracing::debug!(old = %node.addr(), "looking up the master again");
            *master = None;
        }
    }

    /// Runs `call` on the master; after `READONLY` (a demoted master: the command did not
    /// run) once more on the master the sentinels name now. Connection errors make the next
    /// call look the master up again.
    pub(crate) async fn run<K: Call>(
        &self,
        key: Key<'_>,
        call: &K,
    ) -> Result<K::Answer, LockError> {
        let node = self.master(key.name()).await?;
        match node.run(key, call, Place::SERVER).await {
            Err(e) if is_readonly(&e) => {
                self.forget(&node);
                let node = self.master(key.name()).await?;
                let outcome = node.run(key, call, Place::SERVER).await;
                if matches!(&outcome, Err(e) if is_readonly(e) || e.is_transient()) {
                    self.forget(&node);
                }
                outcome
            }
            Err(e) if e.is_transient() => {
                self.forget(&node);
                Err(e)
            }
            other => other,
        }
    }

    /// Subscribes to release notices on the current master.
    pub(crate) async fn subscribe(
        &self,
        channel: &str,
    ) -> Option<redis::RedisResult<Subscription>> {
        if !self.notifications {
            return None;
        }
        match self.master(channel).await {
            Ok(node) => node.subscribe(channel, true).await,
            Err(LockError::Redis { source, .. }) => Some(Err(source)),
            Err(other) => Some(Err(redis::RedisError::from(std::io::Error::other(
                other.to_string(),
            )))),
        }
    }
}

/// `READONLY`: the server is a replica now; the command (or transaction) was not executed.
pub(crate) fn is_readonly(error: &LockError) -> bool {
    const READONLY: redis::ErrorKind = redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
    const ABORTED: redis::ErrorKind = redis::ErrorKind::Server(redis::ServerErrorKind::ExecAbort);
    let LockError::Redis { source, .. } = error else {
        return false;
    };
    match source.kind() {
        READONLY => true,
        ABORTED => source.clone().into_server_errors().is_some_and(|errors| {
            errors
                .iter()
                .any(|(_, e)| e.kind() == Some(redis::ServerErrorKind::ReadOnly))
        }),
        _ => false,
    }
}
