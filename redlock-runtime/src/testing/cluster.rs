//! A local Redis Cluster of real `redis-server` processes.

use std::collections::HashMap;
use std::time::Duration;

use super::{free_port, RedisServer, ServerError, ServerOptions};

/// Number of hash slots of a Redis Cluster.
const SLOTS: u32 = 16384;
/// How long the cluster may take to agree on its state.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A local Redis Cluster of `masters` masters (no replicas), each a [`RedisServer`] on a free
/// loopback port with its own temp dir and cluster bus port; all killed on drop.
///
/// Slots are split evenly in order (master 0 serves the lowest slots). A master can be stopped
/// and restarted (it keeps its node id and slots through its `nodes.conf`, but not its data),
/// and a slot can be migrated from one master to another with its keys, as `redis-cli
/// --cluster reshard` does.
///
/// ```no_run
/// use redlock_runtime::testing::RedisCluster;
///
/// let mut cluster = RedisCluster::spawn(3)?;
/// let seeds = cluster.urls(); // give them to `LockManager::cluster`
/// # let _ = seeds;
/// let slot = cluster.slot_of("lock:account:7")?;
/// let owner = cluster.owner_of_slot(slot)?;
/// cluster.migrate_slot(slot, (owner + 1) % 3)?;
/// cluster.restart_master(0)?;
/// # Ok::<(), redlock_runtime::testing::ServerError>(())
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    masters: Vec<RedisServer>,
    ids: Vec<String>,
}

impl RedisCluster {
    /// Starts `masters` cluster-enabled servers, assigns the slots, joins them, and waits until
    /// every node reports `cluster_state:ok` and knows every other node.
    pub fn spawn(masters: usize) -> Result<RedisCluster, ServerError> {
        if masters == 0 {
            return Err(ServerError::Reply(
                "a cluster needs at least one master".into(),
            ));
        }
        let mut servers = Vec::with_capacity(masters);
        let mut bus_ports = Vec::with_capacity(masters);
        for _ in 0..masters {
            let bus_port = free_port()?;
            bus_ports.push(bus_port.to_string());
            let options = ServerOptions::new()
                .arg("--cluster-enabled")
                .arg("yes")
                .arg("--cluster-config-file")
                .arg("nodes.conf")
                .arg("--cluster-port")
                .arg(bus_port.to_string())
                .arg("--cluster-node-timeout")
                .arg("5000");
            servers.push(RedisServer::spawn_with(options)?);
        }
        let mut ids = Vec::with_capacity(masters);
        for (i, server) in servers.iter().enumerate() {
            ids.push(server.command(&["CLUSTER", "MYID"])?);
            let first = (i as u32 * SLOTS / masters as u32).to_string();
            let last = ((i as u32 + 1) * SLOTS / masters as u32 - 1).to_string();
            server.command(&["CLUSTER", "ADDSLOTSRANGE", &first, &last])?;
            server.command(&["CLUSTER", "SET-CONFIG-EPOCH", &(i + 1).to_string()])?;
        }
        for (server, bus_port) in servers.iter().zip(&bus_ports).skip(1) {
            let port = server.port().unwrap_or_default().to_string();
            servers[0].command(&["CLUSTER", "MEET", "127.0.0.1", &port, bus_port])?;
        }
        let cluster = RedisCluster {
            masters: servers,
            ids,
        };
        cluster.wait_ready()?;
        Ok(cluster)
    }

    /// Seed URLs: every master's `redis://127.0.0.1:PORT`.
    pub fn urls(&self) -> Vec<String> {
        self.masters.iter().map(RedisServer::url).collect()
    }

