//! Partitions and failovers over real networks: every Redis server, sentinel and client
//! process runs on a host of its own (a network namespace, `tests/network`), links are cut
//! with firewall rules and healed, some links delay and lose traffic (the testing support's
//! proxy, inside the client's host), and the history of every critical section — key, fencing
//! token, enter, exit, end of lease — is checked afterwards (`tests/history`).
//!
//! Every section reads a counter from a separate store and writes it back incremented, both
//! fenced: the store refuses a token lower than the highest it has seen (or equal to it from
//! another section). Whatever the locks did, the store must end with each counter equal to the
//! number of sections whose write it accepted.
//!
//! - Redlock over 5 masters: a holder is cut off from a majority (or from every master)
//!   mid-hold, or a majority of masters from every client; no two protected sections of a key
//!   overlap, tokens increase, no lock is granted while no majority is reachable, and locks are
//!   granted again within a bound after healing.
//! - Sentinel, a primary and a replica: the primary is cut off from its replica, then from
//!   everyone; the sentinels fail over; the network heals and the old primary rejoins as a
//!   replica. With replica acknowledgement no lock is granted twice; without it, locks taken
//!   while the replica was cut off can be granted again after the failover: counted, and the
//!   store stays correct either way.
//! - A Redis host whose clock jumps forward ends every lease on it at once: holders overlap
//!   until their next renewal finds the lock gone; the store stays correct.
//!
//! The client processes and the store are in `tests/partition_client`; with
//! `REDLOCK_CLIENT_LOG=1` the clients log the library's debug events to standard error.
//!
//! Needs root (network namespaces, veth, iptables): elsewhere it fails, saying why. Short form
//! (CI, `REDLOCK_PARTITION_SECONDS` 20): that many seconds of Redlock, half of clock jumps, and
//! a tenth as many failovers (at least 2) with and without replica acknowledgement, about 3
//! minutes in all. Long form:
//! `REDLOCK_PARTITION_SECONDS=120 cargo test --all-features --test partitions -- --nocapture`.

mod fault_support;
mod history;
mod network;
mod partition_client;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fault_support::{now_ns, ChildProcess};
use history::{check, Section, Verdict};
use network::{Host, Network};
use partition_client::{stored, Workload, OPERATION_TIMEOUT};
use redlock::testing::{RedisServer, ServerOptions};

/// Upper bound for one step of the coordinator (a report, a failover, a resync).
const PATIENCE: Duration = Duration::from_secs(60);

/// The scenarios run one at a time: each loads both cores, and its timings are figures.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    ONE.lock().await
}

/// Held by the scenario that runs; networks made meanwhile would also race for the stale
/// namespaces each new network removes.
static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long each scenario runs (`REDLOCK_PARTITION_SECONDS`, default 20).
fn seconds() -> u64 {
    std::env::var("REDLOCK_PARTITION_SECONDS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("REDLOCK_PARTITION_SECONDS is a number of seconds")
        })
        .unwrap_or(20)
}

// ---------------------------------------------------------------------------------------------
// The network itself.

/// The network namespaces `ip netns list` shows.
fn namespaces() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn a_network_removes_its_hosts_and_what_runs_there_also_after_a_failure() {
    let _one = ONE.blocking_lock();
    // Left by a run that was killed (no process has this pid): removed by the next network.
    let stale = "rl4194999x0-sw";
    let made = std::process::Command::new("ip")
        .args(["netns", "add", stale])
        .status()
        .expect("ip netns add");
    assert!(made.success(), "ip netns add {stale}");
    let mut ours = Vec::new();
    let mut sleeper = None;
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut net = Network::new();
        let (a, b) = (net.host("a"), net.host("b"));
        ours = namespaces()
            .into_iter()
            .filter(|name| name.starts_with(&format!("rl{}x", std::process::id())))
            .collect();
        let server = b.server(ServerOptions::new());
        // A process the test loses track of: the network kills it with its host.
        let child = a
            .namespace
            .command("sleep")
            .arg("600")
            .spawn()
            .expect("sleep");
        sleeper = Some(child);
        // Hosts reach each other, and a cut link is silent until healed.
        let port = server.port().unwrap();
        let reach = |timeout_ms| {
            let to = std::net::SocketAddr::from((b.address, port));
            a.namespace
                .run(move || {
                    std::net::TcpStream::connect_timeout(&to, Duration::from_millis(timeout_ms))
                        .is_ok()
                })
                .unwrap()
        };
        assert!(reach(2_000), "b is not reachable from a");
        net.cut(&a, &[&b]);
        assert!(!reach(300), "a reached b through a cut link");
        net.heal(&a);
        assert!(reach(2_000), "b is not reachable from a after healing");
        panic!("a failure mid-scenario");
    }));
    assert!(failed.is_err());
    assert_eq!(ours.len(), 3, "a switch and two hosts: {ours:?}");
    let left = namespaces();
    for name in ours.iter().chain([&stale.to_owned()]) {
        assert!(!left.contains(name), "{name} is still there: {left:?}");
    }
    let mut sleeper = sleeper.expect("the process was started");
    let status = sleeper.wait().expect("reap sleep");
    assert!(!status.success(), "the process in the host was not killed");
}

