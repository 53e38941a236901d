//! A network of hosts on this machine, for the partition suite: every host is a network
//! namespace of its own, cabled by a veth pair to one bridge (the switch, in a namespace of its
//! own too), with an address in `10.77.0.0/24`. Partitions are firewall rules in a host's
//! namespace (`iptables` `DROP`, both directions), so a cut link is silent: packets vanish,
//! nothing is refused, as when a real network splits.
//!
//! Everything is made by this process and removed on drop: namespaces (with their devices and
//! rules), and whatever still runs in them. Namespaces left by a run that was killed are
//! removed by the next one. Traffic goes only between these hosts: no host has a route
//! anywhere else, and this process's own namespace is not touched.

#![allow(dead_code)] // each scenario uses part of the support

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use redlock::testing::{Namespace, RedisServer, ServerError, ServerOptions};

/// Every namespace of a network is named `<PREFIX><pid>x<network>-<host>`.
const PREFIX: &str = "rl";
/// The bridge in the switch's namespace.
const BRIDGE: &str = "br0";
/// The device that cables a host to the switch, in the host's namespace.
const PORT: &str = "eth0";

/// One host: a namespace with one address.
#[derive(Debug)]
pub struct Host {
    pub name: String,
    pub namespace: Arc<Namespace>,
    pub address: Ipv4Addr,
}

impl Host {
    /// Starts a `redis-server` (or what `REDIS_SERVER_BIN` names) on this host.
    pub fn server(&self, options: ServerOptions) -> RedisServer {
        RedisServer::spawn_with(options.namespace(&self.namespace, self.address))
            .unwrap_or_else(|e| panic!("starting redis-server on {}: {e}", self.name))
    }
}

/// The hosts, the switch, and the partitions in force.
pub struct Network {
    run: String,
    switch: Namespace,
    hosts: Vec<Arc<Host>>,
    /// Cut links, as (host, peer) names, the host's firewall dropping the peer.
    cut: Mutex<BTreeSet<(String, String)>>,
}

impl Network {
    /// A network with no hosts yet. Panics with the reason if the machine refuses network
    /// namespaces or `iptables`: the suite never passes without running.
    pub fn new() -> Network {
        remove_stale();
        static NETWORKS: AtomicUsize = AtomicUsize::new(0);
        let run = format!(
            "{PREFIX}{}x{}",
            std::process::id(),
            NETWORKS.fetch_add(1, Ordering::Relaxed)
        );
        let switch = Namespace::create(&format!("{run}-sw")).unwrap_or_else(|e| refused(&e));
        switch
            .ip(&["link", "add", BRIDGE, "type", "bridge"])
            .and_then(|()| switch.ip(&["link", "set", BRIDGE, "up"]))
            .unwrap_or_else(|e| refused(&e));
        Network {
            run,
            switch,
            hosts: Vec::new(),
            cut: Mutex::default(),
        }
    }

    /// Adds a host `name` (a few letters: it names a device), cabled to the switch.
    pub fn host(&mut self, name: &str) -> Arc<Host> {
        let index = self.hosts.len() + 1;
        assert!(index < 250, "too many hosts");
        let namespace =
            Namespace::create(&format!("{}-{name}", self.run)).unwrap_or_else(|e| refused(&e));
        let address = Ipv4Addr::new(10, 77, 0, index as u8);
        let cidr = format!("{address}/24");
        let switch = self.switch.name();
        let cabled = self
            .switch
            .ip(&[
                "link",
                "add",
                "name",
                name,
                "type",
                "veth",
                "peer",
                "name",
                PORT,
                "netns",
                namespace.name(),
            ])
            .and_then(|()| {
                self.switch
                    .ip(&["link", "set", "dev", name, "master", BRIDGE])
            })
            .and_then(|()| self.switch.ip(&["link", "set", "dev", name, "up"]))
            .and_then(|()| namespace.ip(&["addr", "add", &cidr, "dev", PORT]))
            .and_then(|()| namespace.ip(&["link", "set", "dev", PORT, "up"]));
        cabled.unwrap_or_else(|e| panic!("cabling {name} to the switch in {switch}: {e}"));
        // The firewall answers at once: an empty rule set, listed.
        namespace
            .exec("iptables", &["-w", "-S"])
            .unwrap_or_else(|e| refused(&e));
        let host = Arc::new(Host {
            name: name.to_owned(),
            namespace: Arc::new(namespace),
            address,
        });
        self.hosts.push(host.clone());
        host
    }

    /// Cuts `host` off from each of `peers`: its firewall drops every packet from and to them
    /// (links already cut stay cut).
    pub fn cut(&self, host: &Host, peers: &[&Arc<Host>]) {
        let mut cut = self.cut.lock().unwrap();
        let fresh: Vec<&Arc<Host>> = peers
            .iter()
            .copied()
            .filter(|peer| cut.insert((host.name.clone(), peer.name.clone())))
            .collect();
        if fresh.is_empty() {
            return;
        }
        let addresses = fresh
            .iter()
            .map(|peer| peer.address.to_string())
            .collect::<Vec<_>>()
            .join(",");
        for rule in [
            ["-I", "INPUT", "-s", &addresses, "-j", "DROP"],
            ["-I", "OUTPUT", "-d", &addresses, "-j", "DROP"],
        ] {
            let mut args = vec!["-w"];
            args.extend_from_slice(&rule);
            host.namespace
                .exec("iptables", &args)
                .unwrap_or_else(|e| panic!("cutting {} off: {e}", host.name));
        }
    }

    /// Heals every link `host` had cut off.
    pub fn heal(&self, host: &Host) {
        let mut cut = self.cut.lock().unwrap();
        cut.retain(|(from, _)| *from != host.name);
        for chain in ["INPUT", "OUTPUT"] {
            host.namespace
                .exec("iptables", &["-w", "-F", chain])
                .unwrap_or_else(|e| panic!("healing {}: {e}", host.name));
        }
    }

    /// Heals every cut link.
    pub fn heal_all(&self) {
        for host in &self.hosts {
            self.heal(host);
        }
    }

    /// The links cut now, as (host, peer) names.
    pub fn cut_links(&self) -> BTreeSet<(String, String)> {
        self.cut.lock().unwrap().clone()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Whatever still runs in a host (a child that outlived its test) keeps the namespace
        // and its devices alive: kill it first.
        for host in &self.hosts {
            kill_inside(host.namespace.name());
        }
        // The hosts' namespaces go with their last `Arc`; the scenario holds none by now.
        self.hosts.clear();
    }
}

/// Panics with the reason the machine refused to host the network.
fn refused(error: &ServerError) -> ! {
    panic!(
        "this machine refuses what the partition suite needs (network namespaces, veth pairs \
         and iptables, as root): {error}"
    )
}

/// Kills every process in the namespace `name`.
fn kill_inside(name: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<libc::pid_t>() {
            // SAFETY: plain syscall; the pid was just listed as living in our own namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Removes the namespaces of earlier runs whose process is gone (killed before it could clean
/// up), with whatever still runs in them.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('x'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_inside(name);
        let _ = Command::new("ip").args(["netns", "del", name]).status();
    }
}