    /// The `i`-th master.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn master(&self, i: usize) -> &RedisServer {
        &self.masters[i]
    }

    /// The node id of the `i`-th master.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn node_id(&self, i: usize) -> &str {
        &self.ids[i]
    }

    /// The number of masters.
    pub fn len(&self) -> usize {
        self.masters.len()
    }

    /// Whether the cluster has no master (never true for a spawned cluster).
    pub fn is_empty(&self) -> bool {
        self.masters.is_empty()
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> Result<u16, ServerError> {
        let reply = self.any_running()?.command(&["CLUSTER", "KEYSLOT", key])?;
        reply
            .parse()
            .map_err(|_| ServerError::Protocol(format!("CLUSTER KEYSLOT answered {reply:?}")))
    }

    /// The index of the master serving `slot`, as the first running master sees it.
    pub fn owner_of_slot(&self, slot: u16) -> Result<usize, ServerError> {
        let owners = self.slot_owners(self.any_running()?)?;
        let id = owners
            .get(&slot)
            .ok_or_else(|| ServerError::Reply(format!("slot {slot} is not served")))?;
        self.index_of(id)
    }

    /// The index of the master serving `key`.
    pub fn owner_of(&self, key: &str) -> Result<usize, ServerError> {
        self.owner_of_slot(self.slot_of(key)?)
    }

    /// Moves `slot` and its keys (with their expiries) to master `to`, as a reshard does:
    /// `IMPORTING` / `MIGRATING`, `MIGRATE` of the keys in batches, then `SETSLOT NODE` on every
    /// master; returns once every running master sees the new owner.
    pub fn migrate_slot(&self, slot: u16, to: usize) -> Result<(), ServerError> {
        let from = self.owner_of_slot(slot)?;
        if from == to {
            return Ok(());
        }
        let slot_arg = slot.to_string();
        let (source, target) = (&self.masters[from], &self.masters[to]);
        target.command(&[
            "CLUSTER",
            "SETSLOT",
            &slot_arg,
            "IMPORTING",
            &self.ids[from],
        ])?;
        source.command(&["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &self.ids[to]])?;
        let port = target.port().unwrap_or_default().to_string();
        loop {
            let keys = source.command(&["CLUSTER", "GETKEYSINSLOT", &slot_arg, "100"])?;
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys);
            source.command(&args)?;
        }
        // The new owner first, as redis-cli does, so the slot is never left without one.
        target.command(&["CLUSTER", "SETSLOT", &slot_arg, "NODE", &self.ids[to]])?;
        source.command(&["CLUSTER", "SETSLOT", &slot_arg, "NODE", &self.ids[to]])?;
        for (i, master) in self.masters.iter().enumerate() {
            if i != from && i != to && master.is_running() {
                master.command(&["CLUSTER", "SETSLOT", &slot_arg, "NODE", &self.ids[to]])?;
            }
        }
        self.wait_until("every master sees the new owner", || {
            for master in self.masters.iter().filter(|m| m.is_running()) {
                let owners = self.slot_owners(master)?;
                if owners.get(&slot) != Some(&self.ids[to]) {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// Kills master `i` (`SIGKILL`). The cluster keeps serving the other masters' slots until
    /// the node timeout (5 s) marks it as failed.
    pub fn stop_master(&mut self, i: usize) -> Result<(), ServerError> {
        self.masters[i].stop()
    }

    /// Restarts master `i` on the same address (stopping it first if needed): same node id and
    /// slots, no data. Returns once the cluster is ready again.
    pub fn restart_master(&mut self, i: usize) -> Result<(), ServerError> {
        self.masters[i].restart()?;
        self.wait_ready()
    }

    /// Waits until every running master reports `cluster_state:ok` and knows all masters.
    pub fn wait_ready(&self) -> Result<(), ServerError> {
        let expected = format!("cluster_known_nodes:{}", self.masters.len());
        self.wait_until("cluster_state:ok on every master", || {
            for master in self.masters.iter().filter(|m| m.is_running()) {
                let info = master.command(&["CLUSTER", "INFO"])?;
                if !info.contains("cluster_state:ok") || !info.contains(&expected) {
                    return Ok(false);
                }
                // Every node must also see every other one connected.
                let nodes = master.command(&["CLUSTER", "NODES"])?;
                let connected = nodes
                    .lines()
                    .filter(|line| line.contains(" connected"))
                    .count();
                if connected < self.masters.len() {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    fn any_running(&self) -> Result<&RedisServer, ServerError> {
        self.masters
            .iter()
            .find(|m| m.is_running())
            .ok_or(ServerError::Stopped)
    }

    fn index_of(&self, id: &str) -> Result<usize, ServerError> {
        self.ids
            .iter()
            .position(|known| known == id)
            .ok_or_else(|| ServerError::Reply(format!("unknown node id {id}")))
    }

    /// Slot → node id, from `CLUSTER NODES` as `server` sees it.
    fn slot_owners(&self, server: &RedisServer) -> Result<HashMap<u16, String>, ServerError> {
        let nodes = server.command(&["CLUSTER", "NODES"])?;
        let mut owners = HashMap::new();
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") {
                continue;
            }
            for range in &fields[8..] {
                if range.starts_with('[') {
                    continue; // a slot being imported or migrated
                }
                let (first, last) = range.split_once('-').unwrap_or((range, range));
                let (Ok(first), Ok(last)) = (first.parse::<u16>(), last.parse::<u16>()) else {
                    continue;
                };
                for slot in first..=last {
                    owners.insert(slot, fields[0].to_owned());
                }
            }
        }
        Ok(owners)
    }

    fn wait_until(
        &self,
        what: &str,
        condition: impl FnMut() -> Result<bool, ServerError>,
    ) -> Result<(), ServerError> {
        super::wait_until(what, CLUSTER_READY_TIMEOUT, condition, String::new)
    }
}