// ---------------------------------------------------------------------------------------------
// Client processes (`tests/partition_client`).

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child_process_entry() {
    fault_support::run_child(|role| async move {
        assert_eq!(role, "partition-client", "unknown child role");
        partition_client::client().await;
    });
}

// ---------------------------------------------------------------------------------------------
// The coordinator's side: client processes, their reports, the history.

/// A client process on its host, and the sections it is inside now.
struct Client {
    host: Arc<Host>,
    process: ChildProcess,
    /// section → (key, token, enter).
    open: HashMap<String, (String, u64, u64)>,
    /// Its links that delay and lose traffic.
    lossy: usize,
}

/// Everything the clients reported.
#[derive(Default)]
struct History {
    sections: Vec<Section>,
    /// Every entry: (when, key, client index).
    entries: Vec<(u64, String, usize)>,
    outcomes: BTreeMap<String, usize>,
    failures: BTreeMap<String, usize>,
    /// The first reports of each kind of failure.
    examples: Vec<String>,
    garbled: Vec<String>,
}

impl History {
    fn absorb(&mut self, index: usize, client: &mut Client, lines: Vec<String>) {
        for line in lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["ENTER", key, token, at, by] => {
                    let at = at.parse().unwrap();
                    let entered = (key.to_string(), token.parse().unwrap(), at);
                    client.open.insert(by.to_string(), entered);
                    self.entries.push((at, key.to_string(), index));
                }
                ["EXIT", key, token, exit, lease_end, outcome, by] => {
                    let token: u64 = token.parse().unwrap();
                    let Some((_, _, enter)) = client
                        .open
                        .remove(*by)
                        .filter(|(k, t, _)| k == key && *t == token)
                    else {
                        self.garbled.push(line.clone());
                        continue;
                    };
                    self.sections.push(Section {
                        key: key.to_string(),
                        token,
                        enter,
                        exit: exit.parse().unwrap(),
                        lease_end: lease_end.parse().unwrap(),
                        pid: client.process.pid(),
                    });
                    *self.outcomes.entry(outcome.to_string()).or_default() += 1;
                }
                ["FAIL", kind, ..] => {
                    let seen = self.failures.entry(kind.to_string()).or_default();
                    *seen += 1;
                    if *seen <= 2 {
                        self.examples.push(line.clone());
                    }
                }
                ["DONE"] => {}
                _ => self.garbled.push(line.clone()),
            }
        }
    }

    /// The first entry after `since` (ns), of `key` if given, by a client other than
    /// `except` if given.
    fn entry_after(&self, since: u64, key: Option<&str>, except: Option<usize>) -> Option<u64> {
        self.entries
            .iter()
            .filter(|(at, k, c)| {
                *at > since && key.is_none_or(|key| key == k) && except != Some(*c)
            })
            .map(|&(at, _, _)| at)
            .min()
    }

    fn count(&self, outcome: &str) -> usize {
        self.outcomes.get(outcome).copied().unwrap_or(0)
    }
}

/// The clients and what they reported, pumped by the coordinator.
struct Clients {
    clients: Vec<Client>,
    history: History,
}

