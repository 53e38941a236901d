//! The pub/sub connections notices arrive on.
//!
//! One server (or the master Sentinel names): one connection per tokio runtime that waits, driven
//! by that runtime, so a notice is read on a thread of the runtime whose waiter it wakes, with
//! no hop through another thread; a runtime that ended has its connection dropped when the
//! next waiter looks. A Redis Cluster: one cluster connection for the process, driven by the
//! library's runtime (it holds a connection to every master).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::PushInfo;
#[cfg(feature = "cluster")]
use tokio::sync::OnceCell;

use super::{dispatch, Table};

/// Where release notices come from.
// One per manager: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Source {
    /// One server: `SUBSCRIBE` / `PUBLISH`, over RESP3.
    Single(redis::Client),
    /// A Redis Cluster: sharded pub/sub (`SSUBSCRIBE` / `SPUBLISH`), each key's channel on the
    /// master of its slot.
    #[cfg(feature = "cluster")]
    Cluster(Arc<crate::cluster_settings::ClusterSettings>),
}

/// A pub/sub connection: RESP3, pushes delivered to [`dispatch`].
#[derive(Clone)]
pub(super) enum PubSub {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl PubSub {
    /// Subscribes to a key's channel and its channel of hand-offs, if any (one slot on a
    /// cluster), in one command.
    pub(super) async fn subscribe(
        &mut self,
        key: &str,
        grants: Option<&str>,
    ) -> redis::RedisResult<()> {
        let channels = channels(key, grants);
        match self {
            Self::Single(conn) => conn.subscribe(channels).await,
            #[cfg(feature = "cluster")]
            Self::Cluster(conn) => conn.ssubscribe(channels).await,
        }
    }

    /// Gives up what [`Self::subscribe`] subscribed to.
    pub(super) async fn unsubscribe(
        &mut self,
        key: &str,
        grants: Option<&str>,
    ) -> redis::RedisResult<()> {
        let channels = channels(key, grants);
        match self {
            Self::Single(conn) => conn.unsubscribe(channels).await,
            #[cfg(feature = "cluster")]
            Self::Cluster(conn) => conn.sunsubscribe(channels).await,
        }
    }
}

fn channels<'a>(key: &'a str, grants: Option<&'a str>) -> Vec<&'a str> {
    std::iter::once(key).chain(grants).collect()
}

/// A pub/sub connection and the runtime that drives it.
pub(super) struct Listener {
    pub(super) conn: PubSub,
    /// The runtime that drives it; `None`: the library's.
    runtime: Option<tokio::runtime::Id>,
    /// Held by a task on that runtime, so gone once the runtime is.
    alive: Option<Weak<()>>,
}

impl Listener {
    /// Whether the runtime that drives it still runs.
    pub(super) fn alive(&self) -> bool {
        self.alive
            .as_ref()
            .is_none_or(|alive| alive.strong_count() > 0)
    }

    /// Runs `task` (a subscription, say) where the connection is driven: a connection the
    /// client library opens again on its own gets its task there too.
    pub(super) fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        match self.runtime {
            Some(_) => drop(tokio::spawn(task)),
            None => crate::background::spawn(task),
        }
    }
}

/// A manager's pub/sub connections.
pub(super) struct Listeners {
    source: Source,
    op_timeout: Duration,
    table: Table,
    /// One server's, one per runtime.
    per_runtime: Mutex<Vec<Arc<Listener>>>,
    /// A cluster's, for the process.
    #[cfg(feature = "cluster")]
    shared: OnceCell<Arc<Listener>>,
}

impl Listeners {
    pub(super) fn new(source: Source, op_timeout: Duration, table: Table) -> Self {
        Self {
            source,
            op_timeout,
            table,
            per_runtime: Mutex::default(),
            #[cfg(feature = "cluster")]
            shared: OnceCell::new(),
        }
    }

    /// The connection the caller's waiters listen on.
    pub(super) async fn get(&self) -> redis::RedisResult<Arc<Listener>> {
        let table = self.table.clone();
        let on_push = move |info: PushInfo| -> Result<(), ()> {
            dispatch(&table, info);
            Ok(())
        };
        match &self.source {
            Source::Single(client) => self.of_this_runtime(client, on_push),
            #[cfg(feature = "cluster")]
            Source::Cluster(settings) => self
                .shared
                .get_or_try_init(|| async {
                    let client = settings.client(Some(on_push))?;
                    // On the library's runtime, which drives the connection's task.
                    let connect =
                        crate::background::run(async move { client.get_async_connection().await });
                    let conn = match tokio::time::timeout(self.op_timeout, connect).await {
                        Ok(conn) => conn??,
                        Err(_) => return Err(crate::error::timed_out("connecting to the cluster")),
                    };
                    Ok(Arc::new(Listener {
                        conn: PubSub::Cluster(conn),
                        runtime: None,
                        alive: None,
                    }))
                })
                .await
                .cloned(),
        }
    }

    /// The caller's runtime's connection, made (lazily: it connects on its first command, on
    /// this runtime) when there is none.
    fn of_this_runtime(
        &self,
        client: &redis::Client,
        on_push: impl Fn(PushInfo) -> Result<(), ()> + Send + Sync + 'static,
    ) -> redis::RedisResult<Arc<Listener>> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            redis::RedisError::from(std::io::Error::other("no tokio runtime to listen on"))
        })?;
        let id = runtime.id();
        let mut listeners = self.per_runtime.lock().unwrap_or_else(|e| e.into_inner());
        listeners.retain(|listener| listener.alive());
        if let Some(listener) = listeners.iter().find(|l| l.runtime == Some(id)) {
            return Ok(listener.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.op_timeout))
            .set_response_timeout(Some(self.op_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500))
            .set_push_sender(on_push)
            .set_automatic_resubscription();
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        let marker = Arc::new(());
        let alive = Arc::downgrade(&marker);
        runtime.spawn(async move {
            let _marker = marker;
            std::future::pending::<()>().await;
        });
        let listener = Arc::new(Listener {
            conn: PubSub::Single(conn),
            runtime: Some(id),
            alive: Some(alive),
        });
        listeners.push(listener.clone());
        Ok(listener)
    }
}
