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

use std::time::Duration;

mod error;
mod netns;
mod options;
mod process;
mod proxy;
mod server;
mod servers;
#[cfg(test)]
mod tests;

pub use error::ServerError;
pub use netns::Namespace;
pub use options::ServerOptions;
use process::*;
pub use proxy::{Proxy, ProxyMode};
pub use server::RedisServer;
pub use servers::RedisServers;
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