impl Clients {
    /// Starts one client process on each host and waits until each is ready.
    async fn start(hosts: &[Arc<Host>], env: &[(&str, String)], lossy: &[&str]) -> Clients {
        let mut clients = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            let mut env = env.to_vec();
            env.push((
                "REDLOCK_LOSSY",
                lossy.get(i).copied().unwrap_or("").to_owned(),
            ));
            let mut process = ChildProcess::spawn_in(&host.namespace, "partition-client", &env);
            let ready = process.expect("READY", PATIENCE).await;
            let lossy: usize = ready[0].parse().expect("a count of lossy links");
            clients.push(Client {
                host: host.clone(),
                process,
                open: HashMap::new(),
                lossy,
            });
        }
        Clients {
            clients,
            history: History::default(),
        }
    }

    /// Takes in what the clients reported so far.
    fn pump(&mut self) {
        for (index, client) in self.clients.iter_mut().enumerate() {
            let lines = client.process.received();
            self.history.absorb(index, client, lines);
        }
    }

    /// Pumps for `period`.
    async fn run_for(&mut self, period: Duration) {
        let end = Instant::now() + period;
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.pump();
        }
    }

    /// Pumps until `found` gives something, for at most `limit`.
    async fn until<T>(
        &mut self,
        limit: Duration,
        mut found: impl FnMut(&Self) -> Option<T>,
    ) -> Option<T> {
        let end = Instant::now() + limit;
        loop {
            self.pump();
            if let Some(found) = found(self) {
                return Some(found);
            }
            if Instant::now() >= end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// How many links of the clients delay and lose traffic.
    fn lossy_links(&self) -> usize {
        self.clients.iter().map(|client| client.lossy).sum()
    }

    /// A client inside a section now, and that section's key.
    fn holder(&self) -> Option<(usize, String)> {
        self.clients.iter().enumerate().find_map(|(i, client)| {
            client
                .open
                .values()
                .next()
                .map(|(key, _, _)| (i, key.clone()))
        })
    }

    /// Stops every client, takes in the rest of their reports, and checks they exited cleanly
    /// with no section left open.
    async fn finish(mut self) -> History {
        for client in &mut self.clients {
            client.process.close_stdin();
        }
        for (index, client) in self.clients.iter_mut().enumerate() {
            let lines = client.process.rest(PATIENCE).await;
            self.history.absorb(index, client, lines);
            let status = client.process.exit(PATIENCE).await;
            assert!(
                status.success(),
                "client on {} failed: {status}",
                client.host.name
            );
            assert!(
                client.open.is_empty(),
                "client on {} left sections open: {:?}",
                client.host.name,
                client.open
            );
        }
        self.history
    }
}

/// Checks the history and the store: fenced writes kept every counter equal to the sections it
/// accepted, with strictly increasing tokens; returns the checker's verdict.
fn verdict(history: &History, store: &RedisServer, keys: usize) -> Verdict {
    assert!(
        history.garbled.is_empty(),
        "garbled reports: {:?}",
        history.garbled
    );
    for key in (0..keys).map(|k| format!("k{k}")) {
        let (value, tokens) = stored(store, &key);
        assert_eq!(
            value as usize,
            tokens.len(),
            "{key}: the counter is not the number of writes the store accepted"
        );
        assert!(
            tokens.windows(2).all(|pair| pair[0] < pair[1]),
            "{key}: the store accepted tokens out of order: {tokens:?}"
        );
    }
    let accepted: usize = (0..keys)
        .map(|k| stored(store, &format!("k{k}")).1.len())
        .sum();
    assert_eq!(
        accepted,
        history.count("done"),
        "the store accepted a write the history does not show, or lost one"
    );
    check(&history.sections)
}

fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

/// The first few of a list of pairs, for a failure message.
fn some<T: std::fmt::Debug>(items: &[T]) -> &[T] {
    &items[..items.len().min(3)]
}

/// `[min, median, max]` of some durations in ms.
fn spread(mut values: Vec<u64>) -> String {
    if values.is_empty() {
        return "none".into();
    }
    values.sort_unstable();
    format!(
        "min {} ms, median {} ms, max {} ms",
        values[0],
        values[values.len() / 2],
        values[values.len() - 1]
    )
}

// ---------------------------------------------------------------------------------------------
// Redlock over five masters.

/// Lease of the Redlock scenario.
const REDLOCK_TTL: Duration = Duration::from_millis(1_000);
/// After healing, a lock is granted again within this long (liveness), and a key whose holder
/// was cut off is granted to another within its lease plus this long.
const REGRANT_BOUND: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_keeps_one_holder_through_partitions_and_grants_again_after_healing() {
    let _one = one_at_a_time().await;
    let mut net = Network::new();
    let master_hosts: Vec<Arc<Host>> = (1..=5).map(|i| net.host(&format!("m{i}"))).collect();
    let store_host = net.host("store");
    let client_hosts: Vec<Arc<Host>> = (1..=3).map(|i| net.host(&format!("c{i}"))).collect();
    let masters: Vec<RedisServer> = master_hosts
        .iter()
        .map(|host| host.server(ServerOptions::new()))
        .collect();
    let store = store_host.server(ServerOptions::new());
    let env = Workload {
        deployment: "redlock",
        urls: masters.iter().map(RedisServer::url).collect(),
        store: &store,
        ttl: REDLOCK_TTL,
        wait: Duration::from_secs(10),
        holds: "5,150,1500",
        acks: false,
    }
    .env();
    // Jitter and loss on one link of the first client, two of the second.
    let mut clients = Clients::start(&client_hosts, &env, &["4", "3,4"]).await;

    let mut rng = fastrand::Rng::new();
    let seconds = seconds();
    let end = Instant::now() + Duration::from_secs(seconds);
    // (holder cut off from how many masters, ms until another got its key, ms until it got a
    // lock again after healing)
    let mut holder_rounds: Vec<(usize, u64, u64)> = Vec::new();
    // ms from healing until a lock was granted again
    let mut majority_rounds: Vec<u64> = Vec::new();
    let mut granted_without_majority = Vec::new();
    let mut round = 0;
    while Instant::now() < end {
        round += 1;
        clients
            .run_for(Duration::from_millis(rng.u64(300..800)))
            .await;
        if round % 2 == 1 {
            // A holder, cut off from a majority of the masters (or all of them) mid-hold.
            let Some((victim, key)) = clients.until(Duration::from_secs(5), Clients::holder).await
            else {
                panic!("no client held a lock for 5 s");
            };
            let mut away: Vec<&Arc<Host>> = master_hosts.iter().collect();
            rng.shuffle(&mut away);
            away.truncate(rng.usize(3..=5));
            let cut_at = now_ns();
            net.cut(&client_hosts[victim], &away);
            let other = clients
                .until(REDLOCK_TTL + REGRANT_BOUND, |c| {
                    c.history.entry_after(cut_at, Some(&key), Some(victim))
                })
                .await
                .unwrap_or_else(|| {
                    panic!(
                        "{key} was not granted to another client within {:?} of its holder \
                         being cut off",
                        REDLOCK_TTL + REGRANT_BOUND
                    )
                });
            clients
                .run_for(Duration::from_millis(rng.u64(200..1_000)))
                .await;
            net.heal(&client_hosts[victim]);
            let healed = now_ns();
            let back = clients
                .until(PATIENCE, |c| {
                    c.history
                        .entries
                        .iter()
                        .filter(|&&(at, _, c)| at > healed && c == victim)
                        .map(|&(at, _, _)| at)
                        .min()
                })
                .await
                .expect("the healed client never got a lock again");
            holder_rounds.push((away.len(), ms(other - cut_at), ms(back - healed)));
        } else {
            // A majority of the masters, cut off from every client.
            let mut away: Vec<&Arc<Host>> = master_hosts.iter().collect();
            rng.shuffle(&mut away);
            away.truncate(3);
            let cut_at = now_ns();
            for host in &client_hosts {
                net.cut(host, &away);
            }
            clients
                .run_for(Duration::from_millis(rng.u64(1_000..2_000)))
                .await;
            let heal_at = now_ns();
            // An answer already on its way when the cut came may still complete an acquire.
            let grace = 2 * OPERATION_TIMEOUT.as_nanos() as u64;
            granted_without_majority.extend(
                clients
                    .history
                    .entries
                    .iter()
                    .filter(|&&(at, _, _)| at > cut_at + grace && at < heal_at)
                    .cloned(),
            );
            net.heal_all();
            let healed = now_ns();
            let again = clients
                .until(REGRANT_BOUND, |c| c.history.entry_after(healed, None, None))
                .await
                .unwrap_or_else(|| {
                    panic!("no lock was granted within {REGRANT_BOUND:?} of healing")
                });
            majority_rounds.push(ms(again - healed));
        }
    }
    net.heal_all();
    let lossy = clients.lossy_links();
    let history = clients.finish().await;
    let verdict = verdict(&history, &store, 2);
    eprintln!(
        "redlock over 5 masters, 3 client processes x 3 tasks, 2 keys, ttl {REDLOCK_TTL:?}, \
         {lossy} lossy links, {seconds} s: {} sections {:?}, failures {:?}; {} holders cut off \
         mid-hold (from \
         {:?} masters): key granted to another after {}; the holder locked again {} after \
         healing; {} majority partitions: granted again {} after healing; overlaps {}, token \
         regressions {}, grants without a majority {}",
        verdict.sections,
        history.outcomes,
        history.failures,
        holder_rounds.len(),
        holder_rounds.iter().map(|r| r.0).collect::<Vec<_>>(),
        spread(holder_rounds.iter().map(|r| r.1).collect()),
        spread(holder_rounds.iter().map(|r| r.2).collect()),
        majority_rounds.len(),
        spread(majority_rounds.clone()),
        verdict.overlaps.len(),
        verdict.token_regressions.len(),
        granted_without_majority.len(),
    );
    assert!(
        verdict.overlaps.is_empty(),
        "two holders were protected at once: {:?}",
        some(&verdict.overlaps)
    );
    assert!(
        verdict.token_regressions.is_empty(),
        "fencing tokens did not increase: {:?}",
        some(&verdict.token_regressions)
    );
    assert!(
        granted_without_majority.is_empty(),
        "locks granted while a majority of masters was cut off: {granted_without_majority:?}"
    );
    assert!(!holder_rounds.is_empty() && !majority_rounds.is_empty());
    // Half the time no majority is reachable, or a client is cut off: still, locks go on.
    assert!(
        history.count("done") >= 2 * seconds as usize,
        "only {} sections completed in {seconds} s",
        history.count("done")
    );
    drop(masters);
}

// ---------------------------------------------------------------------------------------------
// Sentinel: a primary, a replica, three sentinels.

/// Lease of the failover scenario: longer than a failover takes, so that a holder cut off with
/// the old primary still counts its lease when the new primary could grant its key.
#[cfg(feature = "sentinel")]
const FAILOVER_TTL: Duration = Duration::from_millis(5_000);
/// The name the sentinels monitor the primary under (as clients know it: see [`Workload`]).
#[cfg(feature = "sentinel")]
const SERVICE: &str = "main";

/// What a run of failovers showed.
#[cfg(feature = "sentinel")]
struct Failovers {
    history: History,
    verdict: Verdict,
    /// Locks granted while the replica was cut off (the primary's writes no longer reached it).
    granted_unreplicated: usize,
    /// Of those, the locks the new primary granted again, to another holder, while the first
    /// holder still counted its lease.
    granted_twice: usize,
    /// ms from cutting off the primary until the sentinels named the replica.
    failover: Vec<u64>,
    /// ms from cutting off the primary until a lock was granted again.
    unavailable: Vec<u64>,
    /// What the coordinator did when (ns).
    timeline: Vec<(u64, String)>,
}

#[cfg(feature = "sentinel")]
impl Failovers {
    fn report(&self, mode: &str) {
        eprintln!(
            "sentinel failover {mode}, 2 client processes x 3 tasks, 2 keys, ttl \
             {FAILOVER_TTL:?}: {} failovers; {} locks granted while the replica was cut off, \
             {} of them granted again by the new primary while the first holder's lease ran; \
             sentinels promoted the replica {}, no lock granted for {} from the cut; {} \
             sections {:?}, failures {:?}; sections overlapping {}, token regressions {}, \
             writes fenced off by the store {}",
            self.failover.len(),
            self.granted_unreplicated,
            self.granted_twice,
            spread(self.failover.clone()),
            spread(self.unavailable.clone()),
            self.verdict.sections,
            self.history.outcomes,
            self.history.failures,
            self.verdict.overlaps.len(),
            self.verdict.token_regressions.len(),
            self.history.count("fenced"),
        );
        for example in &self.history.examples {
            eprintln!("  {example}");
        }
        for (at, what) in &self.timeline {
            eprintln!("  {:.3} s {what}", *at as f64 / 1e9);
        }
        for (a, b) in &self.verdict.overlaps {
            eprintln!(
                "  overlap: {} token {} [{:.3}, {:.3}] lease end {:.3} with token {} [{:.3}, {:.3}] lease end {:.3}",
                a.key, a.token, a.enter as f64 / 1e9, a.exit as f64 / 1e9, a.lease_end as f64 / 1e9,
                b.token, b.enter as f64 / 1e9, b.exit as f64 / 1e9, b.lease_end as f64 / 1e9
            );
        }
    }
}

/// Polls `condition` every 50 ms for up to [`PATIENCE`], pumping the clients' reports.
#[cfg(feature = "sentinel")]
async fn wait_for(clients: &mut Clients, what: &str, mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < end, "waited {PATIENCE:?} for {what}");
        clients.run_for(Duration::from_millis(50)).await;
    }
}

