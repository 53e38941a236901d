//! Real `redis-server` processes for tests (feature `testing`).
//!
//! [`RedisServer::spawn`] starts a `redis-server` in its own temporary directory, listening on a
//! free loopback port (or, with [`ServerOptions::unix_socket`], on a unix socket in that
//! directory), without persistence. It returns once the server answers `PING`, and kills the
//! process on drop. A test can also [`stop`](RedisServer::stop),
//! [`restart`](RedisServer::restart), [`pause`](RedisServer::pause) (`SIGSTOP`) and
//! [`resume`](RedisServer::resume) it to simulate outages. [`RedisServers`] starts several
//! independent servers for Redlock quorum tests.
//!
//! Everything here is synchronous plain `std`, usable from sync tests and from async tests alike
//! (the calls block the current thread briefly). Each server has its own directory and port, so
//! tests may run in parallel, in one process or many.
//!
//! The binary is `$REDIS_SERVER_BIN` when set (a path, or a name looked up on `PATH`), else
//! `redis-server` from `PATH`. Any server that takes `redis-server`'s options will do, e.g.
//! `REDIS_SERVER_BIN=valkey-server`; sentinels run as that binary with `--sentinel`.
//!
//! ```no_run
//! use redlock_runtime::testing::{RedisServer, RedisServers, ServerOptions};
//!
//! let mut server = RedisServer::spawn()?;
//! let client_url = server.url(); // "redis://127.0.0.1:PORT", give it to the code under test
//! # let _ = client_url;
//! server.command(&["SET", "balance", "1000"])?;
//! assert_eq!(server.command(&["GET", "balance"])?, "1000");
//!
//! server.restart()?; // same address, data gone
//! assert_eq!(server.command(&["GET", "balance"])?, "(nil)");
//!
//! let secured = RedisServer::spawn_with(ServerOptions::new().unix_socket(true).password("s3cret"))?;
//! assert_eq!(secured.command(&["PING"])?, "PONG");
//!
//! let quorum = RedisServers::spawn(3)?;
//! assert_eq!(quorum.urls().len(), 3);
//! # Ok::<(), redlock_runtime::testing::ServerError>(())
//! ```

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use redis::{ConnectionLike, ErrorKind, Value};
use tempfile::TempDir;

mod proxy;
pub use proxy::{Proxy, ProxyMode};
mod cluster;
pub use cluster::RedisCluster;
mod sentinel;
pub use sentinel::RedisSentinel;
mod tls;
pub use tls::{TestCertificates, TlsRedisServer};

/// Name of the environment variable that overrides the `redis-server` binary.
const BIN_ENV: &str = "REDIS_SERVER_BIN";
/// Name of the binary looked up on `PATH`.
const BIN_NAME: &str = "redis-server";
/// How long a fresh server may take to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two readiness probes.
const READY_POLL: Duration = Duration::from_millis(5);
/// Upper bound for a single readiness probe (connect, AUTH, PING).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Default upper bound for [`RedisServer::command`].
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Fresh ports tried by [`RedisServer::spawn`] when the chosen one is taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// How long [`RedisServer::restart`] keeps trying to get its old port back.
const REBIND_TIMEOUT: Duration = Duration::from_secs(5);
/// Log lines included in startup errors.
const LOG_TAIL_LINES: usize = 20;

/// Errors of the testing support.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The server binary (`redis-server`, or the one `REDIS_SERVER_BIN` names) could not be
    /// found.
    #[error(
        "`{binary}` not found ({detail}); {hint}, or set REDIS_SERVER_BIN to its path",
        hint = install_hint(.binary)
    )]
    MissingBinary {
        /// The binary looked for: `redis-server`, or the value of `REDIS_SERVER_BIN`.
        binary: String,
        /// Where it was looked for.
        detail: String,
    },
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The server was started but did not answer `PING` in time.
    #[error(
        "`redis-server` did not answer PING within {waited:?} (last attempt: {last_error}); \
         end of its log:\n{log_tail}"
    )]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// What the last readiness probe saw.
        last_error: String,
        /// The last lines of the server's log file.
        log_tail: String,
    },
    /// The server process exited while starting.
    #[error("`redis-server` exited during startup ({status}); end of its log:\n{log_tail}")]
    Exited {
        /// The exit status of the process.
        status: ExitStatus,
        /// The last lines of the server's log file.
        log_tail: String,
    },
    /// Redis answered with an error reply (the message, e.g. `WRONGTYPE ...`).
    #[error("redis error reply: {0}")]
    Reply(String),
    /// The server did not answer within the timeout (for example while paused).
    #[error("no reply from redis-server within {waited:?}")]
    Timeout {
        /// The timeout that elapsed.
        waited: Duration,
    },
    /// The server sent something the `redis` client could not parse.
    #[error("invalid reply from redis-server: {0}")]
    Protocol(String),
    /// The server is stopped (see [`RedisServer::stop`]).
    #[error("redis-server is stopped")]
    Stopped,
}

