//! One command connection to one server: multiplexed, replaced when it breaks, and watched.
//!
//! A request waits for its answer without a timer of its own. Each link has a watchdog that
//! looks at it every quarter of the operation timeout: when requests are waiting and no answer
//! has come for a whole operation timeout, it closes the connection, which fails every request
//! on it at once ("redis did not answer within ..."), and the next request connects again.
//! Answers on one connection come in the order of the requests, so a connection that answers
//! nothing for that long has kept its oldest request waiting at least that long; no request
//! waits more than about one and a quarter operation timeouts. A request whose caller gave up
//! (a Redlock node timeout, a cancelled call) still counts until a later answer shows it was
//! answered, so a server that went silent has its connection replaced even when every caller
//! stops waiting early. An idle link's watchdog sleeps until the next request.
//!
//! A link keeps one connection per tokio runtime that uses it, each driven by that runtime (its
//! task and its watchdog spawned there): a request takes the connection of the runtime it runs
//! on, so a runtime that goes idle, or is dropped, never holds up the requests of another. A
//! connection whose runtime ended is dropped when it is next looked at.
//!
//! Over TLS the client library sets up the connection and keeps its task, which the watchdog
//! could not close: there each request has the library's response timeout instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, RedisError, RedisResult};

use crate::error::LockError;

mod watch;

pub(crate) use watch::Bound;
use watch::Watch;

/// A command connection to one server, connected on first use and again after it broke.
pub(crate) struct Link {
    shared: Arc<Shared>,
}

struct Shared {
    client: redis::Client,
    op_timeout: Duration,
    /// The connections, one per runtime that used the link.
    live: ArcSwap<Vec<Arc<Live>>>,
    /// Per runtime, one connection attempt at a time, and the last failure for those who
    /// waited on it. Per runtime: an attempt stalled on a runtime that went idle must not hold
    /// up another runtime's.
    connecting: std::sync::Mutex<Vec<(tokio::runtime::Id, Arc<Gate>)>>,
    generations: AtomicU64,
}

/// An established connection.
struct Live {
    conn: MultiplexedConnection,
    generation: u64,
    /// The runtime that drives it.
    runtime: tokio::runtime::Id,
    /// The connection's task (reading answers, writing requests), where this link runs it.
    driver: Option<tokio::task::AbortHandle>,
    watch: Arc<Watch>,
}

impl Live {
    /// Whether its task has ended (its runtime was dropped, or the watchdog closed it).
    fn ended(&self) -> bool {
        self.driver
            .as_ref()
            .is_some_and(tokio::task::AbortHandle::is_finished)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(driver) = &self.driver {
            driver.abort();
        }
        // A sleeping watchdog wakes, finds its connection gone and ends.
        self.watch.wake.notify_one();
    }
}

/// A connection handed to one request, and where it came from.
pub(crate) struct Conn<'a> {
    conn: MultiplexedConnection,
    live: Arc<Live>,
    link: &'a Link,
}

impl Conn<'_> {
    /// The connection, and how a request on it waits for its answer.
    pub(crate) fn parts(&mut self) -> (&mut MultiplexedConnection, Bound<'_>) {
        (&mut self.conn, Bound::Watched(&self.live.watch))
    }

    /// Looks at the request's outcome: a broken connection is replaced for the next request.
    pub(crate) fn settle<T>(&self, result: &Result<T, LockError>) {
        if let Err(LockError::Redis { source, .. }) = result {
            if source.is_io_error() || source.is_timeout() || source.is_connection_dropped() {
                self.link.shared.retire(self.live.generation);
            }
        }
    }
}

