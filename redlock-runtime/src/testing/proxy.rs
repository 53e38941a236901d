//! A loopback TCP proxy that cuts, delays or swallows traffic, for fault tests.
//!
//! One concern: the proxy, its modes and its own tests (a third of the file); the modes act on
//! the same forwarding loop.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

/// How long [`Proxy::set_mode`] waits for the proxy to apply a mode.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the proxy keeps trying to listen on its address again after [`ProxyMode::Drop`].
const REBIND_TIMEOUT: Duration = Duration::from_secs(5);
/// Size of one read.
const CHUNK: usize = 16 * 1024;
/// How much later a chunk "lost" in [`ProxyMode::Lossy`] arrives.
const RETRANSMIT: Duration = Duration::from_millis(200);

/// What a [`Proxy`] does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProxyMode {
    /// Forward everything at once.
    #[default]
    Pass,
    /// Forward everything, each chunk held back this long in each direction (a round trip gains
    /// twice the delay).
    Delay(Duration),
    /// Forward everything in order, each chunk held back a random time up to `delay` in each
    /// direction; `loss_percent` out of every hundred chunks are held back another 200 ms, as
    /// if lost once and sent again (the shortest retransmission timeout of Linux's TCP), and
    /// the chunks behind them wait too (TCP delivers in order). What an application sees of a
    /// link with jitter and packet loss.
    Lossy {
        /// The longest hold-back of a chunk that was not lost.
        delay: Duration,
        /// Chunks "lost" out of every hundred (0 to 100).
        loss_percent: u8,
    },
    /// Close every connection and refuse new ones: nothing listens on the address.
    Drop,
    /// Accept and read, but forward nothing and answer nothing. Connections that lost bytes are
    /// closed when the mode changes.
    Blackhole,
}

/// A loopback TCP proxy that cuts, delays or swallows traffic, for fault tests.
///
/// [`Proxy::start`] listens on a free `127.0.0.1` port and forwards every connection to an
/// upstream address (typically a [`RedisServer`](crate::testing::RedisServer)). Its [`ProxyMode`] can be
/// switched at any time with [`Proxy::set_mode`]:
///
/// - [`ProxyMode::Pass`]: forward everything at once;
/// - [`ProxyMode::Delay`]: hold back every chunk of bytes, in each direction, by a fixed delay
///   (order and throughput are kept: it adds latency, not a bandwidth limit);
/// - [`ProxyMode::Lossy`]: hold back every chunk a random time, and now and then much longer,
///   in order (jitter and packet loss as TCP delivers them);
/// - [`ProxyMode::Drop`]: close every connection and refuse new ones (nothing listens);
/// - [`ProxyMode::Blackhole`]: accept connections and read them, but forward and answer nothing,
///   like a peer that vanished without a reset. Bytes swallowed by the blackhole are gone, so a
///   connection that lost some is closed when the blackhole ends (resuming it would pair requests
///   with the wrong replies).
///
/// The proxy runs on its own thread with its own tokio runtime, so it keeps working while a test
/// blocks its own threads, and [`set_mode`](Proxy::set_mode) is a plain blocking call usable from
/// sync and async tests alike. Dropping the proxy closes the listener and every connection.
///
/// ```no_run
/// use std::time::Duration;
/// use redlock_runtime::testing::{Proxy, ProxyMode, RedisServer};
///
/// let server = RedisServer::spawn()?;
/// let proxy = Proxy::start(("127.0.0.1", server.port().expect("tcp server")))?;
/// let url = proxy.url(); // give it to the code under test instead of `server.url()`
/// # let _ = url;
/// proxy.set_mode(ProxyMode::Delay(Duration::from_millis(50)))?;
/// proxy.set_mode(ProxyMode::Blackhole)?;
/// proxy.set_mode(ProxyMode::Pass)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("mode", &self.mode())
            .field("connections", &self.connections())
            .finish()
    }
}

/// State shared by the handle and the proxy thread.
struct Shared {
    /// The wanted mode, with a generation number so [`Proxy::set_mode`] can wait for it.
    mode: watch::Sender<(u64, ProxyMode)>,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Last generation requested.
    requested: u64,
    /// Last generation the accept loop applied.
    applied: u64,
    /// Open client connections.
    connections: usize,
    /// Why listening again after [`ProxyMode::Drop`] failed.
    bind_error: Option<String>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state());
        self.changed.notify_all();
    }
}