impl ServerError {
    fn io(context: impl Into<String>, source: io::Error) -> Self {
        ServerError::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether this error is a [`ServerError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, ServerError::Timeout { .. })
    }

    /// Whether the server failed to start because its port was taken.
    fn is_addr_in_use(&self) -> bool {
        matches!(self, ServerError::Exited { log_tail, .. } if log_tail.contains("Address already in use"))
    }
}

/// How to start a [`RedisServer`]: TCP without password by default.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    unix_socket: bool,
    password: Option<String>,
    args: Vec<String>,
    own_session: bool,
}

impl ServerOptions {
    /// Default options: a free `127.0.0.1` port, no password, no extra arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Listen on a unix socket in the server's temp dir instead of TCP (`--port 0`).
    pub fn unix_socket(mut self, yes: bool) -> Self {
        self.unix_socket = yes;
        self
    }

    /// Require this password (`--requirepass`); [`RedisServer::url`] and
    /// [`RedisServer::command`] use it.
    pub fn password(mut self, pw: &str) -> Self {
        self.password = Some(pw.to_owned());
        self
    }

    /// Start the server in a session of its own, so the kernel schedules it as a separate
    /// service (as a real Redis is: with autogrouping, a child in this process's session
    /// competes with this process's threads as one of them). It is still killed on drop, and on
    /// Linux also when the thread that started it exits (`PR_SET_PDEATHSIG`); start it from a
    /// thread that outlives its use (a benchmark's main thread, say). Elsewhere (macOS, say)
    /// only drop kills it: a server whose owner dies without dropping it keeps running.
    pub fn own_session(mut self, yes: bool) -> Self {
        self.own_session = yes;
        self
    }

    /// Append a raw `redis-server` argument, e.g. `.arg("--maxmemory").arg("1mb")`.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
}

/// Where a server listens.
#[derive(Debug, Clone)]
enum Endpoint {
    Tcp(u16),
    Unix(PathBuf),
}

/// A real `redis-server` process in a temp dir, killed on drop.
///
/// No persistence: a [`restart`](Self::restart) starts with an empty dataset.
pub struct RedisServer {
    /// The running process; `None` while stopped. Only reaped under this lock, so its pid is
    /// never signalled after it could have been reused.
    child: Mutex<Option<Child>>,
    paused: AtomicBool,
    endpoint: Endpoint,
    bin: PathBuf,
    password: Option<String>,
    args: Vec<String>,
    own_session: bool,
    log_path: PathBuf,
    dir: TempDir,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("endpoint", &self.endpoint)
            .field("pid", &self.pid())
            .field("paused", &self.is_paused())
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl RedisServer {
    /// Start a server on a free `127.0.0.1` port and wait until it answers `PING`.
    pub fn spawn() -> Result<RedisServer, ServerError> {
        Self::spawn_with(ServerOptions::new())
    }

    /// Start a replica of `primary` (a TCP server; `--replicaof`) and wait until it is in sync
    /// (`master_link_status:up`), so writes acknowledged with `WAIT 1` from then on have
    /// reached it.
    ///
    /// ```no_run
    /// use redlock_runtime::testing::RedisServer;
    ///
    /// let primary = RedisServer::spawn()?;
    /// let replica = RedisServer::spawn_replica_of(&primary)?;
    /// replica.pause()?; // a replica that stops acknowledging
    /// # Ok::<(), redlock_runtime::testing::ServerError>(())
    /// ```
    pub fn spawn_replica_of(primary: &RedisServer) -> Result<RedisServer, ServerError> {
        let port = primary.port().unwrap_or_default().to_string();
        let mut options = ServerOptions::new()
            .arg("--replicaof")
            .arg("127.0.0.1")
            .arg(port.as_str());
        if let Some(password) = &primary.password {
            options = options.arg("--masterauth").arg(password.as_str());
        }
        let replica = RedisServer::spawn_with(options)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if replica
                .command(&["INFO", "replication"])?
                .contains("master_link_status:up")
            {
                return Ok(replica);
            }
            if Instant::now() >= deadline {
                return Err(ServerError::Timeout {
                    waited: READY_TIMEOUT,
                });
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// Start a server with these options and wait until it answers `PING`.
    pub fn spawn_with(opts: ServerOptions) -> Result<RedisServer, ServerError> {
        let bin = find_binary(std::env::var_os(BIN_ENV), std::env::var_os("PATH"))?;
        let dir = tempfile::Builder::new()
            .prefix("redlock-redis-")
            .tempdir()
            .map_err(|e| ServerError::io("creating a temp dir for redis-server", e))?;
        let endpoint = if opts.unix_socket {
            Endpoint::Unix(dir.path().join("redis.sock"))
        } else {
            Endpoint::Tcp(0)
        };
        let mut server = RedisServer {
            child: Mutex::new(None),
            paused: AtomicBool::new(false),
            endpoint,
            bin,
            password: opts.password,
            args: opts.args,
            own_session: opts.own_session,
            log_path: dir.path().join("redis.log"),
            dir,
        };
        let child = match server.endpoint {
            Endpoint::Unix(_) => server.launch()?,
            Endpoint::Tcp(_) => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    server.endpoint = Endpoint::Tcp(free_port()?);
                    match server.launch() {
                        Err(e) if e.is_addr_in_use() && attempt < PORT_ATTEMPTS => continue,
                        other => break other?,
                    }
                }
            }
        };
        *server.lock_child() = Some(child);
        Ok(server)
    }

    /// The URL to connect to this server with the `redis` crate.
    ///
    /// `redis://127.0.0.1:PORT` or `redis+unix:///path/to/redis.sock`; with a password
    /// `redis://:PW@127.0.0.1:PORT` or `redis+unix:///path/to/redis.sock?pass=PW`
    /// (percent-encoded).
    pub fn url(&self) -> String {
        match (&self.endpoint, &self.password) {
            (Endpoint::Tcp(port), None) => format!("redis://127.0.0.1:{port}"),
            (Endpoint::Tcp(port), Some(pw)) => {
                format!("redis://:{}@127.0.0.1:{port}", percent_encode(pw, false))
            }
            (Endpoint::Unix(path), pw) => {
                let path = percent_encode(&path.to_string_lossy(), true);
                match pw {
                    None => format!("redis+unix://{path}"),
                    Some(pw) => format!("redis+unix://{path}?pass={}", percent_encode(pw, false)),
                }
            }
        }
    }

    /// The TCP port, or `None` for a unix-socket server.
    pub fn port(&self) -> Option<u16> {
        match self.endpoint {
            Endpoint::Tcp(port) => Some(port),
            Endpoint::Unix(_) => None,
        }
    }

    /// The unix socket path, or `None` for a TCP server.
    pub fn socket_path(&self) -> Option<&Path> {
        match &self.endpoint {
            Endpoint::Tcp(_) => None,
            Endpoint::Unix(path) => Some(path),
        }
    }

    /// The server's temporary directory (holds `redis.log`), removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id, or `None` while stopped (or after the process died).
    pub fn pid(&self) -> Option<u32> {
        let mut child = self.lock_child();
        live_child(&mut child).map(|c| c.id())
    }

    /// Whether the process is alive (a paused process counts as running).
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// Whether the process is paused by [`pause`](Self::pause).
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Kill the process (`SIGKILL`) and reap it. Does nothing if already stopped.
    pub fn stop(&mut self) -> Result<(), ServerError> {
        let taken = self.lock_child().take();
        let paused = self.paused.swap(false, Ordering::SeqCst);
        if let Some(mut child) = taken {
            let pid = child.id();
            kill_and_reap(&mut child, paused)?;
            tracing::debug!(pid, url = %crate::redact::url(&self.url()), "redis-server stopped");
        }
        Ok(())
    }

    /// Start the server again on the same address (stopping it first if needed) and wait until
    /// it answers `PING`. The data is gone: there is no persistence.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.stop()?;
        let deadline = Instant::now() + REBIND_TIMEOUT;
        let child = loop {
            match self.launch() {
                Err(e) if e.is_addr_in_use() && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        *self.lock_child() = Some(child);
        Ok(())
    }

    /// Freeze the process (`SIGSTOP`): connections are accepted by the kernel but nothing is
    /// answered until [`resume`](Self::resume).
    pub fn pause(&self) -> Result<(), ServerError> {
        self.signal(libc::SIGSTOP, "SIGSTOP")?;
        self.paused.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Let a paused process continue (`SIGCONT`).
    pub fn resume(&self) -> Result<(), ServerError> {
        self.signal(libc::SIGCONT, "SIGCONT")?;
        self.paused.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Run one command over a fresh blocking connection and return the reply as text, giving
    /// up after 5 s (see [`command_timeout`](Self::command_timeout)).
    ///
    /// Simple strings and bulk strings are returned as-is, integers as digits, nil as
    /// `(nil)`, arrays as their elements joined with newlines. An error reply is
    /// `Err(ServerError::Reply(message))`.
    pub fn command(&self, args: &[&str]) -> Result<String, ServerError> {
        self.command_timeout(args, COMMAND_TIMEOUT)
    }

    /// Like [`command`](Self::command), with `timeout` bounding the whole exchange (connect,
    /// `AUTH`, command); when it elapses the error is [`ServerError::Timeout`].
    pub fn command_timeout(&self, args: &[&str], timeout: Duration) -> Result<String, ServerError> {
        if self.lock_child().is_none() {
            return Err(ServerError::Stopped);
        }
        match self.exchange(args, timeout) {
            Ok(Value::ServerError(err)) => Err(ServerError::Reply(error_message(&err))),
            Ok(reply) => Ok(render(&reply)),
            Err(e) if e.is_timeout() => Err(ServerError::Timeout { waited: timeout }),
            Err(e) if e.kind() == ErrorKind::Io => {
                let kind = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<io::Error>())
                    .map_or(io::ErrorKind::Other, io::Error::kind);
                let context = format!(
                    "talking to redis-server at {}",
                    crate::redact::url(&self.url())
                );
                Err(ServerError::io(context, io::Error::new(kind, e)))
            }
            Err(e) if e.kind() == ErrorKind::Parse => Err(ServerError::Protocol(e.to_string())),
            // E.g. a refused AUTH while connecting.
            Err(e) => Err(ServerError::Reply(e.to_string())),
        }
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("redis.stderr")
    }

    /// The last lines of the log file and of stderr written since `offsets`.
    fn log_tail(&self, offsets: (u64, u64)) -> String {
        let mut tail = log_tail(&self.log_path, offsets.0);
        let stderr = log_tail(&self.stderr_path(), offsets.1);
        if !stderr.is_empty() {
            tail.push_str("\nstderr:\n");
            tail.push_str(&stderr);
        }
        tail
    }

    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn signal(&self, sig: libc::c_int, name: &str) -> Result<(), ServerError> {
        let mut child = self.lock_child();
        let child = live_child(&mut child).ok_or(ServerError::Stopped)?;
        send_signal(child, sig)
            .map_err(|e| ServerError::io(format!("sending {name} to redis-server"), e))?;
        tracing::debug!(pid = child.id(), signal = name, "redis-server signalled");
        Ok(())
    }

    /// Spawn the process on `self.endpoint` and wait until it is ready; kills it on failure.
    fn launch(&self) -> Result<Child, ServerError> {
        let mut cmd = Command::new(&self.bin);
        match &self.endpoint {
            Endpoint::Tcp(port) => {
                cmd.arg("--port").arg(port.to_string());
                cmd.args(["--bind", "127.0.0.1"]);
            }
            Endpoint::Unix(path) => {
                // A socket file left by a killed server; redis would unlink it too.
                let _ = fs::remove_file(path);
                cmd.args(["--port", "0", "--unixsocket"]).arg(path);
                cmd.args(["--unixsocketperm", "700"]);
            }
        }
        cmd.args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&self.log_path)
            .args(["--daemonize", "no", "--protected-mode", "no"]);
        if let Some(pw) = &self.password {
            cmd.args(["--requirepass", pw]);
        }
        // Errors in the arguments are printed before the log file is opened: keep them too.
        let stderr_path = self.stderr_path();
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .map_err(|e| ServerError::io(format!("creating {}", stderr_path.display()), e))?;
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if self.own_session {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec the child calls only `setsid` and (on Linux)
            // `prctl`, both async-signal-safe, and touches no memory of the parent.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() == -1 {
                        return Err(io::Error::last_os_error());
                    }
                    // Not orphaned if this process dies without dropping the server. Linux
                    // only; elsewhere only drop kills it.
                    #[cfg(target_os = "linux")]
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }

        // Only the output of this start goes into error messages.
        let offsets = (file_len(&self.log_path), file_len(&stderr_path));
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ServerError::MissingBinary {
                binary: self.bin.display().to_string(),
                detail: format!("{} could not be executed: {e}", self.bin.display()),
            },
            _ => ServerError::io(format!("starting {}", self.bin.display()), e),
        })?;
        match self.wait_ready(&mut child, offsets) {
            Ok(()) => {
                tracing::debug!(pid = child.id(), url = %crate::redact::url(&self.url()), "redis-server started");
                Ok(child)
            }
            Err(e) => {
                let _ = kill_and_reap(&mut child, false);
                tracing::debug!(url = %crate::redact::url(&self.url()), error = %e, "redis-server failed to start");
                Err(e)
            }
        }
    }