/// The address of the primary that `sentinel` names.
#[cfg(feature = "sentinel")]
fn named_primary(sentinel: &RedisServer) -> Option<String> {
    let reply = sentinel
        .command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE])
        .ok()?;
    reply.lines().next().map(str::to_owned)
}

/// Runs failovers back and forth between a primary and its replica under load: each round cuts
/// the primary off from its replica, then (once a lock was granted meanwhile, or after 1.5 s)
/// from everyone, waits for the sentinels to promote the replica, heals after a lease, and
/// waits for the old primary to rejoin as a replica.
#[cfg(feature = "sentinel")]
async fn failovers(acks: bool) -> Failovers {
    let rounds = (seconds() / 10).max(2) as usize;
    let mut net = Network::new();
    let server_hosts = [net.host("p"), net.host("r")];
    let sentinel_hosts: Vec<Arc<Host>> = (1..=3).map(|i| net.host(&format!("s{i}"))).collect();
    let store_host = net.host("store");
    let client_hosts: Vec<Arc<Host>> = (1..=2).map(|i| net.host(&format!("c{i}"))).collect();
    let primary = server_hosts[0].server(ServerOptions::new());
    let (address, port) = (
        primary.address().unwrap().to_string(),
        primary.port().unwrap().to_string(),
    );
    let replica = server_hosts[1].server(
        ServerOptions::new()
            .arg("--replicaof")
            .arg(address.as_str())
            .arg(port.as_str()),
    );
    let servers = [primary, replica];
    let config = format!(
        "sentinel monitor {SERVICE} {address} {port} 2\n\
         sentinel down-after-milliseconds {SERVICE} 1000\n\
         sentinel failover-timeout {SERVICE} 3000\n\
         sentinel parallel-syncs {SERVICE} 1\n"
    );
    let sentinels: Vec<RedisServer> = sentinel_hosts
        .iter()
        .map(|host| {
            host.server(
                ServerOptions::new()
                    .config(config.clone())
                    .arg("--sentinel"),
            )
        })
        .collect();
    let store = store_host.server(ServerOptions::new());
    let env = Workload {
        deployment: "sentinel",
        urls: sentinels.iter().map(RedisServer::url).collect(),
        store: &store,
        ttl: FAILOVER_TTL,
        wait: Duration::from_secs(30),
        holds: "1000,4000",
        acks,
    }
    .env();
    let mut clients = Clients::start(&client_hosts, &env, &[]).await;
    let replica_address = servers[1].address().unwrap().to_string();
    wait_for(
        &mut clients,
        "the replica to sync, and every sentinel to see it and the other sentinels",
        || {
            let synced = servers[1]
                .command(&["INFO", "replication"])
                .is_ok_and(|info| info.contains("master_link_status:up"));
            synced
                && sentinels.iter().all(|sentinel| {
                    let sees_replica = sentinel
                        .command(&["SENTINEL", "REPLICAS", SERVICE])
                        .is_ok_and(|r| r.lines().any(|line| line == replica_address));
                    let peers = sentinel
                        .command(&["SENTINEL", "SENTINELS", SERVICE])
                        .map(|r| r.lines().filter(|line| *line == "runid").count());
                    sees_replica && peers.is_ok_and(|n| n == 2)
                })
        },
    )
    .await;

    let mut rng = fastrand::Rng::new();
    let (mut failover, mut unavailable) = (Vec::new(), Vec::new());
    // When the replica no longer got the primary's writes: from its cut (and an answer on its
    // way then) until the primary was cut off from everyone.
    let mut windows = Vec::new();
    let mut primary = 0;
    let mut timeline = Vec::new();
    for _ in 0..rounds {
        let replica = 1 - primary;
        clients
            .run_for(Duration::from_millis(rng.u64(500..1_500)))
            .await;
        // The link to the replica goes first: writes on the primary stop reaching it.
        let replica_cut = now_ns();
        net.cut(&server_hosts[primary], &[&server_hosts[replica]]);
        timeline.push((
            replica_cut,
            format!("cut {} from its replica", server_hosts[primary].name),
        ));
        let window = replica_cut + 50_000_000;
        clients
            .until(Duration::from_millis(1_500), |c| {
                c.history.entry_after(window, None, None)
            })
            .await;
        clients.run_for(Duration::from_millis(20)).await;
        // Then every other link: the sentinels and the clients lose the primary.
        let others: Vec<&Arc<Host>> = sentinel_hosts.iter().chain(&client_hosts).collect();
        let isolated = now_ns();
        net.cut(&server_hosts[primary], &others);
        timeline.push((isolated, "cut it from everyone".to_owned()));
        windows.push((window, isolated));
        let promoted = servers[replica].address().unwrap().to_string();
        wait_for(&mut clients, "the sentinels to promote the replica", || {
            sentinels
                .iter()
                .filter(|s| named_primary(s).as_deref() == Some(promoted.as_str()))
                .count()
                >= 2
        })
        .await;
        failover.push(ms(now_ns() - isolated));
        timeline.push((now_ns(), "sentinels promoted the replica".to_owned()));
        // Every lease taken on the old primary has run out before it is reachable again.
        clients.run_for(FAILOVER_TTL).await;
        net.heal(&server_hosts[primary]);
        timeline.push((now_ns(), "healed".to_owned()));
        wait_for(
            &mut clients,
            "the old primary to rejoin as a replica",
            || {
                servers[primary]
                    .command(&["INFO", "replication"])
                    .is_ok_and(|info| {
                        info.contains("role:slave") && info.contains("master_link_status:up")
                    })
            },
        )
        .await;
        let again = clients
            .until(PATIENCE, |c| c.history.entry_after(isolated, None, None))
            .await
            .expect("no lock granted after the failover");
        unavailable.push(ms(again - isolated));
        timeline.push((now_ns(), "old primary rejoined".to_owned()));
        primary = replica;
    }
    let history = clients.finish().await;
    let verdict = verdict(&history, &store, 2);
    let unreplicated: Vec<Section> = history
        .sections
        .iter()
        .filter(|s| {
            windows
                .iter()
                .any(|&(from, to)| s.enter > from && s.enter <= to)
        })
        .cloned()
        .collect();
    let granted_twice = unreplicated
        .iter()
        .filter(|first| {
            history.sections.iter().any(|again| {
                again.key == first.key
                    && again.token != first.token
                    && again.enter > first.enter
                    && again.enter < first.lease_end
            })
        })
        .count();
    Failovers {
        history,
        verdict,
        granted_unreplicated: unreplicated.len(),
        granted_twice,
        failover,
        unavailable,
        timeline,
    }
}