impl Link {
    pub(crate) fn new(client: redis::Client, op_timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                client,
                op_timeout,
                live: ArcSwap::default(),
                connecting: std::sync::Mutex::default(),
                generations: AtomicU64::new(0),
            }),
        }
    }

    /// The connection of the caller's runtime, connecting first when there is none (or it
    /// broke).
    pub(crate) async fn get(&self, key: &str) -> Result<Conn<'_>, LockError> {
        let runtime = current_runtime(key)?;
        if let Some(live) = self.shared.find(runtime) {
            return Ok(self.hand_out(live));
        }
        // Boxed: the rare path would otherwise make every request's future larger.
        Box::pin(self.connect(key, runtime)).await
    }

    fn hand_out(&self, live: Arc<Live>) -> Conn<'_> {
        Conn {
            conn: live.conn.clone(),
            live,
            link: self,
        }
    }

    async fn connect(&self, key: &str, runtime: tokio::runtime::Id) -> Result<Conn<'_>, LockError> {
        let shared = &self.shared;
        let asked = Instant::now();
        let gate = shared.gate(runtime);
        let mut last_failure = gate.lock().await;
        if let Some(live) = shared.find(runtime) {
            return Ok(self.hand_out(live)); // connected while this request waited
        }
        if let Some((when, error)) = &*last_failure {
            if *when >= asked {
                // The attempt this request waited for failed: that is its answer too.
                return Err(LockError::redis(key, error.clone()));
            }
        }
        let limit = shared.op_timeout;
        let outcome = crate::deadline::within(limit, key, shared.open(key, runtime)).await;
        match outcome {
            Ok(live) => {
                *last_failure = None;
                let live = Arc::new(live);
                // This runtime's connection replaces its earlier one; those of runtimes that
                // ended go too.
                shared.live.rcu(|lives| {
                    let mut kept: Vec<Arc<Live>> = lives
                        .iter()
                        .filter(|old| old.runtime != runtime && !old.ended())
                        .cloned()
                        .collect();
                    kept.push(live.clone());
                    kept
                });
                if live.driver.is_some() {
                    tokio::spawn(watchdog(
                        Arc::downgrade(shared),
                        Arc::downgrade(&live),
                        live.watch.clone(),
                        limit,
                    ));
                }
                Ok(self.hand_out(live))
            }
            Err(error) => {
                if let LockError::Redis { source, .. } = &error {
                    *last_failure = Some((Instant::now(), source.clone()));
                }
                Err(error)
            }
        }
    }
}

/// The id of the caller's tokio runtime; outside one, a clear error instead of a panic.
fn current_runtime(key: &str) -> Result<tokio::runtime::Id, LockError> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => Ok(handle.id()),
        Err(_) => Err(crate::deadline::outside_runtime(key)),
    }
}

/// One runtime's connection attempts, one at a time; the last failure.
type Gate = tokio::sync::Mutex<Option<(Instant, RedisError)>>;

impl Shared {
    /// The connection attempts of `runtime` (those of runtimes nobody waits on are dropped).
    fn gate(&self, runtime: tokio::runtime::Id) -> Arc<Gate> {
        let mut gates = self.connecting.lock().unwrap_or_else(|e| e.into_inner());
        gates.retain(|(id, gate)| *id == runtime || Arc::strong_count(gate) > 1);
        match gates.iter().find(|(id, _)| *id == runtime) {
            Some((_, gate)) => gate.clone(),
            None => {
                let gate = Arc::new(Gate::new(None));
                gates.push((runtime, gate.clone()));
                gate
            }
        }
    }

    /// This runtime's connection, if it is still alive.
    fn find(&self, runtime: tokio::runtime::Id) -> Option<Arc<Live>> {
        self.live
            .load()
            .iter()
            .find(|live| live.runtime == runtime && !live.ended())
            .cloned()
    }

