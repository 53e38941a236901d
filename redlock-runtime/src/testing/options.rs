//! How to start a server: [`ServerOptions`].

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::Namespace;

/// How to start a [`RedisServer`](super::RedisServer): TCP without password by default.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub(super) unix_socket: bool,
    pub(super) password: Option<String>,
    pub(super) args: Vec<String>,
    pub(super) own_session: bool,
    pub(super) namespace: Option<(Arc<Namespace>, Ipv4Addr)>,
    pub(super) config: Option<String>,
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

    /// Require this password (`--requirepass`); [`RedisServer::url`](super::RedisServer::url) and
    /// [`RedisServer::command`](super::RedisServer::command) use it.
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

    /// Start the server inside the network namespace `namespace`, listening on its loopback
    /// (where [`RedisServer::command`](super::RedisServer::command) reaches it, from a thread
    /// inside the namespace) and on `address`, an address the test gave the namespace;
    /// [`RedisServer::url`](super::RedisServer::url) names `address`. Linux only, as root.
    pub fn namespace(mut self, namespace: &Arc<Namespace>, address: Ipv4Addr) -> Self {
        self.namespace = Some((namespace.clone(), address));
        self
    }

    /// Start from a configuration file holding `text`, written to the server's directory and
    /// passed before every other argument. A sentinel needs one (it records what it learns
    /// there): `.config("sentinel monitor main 10.77.0.2 6379 2\n").arg("--sentinel")`.
    pub fn config(mut self, text: impl Into<String>) -> Self {
        self.config = Some(text.into());
        self
    }

    /// Append a raw `redis-server` argument, e.g. `.arg("--maxmemory").arg("1mb")`.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
}