#[cfg(feature = "sentinel")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_without_replica_acks_may_grant_twice_while_fencing_keeps_the_store_correct(
) {
    let _one = one_at_a_time().await;
    let run = failovers(false).await;
    run.report("without replica acknowledgement");
    assert!(run.failover.len() >= 2);
}

#[cfg(feature = "sentinel")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_with_replica_acks_grants_every_lock_once() {
    let _one = one_at_a_time().await;
    let run = failovers(true).await;
    run.report("with replica acknowledgement");
    assert!(run.failover.len() >= 2);
    assert_eq!(
        run.granted_unreplicated, 0,
        "a lock was granted that the replica did not acknowledge"
    );
    assert_eq!(run.granted_twice, 0);
    assert!(
        run.verdict.overlaps.is_empty(),
        "a lock acknowledged by the replica was granted twice: {:?}",
        some(&run.verdict.overlaps)
    );
    assert!(
        run.verdict.token_regressions.is_empty(),
        "fencing tokens did not increase: {:?}",
        some(&run.verdict.token_regressions)
    );
}

// ---------------------------------------------------------------------------------------------
// A clock that jumps on the Redis host.

/// Ends every lock's lease at once (PEXPIRE 1 ms), as a step of the Redis host's clock past
/// every lease would; returns how many it ended.
const JUMP: &str = r"
local ended = 0
for _, key in ipairs(redis.call('KEYS', 'lock:*')) do
    if redis.call('TYPE', key).ok == 'string' and redis.call('PTTL', key) > 1 then
        redis.call('PEXPIRE', key, 1)
        ended = ended + 1
    end
