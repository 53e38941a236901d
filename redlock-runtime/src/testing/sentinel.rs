//! A master, a replica and Redis Sentinels, as real processes.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{
    find_binary, free_port, kill_and_reap, log_tail, RedisServer, ServerError, ServerOptions,
};

/// How long sentinels may take to see the replica, or a failover to complete.
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(30);

/// A monitored master with one replica, and `n` sentinels watching it; all killed on drop.
///
/// Sentinels run as `redis-server <config> --sentinel` (the binary is `REDIS_SERVER_BIN` when
/// set, e.g. `valkey-server`) on free loopback ports, each in its own temp dir.
/// [`failover`](Self::failover) forces a failover (`SENTINEL FAILOVER`) and returns once the
/// replica is the master, the old master its replica, and the sentinels name the new one.
///
/// ```no_run
/// use redlock_runtime::testing::RedisSentinel;
///
/// let sentinel = RedisSentinel::spawn(1)?;
/// let urls = sentinel.sentinel_urls(); // give them to `LockManager::sentinel`
/// # let _ = urls;
/// let before = sentinel.master_index()?;
/// sentinel.failover()?;
/// assert_ne!(sentinel.master_index()?, before);
/// # Ok::<(), redlock_runtime::testing::ServerError>(())
/// ```
#[derive(Debug)]
pub struct RedisSentinel {
    /// Index 0 starts as the master, index 1 as its replica.
    servers: Vec<RedisServer>,
    sentinels: Vec<SentinelProcess>,
    name: String,
}

impl RedisSentinel {
    /// The name under which the sentinels monitor the master.
    pub const MASTER_NAME: &'static str = "redlock-master";

    /// Starts a master, a replica of it, and `sentinels` sentinels (quorum: a majority), and
    /// waits until the replica is in sync and every sentinel sees it.
    pub fn spawn(sentinels: usize) -> Result<RedisSentinel, ServerError> {
        let sentinels = sentinels.max(1);
        let master = RedisServer::spawn()?;
        let master_port = master.port().unwrap_or_default().to_string();
        let replica = RedisServer::spawn_with(
            ServerOptions::new()
                .arg("--replicaof")
                .arg("127.0.0.1")
                .arg(master_port.as_str()),
        )?;
        let name = Self::MASTER_NAME.to_owned();
        let quorum = sentinels / 2 + 1;
        let processes = (0..sentinels)
            .map(|_| SentinelProcess::spawn(&name, &master_port, quorum))
            .collect::<Result<Vec<_>, _>>()?;
        let setup = RedisSentinel {
            servers: vec![master, replica],
            sentinels: processes,
            name,
        };
        let replica_port = setup.servers[1].port().unwrap_or_default().to_string();
        setup.wait_until("the replica to sync and every sentinel to see it", || {
            let info = setup.servers[1].command(&["INFO", "replication"])?;
            if !info.contains("master_link_status:up") {
                return Ok(false);
            }
            for sentinel in &setup.sentinels {
                let replicas = sentinel.replicas(&setup.name)?;
                let seen = replicas.iter().any(|r| {
                    r.get("port") == Some(&replica_port)
                        && r.get("flags").map(String::as_str) == Some("slave")
                        && r.get("master-link-status").map(String::as_str) == Some("ok")
                });
                if !seen {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        Ok(setup)
    }

    /// The sentinels' URLs (`redis://127.0.0.1:PORT`).
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}", s.port))
            .collect()
    }

    /// The monitored master's name.
    pub fn master_name(&self) -> &str {
        &self.name
    }

    /// Server `i`: 0 started as the master, 1 as the replica.
    ///
    /// # Panics
    /// If `i > 1`.
    pub fn server(&self, i: usize) -> &RedisServer {
        &self.servers[i]
    }

    /// Server `i`, mutably (to stop or restart it).
    ///
    /// # Panics
    /// If `i > 1`.
    pub fn server_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.servers[i]
    }

    /// The index of the server the first sentinel names as master
    /// (`SENTINEL GET-MASTER-ADDR-BY-NAME`).
    pub fn master_index(&self) -> Result<usize, ServerError> {
        let reply =
            self.sentinels[0].command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.name])?;
        let port: u16 = reply
            .lines()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| ServerError::Protocol(format!("master address {reply:?}")))?;
        self.servers
            .iter()
            .position(|s| s.port() == Some(port))
            .ok_or_else(|| ServerError::Reply(format!("sentinel names an unknown master :{port}")))
    }

    /// Forces a failover and waits until it is complete: every sentinel names the former
    /// replica, which reports `role:master`, and the former master reports `role:slave`.
    pub fn failover(&self) -> Result<(), ServerError> {
        let old = self.master_index()?;
        let new = 1 - old;
        let started = Instant::now();
        loop {
            match self.sentinels[0].command(&["SENTINEL", "FAILOVER", &self.name]) {
                Ok(_) => break,
                // The sentinel has not judged the replica fit yet (NOGOODSLAVE), or is busy.
                Err(ServerError::Reply(msg)) if started.elapsed() < SENTINEL_TIMEOUT => {
                    tracing::debug!(%msg, "SENTINEL FAILOVER refused; retrying");
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
        self.wait_until("the failover to complete", || {
            for sentinel in &self.sentinels {
                let reply =
                    sentinel.command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.name])?;
                let port = self.servers[new].port().unwrap_or_default().to_string();
                if reply.lines().nth(1) != Some(port.as_str()) {
                    return Ok(false);
                }
            }
            let promoted = self.servers[new].command(&["INFO", "replication"])?;
            let demoted = self.servers[old].command(&["INFO", "replication"])?;
            Ok(promoted.contains("role:master") && demoted.contains("role:slave"))
        })
    }

    fn wait_until(
        &self,
        what: &str,
        condition: impl FnMut() -> Result<bool, ServerError>,
    ) -> Result<(), ServerError> {
        super::wait_until(what, SENTINEL_TIMEOUT, condition, || {
            self.sentinels
                .iter()
                .map(|s| log_tail(&s.log_path(), 0))
                .collect::<Vec<_>>()
                .join("\n--\n")
        })
    }
}