    /// Poll with `PING` until `+PONG` from this very process, for up to 10 s.
    fn wait_ready(&self, child: &mut Child, offsets: (u64, u64)) -> Result<(), ServerError> {
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    return Err(ServerError::Exited {
                        status,
                        log_tail: self.log_tail(offsets),
                    })
                }
                Ok(None) => {}
                Err(e) => return Err(ServerError::io("waiting for redis-server", e)),
            }
            let last_error = match self.exchange(&["PING"], PROBE_TIMEOUT) {
                Ok(Value::SimpleString(pong)) if pong == "PONG" => {
                    // Another test's server may hold the port we picked; ours would exit soon.
                    match self.exchange(&["INFO", "server"], PROBE_TIMEOUT) {
                        Ok(info @ (Value::BulkString(_) | Value::VerbatimString { .. })) => {
                            let expected = format!("process_id:{}\r\n", child.id());
                            if render(&info).contains(&expected) {
                                return Ok(());
                            }
                            "another process answered on this address".to_owned()
                        }
                        // INFO renamed or disabled by extra args: trust the PONG.
                        Ok(_) => return Ok(()),
                        Err(e) => e.to_string(),
                    }
                }
                Ok(Value::ServerError(err)) => error_message(&err), // e.g. LOADING: keep waiting
                Ok(other) => format!("unexpected reply {:?}", render(&other)),
                Err(e) => e.to_string(),
            };
            let waited = started.elapsed();
            if waited >= READY_TIMEOUT {
                return Err(ServerError::NotReady {
                    waited,
                    last_error,
                    log_tail: self.log_tail(offsets),
                });
            }
            thread::sleep(READY_POLL);
        }
    }

    /// Connect (authenticating with the password in [`url`](Self::url)), send one command and
    /// read its raw reply (an error reply is `Ok(Value::ServerError(_))`), all within `timeout`.
    fn exchange(&self, args: &[&str], timeout: Duration) -> redis::RedisResult<Value> {
        let deadline = Instant::now() + timeout;
        let left = || match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(left),
            _ => Err(redis::RedisError::from(io::Error::from(
                io::ErrorKind::TimedOut,
            ))),
        };
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_connection_with_timeout(left()?)?;
        let left = left()?;
        conn.set_read_timeout(Some(left))?;
        conn.set_write_timeout(Some(left))?;
        conn.req_command(redis::Cmd::new().arg(args))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Several independent servers (for Redlock quorum tests), all killed on drop.