end
return ended
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_jump_on_the_redis_host_ends_leases_early_and_fencing_keeps_the_store_correct() {
    let _one = one_at_a_time().await;
    let mut net = Network::new();
    let redis_host = net.host("redis");
    let store_host = net.host("store");
    let client_hosts: Vec<Arc<Host>> = (1..=2).map(|i| net.host(&format!("c{i}"))).collect();
    let server = redis_host.server(ServerOptions::new());
    let store = store_host.server(ServerOptions::new());
    let ttl = Duration::from_millis(3_000);
    let env = Workload {
        deployment: "single",
        urls: vec![server.url()],
        store: &store,
        ttl,
        wait: Duration::from_secs(10),
        holds: "100,600,2500",
        acks: false,
    }
    .env();
    let mut clients = Clients::start(&client_hosts, &env, &[]).await;
    let mut rng = fastrand::Rng::new();
    let seconds = (seconds() / 2).max(8);
    let end = Instant::now() + Duration::from_secs(seconds);
    let (mut jumps, mut ended) = (0, 0);
    while Instant::now() < end {
        clients
            .run_for(Duration::from_millis(rng.u64(500..1_200)))
            .await;
        if clients.holder().is_none() {
            continue;
        }
        let cut: usize = server
            .command(&["EVAL", JUMP, "0"])
            .expect("end the leases")
            .parse()
            .expect("a count");
        jumps += 1;
        ended += cut;
    }
    let history = clients.finish().await;
    let verdict = verdict(&history, &store, 2);
    let lost = history.failures.get("lost").copied().unwrap_or(0);
    eprintln!(
        "clock jumps on the Redis host, 2 client processes x 3 tasks, 2 keys, ttl {ttl:?}, \
         {seconds} s: {jumps} jumps ended {ended} leases early; {} sections {:?}, failures \
         {:?}; holders that overlapped while each counted its lease valid {}, found their lock \
         gone at the next renewal {lost}, writes fenced off by the store {} (the store stayed \
         correct)",
        verdict.sections,
        history.outcomes,
        history.failures,
        verdict.overlaps.len(),
        history.count("fenced"),
    );
    assert!(jumps >= 5, "only {jumps} jumps");
    assert!(ended >= jumps, "a jump found no lease to end");
    // The caveat, shown: leases ended early let a second holder in while the first still
    // counted its own lease, until its next renewal found the lock gone; fencing refused the
    // first holder's late writes.
    assert!(
        !verdict.overlaps.is_empty(),
        "no holder overlapped after {jumps} jumps"
    );
    assert!(lost > 0, "no holder found its lock gone");
    assert!(history.count("fenced") > 0, "the store fenced nothing off");
}