    /// Opens a connection driven by `runtime` (the caller's) and loads the scripts.
    async fn open(&self, key: &str, runtime: tokio::runtime::Id) -> Result<Live, LockError> {
        let info = self.client.get_connection_info();
        // Requests are bounded by the watchdog (or, over TLS, by the response timeout below).
        let config = AsyncConnectionConfig::new().set_response_timeout(None);
        let fail = |e: RedisError| LockError::redis(key, e);
        let (mut conn, driver) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                // Nagle's algorithm left on, as the client library does: under load small
                // requests leave in fewer packets, which costs Redis fewer reads.
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| fail(e.into()))?;
                self.run(info, stream, config).await.map_err(fail)?
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| fail(e.into()))?;
                self.run(info, stream, config).await.map_err(fail)?
            }
            _ => {
                let config = config.set_response_timeout(Some(self.op_timeout));
                let conn = self
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(fail)?;
                (conn, None)
            }
        };
        crate::scripts::load_all(&mut conn, key, self.op_timeout).await?;
        Ok(Live {
            conn,
            generation: self.generations.fetch_add(1, Ordering::Relaxed),
            runtime,
            driver,
            watch: Arc::new(Watch::new(self.op_timeout)),
        })
    }

    /// Sets up a connection over `stream` and runs its task here, where it can be stopped.
    async fn run<S>(
        &self,
        info: &redis::ConnectionInfo,
        stream: S,
        config: AsyncConnectionConfig,
    ) -> RedisResult<(MultiplexedConnection, Option<tokio::task::AbortHandle>)>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (conn, driver) =
            MultiplexedConnection::new_with_config(info.redis_settings(), stream, config).await?;
        Ok((conn, Some(tokio::spawn(driver).abort_handle())))
    }

    /// Drops connection `generation` if it is still current.
    fn retire(&self, generation: u64) {
        self.live.rcu(|lives| {
            lives
                .iter()
                .filter(|live| live.generation != generation)
                .cloned()
                .collect::<Vec<_>>()
        });
    }
}

/// Closes connection `live` of the link when requests wait and nothing has been answered for
/// an operation timeout; sleeps while the connection is idle; ends with the connection.
async fn watchdog(link: Weak<Shared>, live: Weak<Live>, watch: Arc<Watch>, limit: Duration) {
    let tick = (limit / 4).max(Duration::from_millis(1));
    let mut last_answered = 0;
    let mut silent_since: Option<Instant> = None;
    let mut probing = false;
    loop {
        tokio::time::sleep(tick).await;
        let Some(current) = live.upgrade() else {
            return;
        };
        let sent = watch.sent.load(Ordering::SeqCst);
        let answered = watch.answered.load(Ordering::SeqCst);
        if answered >= sent {
            silent_since = None;
            probing = false;
            last_answered = answered;
            // Idle: sleep until the next request (or the connection's end).
            watch.dormant.store(true, Ordering::SeqCst);
            if watch.sent.load(Ordering::SeqCst) != sent {
                watch.dormant.store(false, Ordering::SeqCst);
                continue;
            }
            drop(current);
            watch.wake.notified().await;
            // Woken by a request: the silence is timed from now.
            silent_since = Some(Instant::now());
            continue;
        }
        let now = Instant::now();
        match silent_since {
            Some(since) if answered == last_answered => {
                if !probing {
                    // Maybe only requests whose callers gave up are unanswered (their answers
                    // came unheard): a PING's answer shows the connection alive.
                    probing = true;
                    probe(&current);
                }
                if now.duration_since(since) >= limit {
                    tracing::debug!(
                        waiting = sent - answered,
                        "no answer within the operation timeout; closing the connection"
                    );
                    watch.closed.fetch_add(1, Ordering::SeqCst);
                    if let Some(shared) = link.upgrade() {
                        shared.retire(current.generation);
                    }
                    if let Some(driver) = &current.driver {
                        driver.abort(); // the waiting requests fail now
                    }
                    // Whatever was sent on it is settled: failed, or given up by its caller.
                    watch.answered.fetch_max(sent, Ordering::SeqCst);
                    silent_since = None;
                    probing = false;
                }
            }
            _ => {
                last_answered = answered;
                silent_since = Some(now);
                probing = false;
            }
        }
    }
}

/// Sends a `PING` on connection `live`, watched like any request.
fn probe(live: &Arc<Live>) {
    let mut conn = live.conn.clone();
    let watch = live.watch.clone();
    tokio::spawn(async move {
        let ping = redis::cmd("PING");
        let request = ping.query_async::<redis::Value>(&mut conn);
        let _ = Bound::Watched(&watch).run("", request).await;
    });
}