#[derive(Debug)]
pub struct RedisServers {
    servers: Vec<RedisServer>,
}

impl RedisServers {
    /// Start `n` independent TCP servers, each ready to answer `PING`.
    pub fn spawn(n: usize) -> Result<RedisServers, ServerError> {
        let servers = (0..n)
            .map(|_| RedisServer::spawn())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RedisServers { servers })
    }

    /// The URLs of all servers, in order.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(RedisServer::url).collect()
    }

    /// The `i`-th server.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn get(&self, i: usize) -> &RedisServer {
        &self.servers[i]
    }

    /// The `i`-th server, mutably (to stop or restart it).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn get_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.servers[i]
    }

    /// All servers, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, RedisServer> {
        self.servers.iter()
    }

    /// The number of servers.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether there are no servers.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }
}

impl<'a> IntoIterator for &'a RedisServers {
    type Item = &'a RedisServer;
    type IntoIter = std::slice::Iter<'a, RedisServer>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Find the `redis-server` binary: `override_bin` (the value of `REDIS_SERVER_BIN`) if set,
/// else `redis-server` in `path_var` (the value of `PATH`).
fn find_binary(
    override_bin: Option<OsString>,
    path_var: Option<OsString>,
) -> Result<PathBuf, ServerError> {
    if let Some(bin) = override_bin.filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        let missing = |detail: String| ServerError::MissingBinary {
            binary: bin.display().to_string(),
            detail,
        };
        if bin.components().count() > 1 {
            return if is_executable_file(&bin) {
                Ok(bin)
            } else {
                Err(missing(format!(
                    "{BIN_ENV}={} is not an executable file",
                    bin.display()
                )))
            };
        }
        return search_path(&bin, path_var.as_ref())
            .ok_or_else(|| missing(format!("{BIN_ENV}={} is not on PATH", bin.display())));
    }
    search_path(Path::new(BIN_NAME), path_var.as_ref()).ok_or_else(|| ServerError::MissingBinary {
        binary: BIN_NAME.into(),
        detail: "not on PATH".into(),
    })
}

