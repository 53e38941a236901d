//! One real `redis-server` process: [`RedisServer`], started, probed, stopped, restarted,
//! paused and resumed.
//!
//! One concern, a little over 400 lines: the life cycle of one process (launch, readiness,
//! signals, restarts on the same address) is one state machine over the same fields.

use std::fmt;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use redis::{ConnectionLike, ErrorKind, Value};
use tempfile::TempDir;

use super::{
    error_message, file_len, find_binary, free_port, kill_and_reap, live_child, log_tail,
    percent_encode, render, send_signal, Namespace, ServerError, ServerOptions, BIN_ENV,
    COMMAND_TIMEOUT, PORT_ATTEMPTS, PROBE_TIMEOUT, READY_POLL, READY_TIMEOUT, REBIND_TIMEOUT,
};

/// The configuration file a server with [`ServerOptions::config`] starts from, in its directory.
const CONFIG_FILE: &str = "redis.conf";

/// Where a server listens.
#[derive(Debug, Clone)]
pub(super) enum Endpoint {
    Tcp(u16),
    Unix(PathBuf),
}

/// A real `redis-server` process in a temp dir, killed on drop.
///
/// No persistence: a [`restart`](Self::restart) starts with an empty dataset.
pub struct RedisServer {
    /// The running process; `None` while stopped. Only reaped under this lock, so its pid is
    /// never signalled after it could have been reused.
    pub(super) child: Mutex<Option<Child>>,
    pub(super) paused: AtomicBool,
    pub(super) endpoint: Endpoint,
    pub(super) bin: PathBuf,
    pub(super) password: Option<String>,
    pub(super) args: Vec<String>,
    pub(super) own_session: bool,
    /// The network namespace it runs in, and the address it listens on there besides loopback.
    pub(super) namespace: Option<(Arc<Namespace>, Ipv4Addr)>,
    /// Whether it starts from [`CONFIG_FILE`] in its directory.
    pub(super) config: bool,
    pub(super) log_path: PathBuf,
    pub(super) dir: TempDir,
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
        if let Some(text) = &opts.config {
            let path = dir.path().join(CONFIG_FILE);
            fs::write(&path, text)
                .map_err(|e| ServerError::io(format!("writing {}", path.display()), e))?;
        }
        let mut server = RedisServer {
            child: Mutex::new(None),
            paused: AtomicBool::new(false),
            endpoint,
            bin,
            password: opts.password,
            args: opts.args,
            own_session: opts.own_session,
            namespace: opts.namespace,
            config: opts.config.is_some(),
            log_path: dir.path().join("redis.log"),
            dir,
        };
        let child = match server.endpoint {
            Endpoint::Unix(_) => server.launch()?,
            Endpoint::Tcp(_) => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    server.endpoint = Endpoint::Tcp(server.inside(free_port)??);
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
    /// (percent-encoded). A server in a network namespace is named by the address it was given
    /// there ([`ServerOptions::namespace`]).
    pub fn url(&self) -> String {
        let host = self
            .namespace
            .as_ref()
            .map_or(Ipv4Addr::LOCALHOST, |&(_, address)| address);
        self.url_at(host)
    }

    /// The address given to the server in its network namespace, if it runs in one.
    pub fn address(&self) -> Option<Ipv4Addr> {
        self.namespace.as_ref().map(|&(_, address)| address)
    }

    /// The URL naming `host` (for a TCP server).
    fn url_at(&self, host: Ipv4Addr) -> String {
        match (&self.endpoint, &self.password) {
            (Endpoint::Tcp(port), None) => format!("redis://{host}:{port}"),
            (Endpoint::Tcp(port), Some(pw)) => {
                format!("redis://:{}@{host}:{port}", percent_encode(pw, false))
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
        if self.config {
            cmd.arg(self.dir.path().join(CONFIG_FILE));
        }
        match &self.endpoint {
            Endpoint::Tcp(port) => {
                cmd.arg("--port").arg(port.to_string());
                cmd.args(["--bind", "127.0.0.1"]);
                if let Some((namespace, address)) = &self.namespace {
                    cmd.arg(address.to_string());
                    namespace.enter_on_exec(&mut cmd);
                }
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
        // Over loopback: inside the server's namespace when it has one.
        let client = redis::Client::open(self.url_at(Ipv4Addr::LOCALHOST))?;
        let talk = move || {
            let mut conn = client.get_connection_with_timeout(left()?)?;
            let left = left()?;
            conn.set_read_timeout(Some(left))?;
            conn.set_write_timeout(Some(left))?;
            conn.req_command(redis::Cmd::new().arg(args))
        };
        self.inside(talk)
            .map_err(|e| redis::RedisError::from(io::Error::other(e.to_string())))?
    }

    /// Runs `f` inside the server's network namespace (on a thread of its own), or here.
    fn inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, ServerError> {
        match &self.namespace {
            Some((namespace, _)) => namespace.run(f),
            None => Ok(f()),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