/// Counts one open client connection while alive.
struct Open(Arc<Shared>);

impl Open {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.update(|s| s.connections += 1);
        Self(shared.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.update(|s| s.connections -= 1);
    }
}

impl Proxy {
    /// Starts a proxy on a free `127.0.0.1` port forwarding to `upstream`, in
    /// [`ProxyMode::Pass`].
    pub fn start(upstream: impl ToSocketAddrs) -> io::Result<Proxy> {
        let upstream = upstream.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no upstream address given")
        })?;
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared {
            mode: watch::Sender::new((0, ProxyMode::Pass)),
            state: Mutex::default(),
            changed: Condvar::new(),
        });
        let (shutdown, stop) = oneshot::channel();
        let serving = shared.clone();
        let thread = thread::Builder::new()
            .name(format!("redlock-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(e) => {
                            tracing::error!(error = %e, "proxy cannot listen");
                            return;
                        }
                    };
                    tokio::select! {
                        _ = stop => {}
                        () = serve(addr, upstream, listener, serving) => {}
                    }
                });
                // Dropping the runtime cancels every connection task and closes its sockets.
            })?;
        Ok(Proxy {
            addr,
            upstream,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:PORT` for the proxy's address.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Where connections are forwarded.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        self.shared.mode.borrow().1
    }

    /// Client connections currently open through the proxy.
    pub fn connections(&self) -> usize {
        self.shared.state().connections
    }

    /// Switches to `mode` and returns once it is in force: new connections and new bytes follow
    /// it; after [`ProxyMode::Drop`] every connection is closed and nothing listens; after
    /// leaving it the proxy listens again on the same address.
    pub fn set_mode(&self, mode: ProxyMode) -> io::Result<()> {
        let generation = {
            let mut state = self.shared.state();
            state.requested += 1;
            state.bind_error = None;
            state.requested
        };
        self.shared.mode.send_replace((generation, mode));
        let deadline = Instant::now() + APPLY_TIMEOUT;
        let mut state = self.shared.state();
        loop {
            if let Some(error) = state.bind_error.take() {
                return Err(io::Error::new(io::ErrorKind::AddrInUse, error));
            }
            let closed = mode != ProxyMode::Drop || state.connections == 0;
            if state.applied >= generation && closed {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("proxy did not apply {mode:?} within {APPLY_TIMEOUT:?}"),
                ));
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The accept loop: follows mode changes (closing and reopening the listener around
/// [`ProxyMode::Drop`]) and starts one task per connection.
async fn serve(addr: SocketAddr, upstream: SocketAddr, listener: TcpListener, shared: Arc<Shared>) {
    let mut modes = shared.mode.subscribe();
    let mut listener = Some(listener);
    loop {
        let (generation, mode) = *modes.borrow_and_update();
        if mode == ProxyMode::Drop {
            listener = None;
        } else if listener.is_none() {
            match rebind(addr).await {
                Ok(bound) => listener = Some(bound),
                Err(e) => {
                    shared.update(|s| s.bind_error = Some(format!("listening on {addr}: {e}")))
                }
            }
        }
        shared.update(|s| s.applied = s.applied.max(generation));
        match &listener {
            Some(bound) => tokio::select! {
                changed = modes.changed() => if changed.is_err() { return },
                accepted = bound.accept() => match accepted {
                    Ok((client, _)) => {
                        let open = Open::new(&shared);
                        tokio::spawn(connection(client, upstream, modes.clone(), open));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "proxy accept failed");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                },
            },
            None => {
                if modes.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Listens on `addr` again, retrying while the port is still being released.
async fn rebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let deadline = Instant::now() + REBIND_TIMEOUT;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// One client connection, from accept to close.
async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    mut modes: watch::Receiver<(u64, ProxyMode)>,
    _open: Open,
) {
    let mode = modes.borrow_and_update().1;
    match mode {
        ProxyMode::Drop => return,
        ProxyMode::Blackhole => return swallow(client, modes).await,
        ProxyMode::Pass | ProxyMode::Delay(_) | ProxyMode::Lossy { .. } => {}
    }
    let server = tokio::select! {
        connected = TcpStream::connect(upstream) => match connected {
            Ok(server) => server,
            Err(e) => {
                tracing::debug!(error = %e, %upstream, "proxy cannot reach upstream");
                return;
            }
        },
        () = cut(modes.clone(), Arc::default()) => return,
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let poisoned = Arc::new(AtomicBool::new(false));
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Each direction delivers what it has read, as a network delivers what is in flight: a
    // client that hangs up does not take back the requests it sent before.
    let both = futures_util::future::join(
        pump(client_read, server_write, modes.clone(), poisoned.clone()),
        pump(server_read, client_write, modes.clone(), poisoned.clone()),
    );
    tokio::select! {
        _ = both => {}
        () = cut(modes, poisoned) => {}
    }
}

/// Returns when the connection must be closed: on [`ProxyMode::Drop`], or when a blackhole that
/// swallowed some of its bytes has ended.
async fn cut(mut modes: watch::Receiver<(u64, ProxyMode)>, poisoned: Arc<AtomicBool>) {
    loop {
        let mode = modes.borrow_and_update().1;
        if mode == ProxyMode::Drop
            || (mode != ProxyMode::Blackhole && poisoned.load(Ordering::SeqCst))
        {
            return;
        }
        if modes.changed().await.is_err() {
            return;
        }
    }
}

/// Copies `from` to `to` following the mode of the moment each chunk was read. Returns at end
/// of stream (after delivering what was queued) or on an error.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    modes: watch::Receiver<(u64, ProxyMode)>,
    poisoned: Arc<AtomicBool>,
) {
    let (queue, mut queued) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0; CHUNK];
        // When the chunk read last goes out: none goes out before it.
        let mut last = Instant::now();
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let at = match modes.borrow().1 {
                ProxyMode::Pass => Instant::now(),
                ProxyMode::Delay(delay) => Instant::now() + delay,
                ProxyMode::Lossy {
                    delay,
                    loss_percent,
                } => {
                    let mut at = Instant::now() + delay.mul_f64(fastrand::f64());
                    if fastrand::u8(0..100) < loss_percent {
                        at += RETRANSMIT;
                    }
                    at.max(last)
                }
                ProxyMode::Blackhole => {
                    poisoned.store(true, Ordering::SeqCst);
                    continue;
                }
                ProxyMode::Drop => return,
            };
            last = at;
            if poisoned.load(Ordering::SeqCst) || queue.send((at, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let write = async move {
        while let Some((at, bytes)) = queued.recv().await {
            tokio::time::sleep_until(at.into()).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

/// A connection accepted during a blackhole: read and discard until it closes or the blackhole
/// ends (then close it: it was never forwarded anywhere).
async fn swallow(mut client: TcpStream, mut modes: watch::Receiver<(u64, ProxyMode)>) {
    let mut buf = vec![0; CHUNK];
    loop {
        tokio::select! {
            read = client.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            changed = modes.changed() => {
                if changed.is_err() || modes.borrow_and_update().1 != ProxyMode::Blackhole {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener as StdListener, TcpStream as StdStream};

    use super::*;

    /// A line echo server on a free port; runs until the test process ends.
    fn echo_server() -> SocketAddr {
        let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    for line in BufReader::new(stream).lines() {
                        let Ok(line) = line else { return };
                        if writeln!(writer, "{line}").is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn client(proxy: &Proxy) -> (StdStream, BufReader<StdStream>) {
        let stream = StdStream::connect(proxy.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        (stream, reader)
    }

    /// Sends a line and reads the echo; `Err` when nothing (or not the echo) comes back.
    fn round_trip(stream: &mut StdStream, reader: &mut BufReader<StdStream>) -> io::Result<()> {
        writeln!(stream, "ping")?;
        let mut line = String::new();
        match reader.read_line(&mut line)? {
            5 if line == "ping\n" => Ok(()),
            _ => Err(io::Error::new(io::ErrorKind::UnexpectedEof, line)),
        }
    }

    #[test]
    fn pass_forwards_and_delay_adds_latency_in_each_direction() {
        let proxy = Proxy::start(echo_server()).unwrap();
        let (mut stream, mut reader) = client(&proxy);
        let start = Instant::now();
        round_trip(&mut stream, &mut reader).unwrap();
        let direct = start.elapsed();
        assert_eq!(proxy.connections(), 1);

        proxy
            .set_mode(ProxyMode::Delay(Duration::from_millis(100)))
            .unwrap();
        let start = Instant::now();
        round_trip(&mut stream, &mut reader).unwrap();
        let delayed = start.elapsed();
        assert!(
            delayed >= Duration::from_millis(200),
            "{delayed:?} (direct {direct:?})"
        );

        proxy.set_mode(ProxyMode::Pass).unwrap();
        round_trip(&mut stream, &mut reader).unwrap();
    }

    #[test]
    fn lossy_keeps_order_and_holds_lost_chunks_back_a_retransmission() {
        let proxy = Proxy::start(echo_server()).unwrap();
        let (mut stream, mut reader) = client(&proxy);
        proxy
            .set_mode(ProxyMode::Lossy {
                delay: Duration::from_millis(20),
                loss_percent: 30,
            })
            .unwrap();
        // Sent one by one, without waiting: they come back in the order sent.
        for i in 0..40 {
            writeln!(stream, "line {i}").unwrap();
            thread::sleep(Duration::from_millis(1));
        }
        for i in 0..40 {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert_eq!(line, format!("line {i}\n"));
        }

        proxy
            .set_mode(ProxyMode::Lossy {
                delay: Duration::ZERO,
                loss_percent: 100,
            })
            .unwrap();
        let start = Instant::now();
        round_trip(&mut stream, &mut reader).unwrap();
        let lost_both_ways = start.elapsed();
        assert!(lost_both_ways >= 2 * RETRANSMIT, "{lost_both_ways:?}");
    }

    #[test]
    fn drop_closes_connections_and_refuses_new_ones_until_pass() {
        let proxy = Proxy::start(echo_server()).unwrap();
        let (mut stream, mut reader) = client(&proxy);
        round_trip(&mut stream, &mut reader).unwrap();

        proxy.set_mode(ProxyMode::Drop).unwrap();
        assert_eq!(proxy.connections(), 0);
        assert!(round_trip(&mut stream, &mut reader).is_err());
        let refused = StdStream::connect(proxy.addr()).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);

        proxy.set_mode(ProxyMode::Pass).unwrap();
        let (mut stream, mut reader) = client(&proxy);
        round_trip(&mut stream, &mut reader).unwrap();
    }

    #[test]
    fn blackhole_swallows_and_closes_poisoned_connections_when_it_ends() {
        let proxy = Proxy::start(echo_server()).unwrap();
        let (mut stream, mut reader) = client(&proxy);
        round_trip(&mut stream, &mut reader).unwrap();

        proxy.set_mode(ProxyMode::Blackhole).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let err = round_trip(&mut stream, &mut reader).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err:?}"
        );
        // New connections are accepted, and swallowed too.
        let (mut late, mut late_reader) = client(&proxy);
        late.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(round_trip(&mut late, &mut late_reader).is_err());

        proxy.set_mode(ProxyMode::Pass).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert!(
            round_trip(&mut stream, &mut reader).is_err(),
            "a connection that lost bytes must be closed"
        );
        let (mut fresh, mut fresh_reader) = client(&proxy);
        round_trip(&mut fresh, &mut fresh_reader).unwrap();
    }

    #[test]
    fn many_connections_and_drop_of_the_proxy_close_everything() {
        let proxy = Proxy::start(echo_server()).unwrap();
        let mut clients: Vec<_> = (0..64).map(|_| client(&proxy)).collect();
        for (stream, reader) in &mut clients {
            round_trip(stream, reader).unwrap();
        }
        assert_eq!(proxy.connections(), 64);
        let addr = proxy.addr();
        drop(proxy);
        for (stream, reader) in &mut clients {
            assert!(round_trip(stream, reader).is_err());
        }
        assert!(StdStream::connect(addr).is_err());
    }
}