/// One `redis-server --sentinel` process, killed on drop.
#[derive(Debug)]
struct SentinelProcess {
    child: Mutex<Option<Child>>,
    port: u16,
    dir: TempDir,
}

impl SentinelProcess {
    fn spawn(name: &str, master_port: &str, quorum: usize) -> Result<Self, ServerError> {
        let bin = find_binary(std::env::var_os(super::BIN_ENV), std::env::var_os("PATH"))?;
        let dir = tempfile::Builder::new()
            .prefix("redlock-sentinel-")
            .tempdir()
            .map_err(|e| ServerError::io("creating a temp dir for a sentinel", e))?;
        let port = free_port()?;
        let config = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\n\
             dir {dir}\nlogfile {dir}/sentinel.log\n\
             sentinel monitor {name} 127.0.0.1 {master_port} {quorum}\n\
             sentinel down-after-milliseconds {name} 2000\n\
             sentinel failover-timeout {name} 10000\n\
             sentinel parallel-syncs {name} 1\n",
            dir = dir.path().display(),
        );
        let config_path = dir.path().join("sentinel.conf");
        fs::write(&config_path, config).map_err(|e| ServerError::io("writing sentinel.conf", e))?;
        let child = Command::new(&bin)
            .arg(&config_path)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| ServerError::io(format!("starting {} --sentinel", bin.display()), e))?;
        let process = SentinelProcess {
            child: Mutex::new(Some(child)),
            port,
            dir,
        };
        let started = Instant::now();
        loop {
            match process.command(&["PING"]) {
                Ok(pong) if pong == "PONG" => return Ok(process),
                _ if started.elapsed() > Duration::from_secs(10) => {
                    return Err(ServerError::NotReady {
                        waited: started.elapsed(),
                        last_error: "sentinel did not answer PING".into(),
                        log_tail: log_tail(&process.log_path(), 0),
                    })
                }
                _ => thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("sentinel.log")
    }

    fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port))?;
        let conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(conn)
    }

    fn command(&self, args: &[&str]) -> Result<String, ServerError> {
        let mut conn = self
            .connection()
            .map_err(|e| ServerError::Reply(e.to_string()))?;
        match redis::Cmd::new().arg(args).query::<redis::Value>(&mut conn) {
            Ok(value) => Ok(super::render(&value)),
            Err(e) if e.code().is_some() => Err(ServerError::Reply(e.to_string())),
            Err(e) => Err(ServerError::Protocol(e.to_string())),
        }
    }

    fn replicas(&self, name: &str) -> Result<Vec<HashMap<String, String>>, ServerError> {
        let mut conn = self
            .connection()
            .map_err(|e| ServerError::Reply(e.to_string()))?;
        redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(name)
            .query(&mut conn)
            .map_err(|e| ServerError::Reply(e.to_string()))
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let taken = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = taken {
            let _ = kill_and_reap(&mut child, false);
        }
    }
}