/// How to install `binary` (a name or a path), told by its file name: the Redis and Valkey
/// packages of Debian and Homebrew; for any other server, only that it must be installed.
fn install_hint(binary: &str) -> String {
    let name = Path::new(binary)
        .file_name()
        .map_or_else(|| binary.into(), |n| n.to_string_lossy());
    if name.starts_with("valkey") {
        "install it with `apt-get install -t bookworm-backports valkey-server` on Debian \
         (the bookworm-backports suite) or `brew install valkey` on macOS"
            .into()
    } else if name.starts_with("redis") {
        "install it with `apt-get install redis-server` on Debian/Ubuntu or \
         `brew install redis` on macOS"
            .into()
    } else {
        format!("install `{name}`")
    }
}

fn search_path(name: &Path, path_var: Option<&OsString>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A port that was free a moment ago on `127.0.0.1`.
fn free_port() -> Result<u16, ServerError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| ServerError::io("binding 127.0.0.1:0 to find a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| ServerError::io("reading the free port", e))?
        .port();
    Ok(port)
}

/// The child if it has not exited; reaps (and forgets) it if it has.
fn live_child(slot: &mut Option<Child>) -> Option<&mut Child> {
    let exited = match slot.as_mut() {
        None => return None,
        Some(child) => !matches!(child.try_wait(), Ok(None)),
    };
    if exited {
        *slot = None;
    }
    slot.as_mut()
}

fn send_signal(child: &Child, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(child.id())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: `kill` has no memory-safety preconditions. The pid is that of our own child,
    // which has not been reaped (callers hold it and only reap through `Child`), so it cannot
    // refer to an unrelated process.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `SIGCONT` (if paused) and `SIGKILL` the child unless it already exited, then reap it.
fn kill_and_reap(child: &mut Child, paused: bool) -> Result<(), ServerError> {
    let reap = |e| ServerError::io("reaping redis-server", e);
    if child.try_wait().map_err(reap)?.is_none() {
        if paused {
            let _ = send_signal(child, libc::SIGCONT);
        }
        send_signal(child, libc::SIGKILL)
            .map_err(|e| ServerError::io("sending SIGKILL to redis-server", e))?;
        child.wait().map_err(reap)?;
    }
    Ok(())
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The last lines written to `path` since `offset` (empty if none or unreadable).
fn log_tail(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    let read = fs::File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_end(&mut bytes)
    });
    if read.is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Percent-encode everything but RFC 3986 unreserved characters (and `/` if `keep_slash`).
fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The message of an error reply as Redis sent it, e.g. `WRONGTYPE Operation against ...`.
fn error_message(err: &redis::ServerError) -> String {
    match err.details() {
        Some(details) => format!("{} {details}", err.code()),
        None => err.code().to_owned(),
    }
}

/// A reply as text; nested error replies read `(error) MESSAGE`.
fn render(value: &Value) -> String {
    let join =
        |items: &mut dyn Iterator<Item = &Value>| items.map(render).collect::<Vec<_>>().join("\n");
    match value {
        Value::Nil => "(nil)".into(),
        Value::Int(n) => n.to_string(),
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => s.clone(),
        Value::Okay => "OK".into(),
        Value::Double(d) => d.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Array(items) | Value::Set(items) | Value::Push { data: items, .. } => {
            join(&mut items.iter())
        }
        Value::Map(pairs) => join(&mut pairs.iter().flat_map(|(k, v)| [k, v])),
        Value::Attribute { data, .. } => render(data),
        Value::ServerError(err) => format!("(error) {}", error_message(err)),
        other => format!("{other:?}"),
    }
}

/// Polls `condition` every 20 ms until it holds or `limit` passes; `log_tail` adds the servers'
/// logs to the error.
pub(crate) fn wait_until(
    what: &str,
    limit: Duration,
    mut condition: impl FnMut() -> Result<bool, ServerError>,
    log_tail: impl FnOnce() -> String,
) -> Result<(), ServerError> {
    let started = Instant::now();
    let mut last_error = String::new();
    loop {
        match condition() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = e.to_string(),
        }
        if started.elapsed() > limit {
            return Err(ServerError::NotReady {
                waited: started.elapsed(),
                last_error: format!("waiting for {what}: {last_error}"),
                log_tail: log_tail(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use super::*;

    #[test]
    fn spawned_server_answers_ping() {
        let server = RedisServer::spawn().expect("spawn");
        assert_eq!(server.command(&["PING"]).expect("ping"), "PONG");
        assert!(server.is_running());
        assert!(server.pid().is_some());
        let port = server.port().expect("tcp port");
        assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
    }

    #[test]
    fn set_get_roundtrip_and_reply_rendering() {
        let server = RedisServer::spawn().expect("spawn");
        assert_eq!(server.command(&["SET", "k", "hello world"]).unwrap(), "OK");
        assert_eq!(server.command(&["GET", "k"]).unwrap(), "hello world");
        assert_eq!(server.command(&["GET", "missing"]).unwrap(), "(nil)");
        assert_eq!(server.command(&["INCR", "n"]).unwrap(), "1");
        assert_eq!(server.command(&["RPUSH", "l", "a", "b", ""]).unwrap(), "3");
        assert_eq!(
            server.command(&["LRANGE", "l", "0", "-1"]).unwrap(),
            "a\nb\n"
        );
        match server.command(&["INCR", "k"]) {
            Err(ServerError::Reply(msg)) => assert!(msg.starts_with("ERR"), "{msg}"),
            other => panic!("expected an error reply, got {other:?}"),
        }
    }

    #[test]
    fn url_works_with_the_redis_crate() {
        let server =
            RedisServer::spawn_with(ServerOptions::new().password("p@ss word/&?")).expect("spawn");
        server.command(&["SET", "k", "v"]).unwrap();
        let client = redis::Client::open(server.url()).expect("valid url");
        let mut con = client.get_connection().expect("connect with url");
        let value: String = redis::cmd("GET").arg("k").query(&mut con).expect("GET");
        assert_eq!(value, "v");
    }

    #[test]
    fn password_server_rejects_unauthenticated_commands() {
        let server =
            RedisServer::spawn_with(ServerOptions::new().password("s3cret")).expect("spawn");
        let port = server.port().expect("tcp server");
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut con = client.get_connection().expect("connect without password");
        let err = redis::cmd("PING").query::<String>(&mut con).unwrap_err();
        assert_eq!(err.code(), Some("NOAUTH"), "{err:?}");
        assert_eq!(server.command(&["PING"]).unwrap(), "PONG");
        assert!(
            server.url().starts_with("redis://:s3cret@127.0.0.1:"),
            "{}",
            server.url()
        );
    }

    #[test]
    fn unix_socket_server_works() {
        let server = RedisServer::spawn_with(ServerOptions::new().unix_socket(true).password("pw"))
            .expect("spawn");
        assert_eq!(server.port(), None);
        let path = server.socket_path().expect("socket path").to_owned();
        assert!(path.starts_with(server.dir()));
        assert_eq!(
            server.url(),
            format!("redis+unix://{}?pass=pw", path.display())
        );
        assert_eq!(server.command(&["SET", "k", "v"]).unwrap(), "OK");
        assert_eq!(server.command(&["GET", "k"]).unwrap(), "v");
        let client = redis::Client::open(server.url()).expect("valid url");
        let mut con = client.get_connection().expect("connect over unix socket");
        let value: String = redis::cmd("GET").arg("k").query(&mut con).expect("GET");
        assert_eq!(value, "v");
    }

    #[test]
    fn extra_args_are_passed() {
        let server = RedisServer::spawn_with(ServerOptions::new().arg("--maxmemory").arg("1mb"))
            .expect("spawn");
        assert_eq!(
            server.command(&["CONFIG", "GET", "maxmemory"]).unwrap(),
            "maxmemory\n1048576"
        );
    }

    /// The session id of process `pid` (`getsid`, on Linux and macOS alike).
    fn session_of(pid: u32) -> i64 {
        let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
        // SAFETY: `getsid` only reads the process table; it has no memory-safety preconditions.
        let sid = unsafe { libc::getsid(pid) };
        assert!(sid != -1, "getsid({pid}): {}", io::Error::last_os_error());
        i64::from(sid)
    }

    #[test]
    fn own_session_puts_the_server_in_a_session_it_leads() {
        let ours = session_of(std::process::id());
        let shared = RedisServer::spawn().expect("spawn");
        assert_eq!(session_of(shared.pid().unwrap()), ours);
        let own = RedisServer::spawn_with(ServerOptions::new().own_session(true)).expect("spawn");
        let pid = own.pid().unwrap();
        assert_eq!(session_of(pid), i64::from(pid));
        assert_eq!(own.command(&["PING"]).unwrap(), "PONG");
    }

    #[test]
    fn stop_fails_commands_and_restart_keeps_the_port_without_data() {
        let mut server = RedisServer::spawn().expect("spawn");
        let url = server.url();
        let pid = server.pid().expect("pid");
        server.command(&["SET", "k", "v"]).unwrap();

        server.stop().expect("stop");
        server.stop().expect("stop is idempotent");
        assert!(!server.is_running());
        assert_eq!(server.pid(), None);
        let started = Instant::now();
        assert!(matches!(
            server.command(&["PING"]),
            Err(ServerError::Stopped)
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
        // Nothing listens any more.
        let port = server.port().expect("port");
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());

        server.restart().expect("restart");
        assert_eq!(server.url(), url);
        assert_ne!(server.pid(), Some(pid));
        assert_eq!(server.command(&["GET", "k"]).unwrap(), "(nil)");
        // Restarting a running server works too.
        server.restart().expect("restart while running");
        assert_eq!(server.command(&["PING"]).unwrap(), "PONG");
    }

    #[test]
    fn unix_socket_server_restarts() {
        let mut server =
            RedisServer::spawn_with(ServerOptions::new().unix_socket(true)).expect("spawn");
        server.command(&["SET", "k", "v"]).unwrap();
        server.stop().unwrap();
        server.restart().expect("restart");
        assert_eq!(server.command(&["GET", "k"]).unwrap(), "(nil)");
    }

    #[test]
    fn paused_server_times_out_until_resumed() {
        let server = RedisServer::spawn().expect("spawn");
        server.pause().expect("pause");
        assert!(server.is_paused());
        assert!(server.is_running());
        let started = Instant::now();
        let err = server
            .command_timeout(&["PING"], Duration::from_millis(200))
            .expect_err("a paused server cannot answer");
        assert!(err.is_timeout(), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        server.resume().expect("resume");
        assert!(!server.is_paused());
        assert_eq!(server.command(&["PING"]).unwrap(), "PONG");
    }

    #[test]
    fn paused_server_is_killed_on_drop() {
        let server = RedisServer::spawn().expect("spawn");
        let port = server.port().expect("port");
        let dir = server.dir().to_owned();
        server.pause().expect("pause");
        drop(server);
        assert!(!dir.exists());
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
    }

    #[test]
    fn several_servers_are_independent() {
        let mut servers = RedisServers::spawn(3).expect("spawn");
        assert_eq!(servers.len(), 3);
        assert!(!servers.is_empty());
        let mut urls = servers.urls();
        urls.sort();
        urls.dedup();
        assert_eq!(urls.len(), 3);
        servers.get(0).command(&["SET", "k", "0"]).unwrap();
        assert_eq!(servers.get(1).command(&["GET", "k"]).unwrap(), "(nil)");
        servers.get_mut(2).stop().unwrap();
        assert!(servers.get(0).is_running() && servers.get(1).is_running());
        assert!(!servers.get(2).is_running());
    }

    #[test]
    fn missing_binary_is_reported_with_install_hint() {
        let err = find_binary(Some("/nonexistent/redis-server".into()), None).unwrap_err();
        assert!(matches!(err, ServerError::MissingBinary { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("`/nonexistent/redis-server` not found"),
            "{msg}"
        );
        assert!(msg.contains("apt-get install redis-server"), "{msg}");
        assert!(msg.contains("brew install redis"), "{msg}");
        assert!(msg.contains("REDIS_SERVER_BIN"), "{msg}");

        let err = find_binary(None, Some("/nonexistent-dir".into())).unwrap_err();
        assert!(matches!(err, ServerError::MissingBinary { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("`redis-server` not found (not on PATH)"),
            "{msg}"
        );
        assert!(msg.contains("apt-get install redis-server"), "{msg}");
        assert!(matches!(
            find_binary(None, None),
            Err(ServerError::MissingBinary { .. })
        ));
    }

    #[test]
    fn missing_override_binary_is_named_with_its_own_install_hint() {
        let err = find_binary(
            Some("valkey-server".into()),
            Some("/nonexistent-dir".into()),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "`valkey-server` not found (REDIS_SERVER_BIN=valkey-server is not on PATH)"
            ),
            "{msg}"
        );
        assert!(
            msg.contains("`apt-get install -t bookworm-backports valkey-server` on Debian"),
            "{msg}"
        );
        assert!(msg.contains("brew install valkey"), "{msg}");
        assert!(!msg.contains("redis-server"), "{msg}");

        let err = find_binary(Some("/opt/valkey/bin/valkey-server".into()), None).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("`/opt/valkey/bin/valkey-server` not found"),
            "{msg}"
        );
        assert!(msg.contains("bookworm-backports valkey-server"), "{msg}");

        let err = find_binary(Some("keydb-server".into()), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("`keydb-server` not found"), "{msg}");
        assert!(msg.contains("install `keydb-server`"), "{msg}");
        assert!(!msg.contains("apt-get"), "{msg}");
    }

    #[test]
    fn binary_is_found_on_path_or_by_override() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("redis-server");
        fs::write(&fake, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths(["/nonexistent-dir".as_ref(), dir.path()]).unwrap();
        assert_eq!(find_binary(None, Some(path.clone())).unwrap(), fake);
        assert_eq!(find_binary(Some(fake.clone().into()), None).unwrap(), fake);
        assert_eq!(
            find_binary(Some("redis-server".into()), Some(path)).unwrap(),
            fake
        );
        // Not executable: skipped.
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(find_binary(Some(fake.into()), None).is_err());
    }

    #[test]
    fn server_that_exits_at_startup_reports_its_log() {
        let err = RedisServer::spawn_with(ServerOptions::new().arg("--no-such-option").arg("1"))
            .expect_err("bad option");
        match &err {
            ServerError::Exited { log_tail, .. } => {
                assert!(log_tail.contains("no-such-option"), "{log_tail}")
            }
            other => panic!("expected Exited, got {other:?}"),
        }
    }

    #[test]
    fn nested_replies_are_rendered() {
        let server = RedisServer::spawn().expect("spawn");
        let script = "return {7, false, {redis.error_reply('ERR x')}}";
        assert_eq!(
            server.command(&["EVAL", script, "0"]).unwrap(),
            "7\n(nil)\n(error) ERR x"
        );
        match server
            .command(&["LPUSH", "l", "a"])
            .and(server.command(&["GET", "l"]))
        {
            Err(ServerError::Reply(msg)) => assert!(msg.starts_with("WRONGTYPE "), "{msg}"),
            other => panic!("expected WRONGTYPE, got {other:?}"),
        }
        assert_eq!(percent_encode("a b/@", false), "a%20b%2F%40");
    }
}
