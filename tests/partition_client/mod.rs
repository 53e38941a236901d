//! The client processes of the partition suite: what they lock and report, and the fenced
//! store their critical sections write to.

#![allow(dead_code)] // the coordinator uses part of it

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redlock::testing::{Proxy, ProxyMode, RedisServer};
use redlock::{LockError, LockGuard, LockManager, LockOptions};

use crate::fault_support::{self, emit, now_ns, setting};

/// How long Redis may stay silent before a client's request gives up.
pub const OPERATION_TIMEOUT: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------------------------
// The store: a counter per key, written under fencing tokens.

/// Reads the counter of a key, first raising the key's fence to the token; -1 if the fence is
/// past it (a higher token, or the same token from another section, came first).
const READ: &str = r"
local token = tonumber(ARGV[1])
local top = tonumber(redis.call('HGET', KEYS[1], 'token') or '0')
if token < top or (token == top and redis.call('HGET', KEYS[1], 'by') ~= ARGV[2]) then
    return -1
end
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'by', ARGV[2])
return tonumber(redis.call('GET', KEYS[2]) or '0')
";

/// Writes the counter of a key under the same fence, and logs the token; 0 if refused.
const WRITE: &str = r"
local token = tonumber(ARGV[1])
local top = tonumber(redis.call('HGET', KEYS[1], 'token') or '0')
if token < top or (token == top and redis.call('HGET', KEYS[1], 'by') ~= ARGV[2]) then
    return 0
end
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'by', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('RPUSH', KEYS[3], ARGV[1])
return 1
";

/// The store's keys for a lock key: its fence, its counter, the log of accepted tokens.
pub fn store_keys(key: &str) -> [String; 3] {
    [
        format!("fence:{key}"),
        format!("value:{key}"),
        format!("log:{key}"),
    ]
}

struct Store {
    conn: MultiplexedConnection,
    read: redis::Script,
    write: redis::Script,
}

impl Store {
    async fn connect(url: &str) -> Store {
        let conn = redis::Client::open(url)
            .expect("store url")
            .get_multiplexed_async_connection()
            .await
            .expect("store connection");
        Store {
            conn,
            read: redis::Script::new(READ),
            write: redis::Script::new(WRITE),
        }
    }

    /// The counter, `Some(-1)` if fenced off, `None` if the store did not answer.
    async fn read(&self, key: &str, token: u64, by: &str) -> Option<i64> {
        let mut conn = self.conn.clone();
        let mut call = self.read.prepare_invoke();
        call.key(&store_keys(key)[..2]).arg(token).arg(by);
        let reply = tokio::time::timeout(Duration::from_secs(5), call.invoke_async(&mut conn));
        reply.await.ok()?.ok()
    }

    /// Whether the write was accepted, `None` if the store did not answer.
    async fn write(&self, key: &str, token: u64, by: &str, value: i64) -> Option<bool> {
        let mut conn = self.conn.clone();
        let mut call = self.write.prepare_invoke();
        call.key(&store_keys(key)).arg(token).arg(by).arg(value);
        let reply = tokio::time::timeout(Duration::from_secs(5), call.invoke_async(&mut conn));
        reply.await.ok()?.ok().map(|accepted: i64| accepted == 1)
    }
}

/// What the store holds for `key`: its counter and the tokens of the writes it accepted.
pub fn stored(store: &RedisServer, key: &str) -> (i64, Vec<u64>) {
    let [_, value, log] = store_keys(key);
    let value = store.command(&["GET", &value]).expect("store GET");
    let value = if value == "(nil)" {
        0
    } else {
        value.parse().expect("a counter")
    };
    let log = store
        .command(&["LRANGE", &log, "0", "-1"])
        .expect("store LRANGE");
    let tokens = log.lines().map(|t| t.parse().expect("a token")).collect();
    (value, tokens)
}

/// What the client processes of a scenario do: 3 tasks each, locking one of 2 keys at a time.
pub struct Workload<'a> {
    /// `redlock`, `sentinel` (the service `main`) or `single`.
    pub deployment: &'a str,
    /// The masters, the sentinels or the server.
    pub urls: Vec<String>,
    pub store: &'a RedisServer,
    pub ttl: Duration,
    pub wait: Duration,
    /// `min,max[,long]` hold in ms, the long one for one section in eight.
    pub holds: &'a str,
    /// Whether acquires and renewals wait for a replica's acknowledgement.
    pub acks: bool,
}

impl Workload<'_> {
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("REDLOCK_DEPLOYMENT", self.deployment.to_owned()),
            ("REDLOCK_URLS", self.urls.join(",")),
            // The service name the sentinels monitor.
            ("REDLOCK_SERVICE", "main".to_owned()),
            ("REDLOCK_STORE", self.store.url()),
            ("REDLOCK_TTL_MS", self.ttl.as_millis().to_string()),
            ("REDLOCK_WAIT_MS", self.wait.as_millis().to_string()),
            ("REDLOCK_HOLD_MS", self.holds.to_owned()),
            ("REDLOCK_TASKS", "3".to_owned()),
            ("REDLOCK_KEYS", "2".to_owned()),
            ("REDLOCK_ACKS", u8::from(self.acks).to_string()),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// The client.

/// A comma-separated list setting (empty: none).
fn list(name: &str) -> Vec<String> {
    setting::<String>(name)
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Routes the links named by `REDLOCK_LOSSY` (indices into the URLs) through proxies on this
/// host whose delay and loss change at random.
fn lossy_links(urls: Vec<String>) -> (Vec<String>, Vec<Proxy>) {
    let lossy: Vec<usize> = list("REDLOCK_LOSSY")
        .iter()
        .map(|i| i.parse().expect("an index"))
        .collect();
    let mut proxies = Vec::new();
    let urls = urls
        .into_iter()
        .enumerate()
        .map(|(i, url)| {
            if !lossy.contains(&i) {
                return url;
            }
            let upstream = url.trim_start_matches("redis://").to_owned();
            let proxy = Proxy::start(upstream.as_str()).expect("proxy");
            let url = proxy.url();
            proxies.push(proxy);
            url
        })
        .collect();
    (urls, proxies)
}

/// Changes the proxies' modes at random, every 0.3 to 1.2 s, for as long as the process runs.
fn jitter(proxies: Vec<Proxy>) {
    std::thread::spawn(move || {
        let mut rng = fastrand::Rng::new();
        loop {
            std::thread::sleep(Duration::from_millis(rng.u64(300..1_200)));
            for proxy in &proxies {
                let mode = match rng.u8(0..3) {
                    0 => ProxyMode::Pass,
                    1 => ProxyMode::Delay(Duration::from_millis(rng.u64(1..30))),
                    _ => ProxyMode::Lossy {
                        delay: Duration::from_millis(rng.u64(0..20)),
                        loss_percent: rng.u8(1..10),
                    },
                };
                let _ = proxy.set_mode(mode);
            }
        }
    });
}

/// An instant on the clock `now_ns` reads (both are `CLOCK_MONOTONIC`).
fn shared_clock(at: Instant) -> u64 {
    let (now, ns) = (Instant::now(), now_ns());
    match at.checked_duration_since(now) {
        Some(ahead) => ns + ahead.as_nanos() as u64,
        None => ns.saturating_sub(now.duration_since(at).as_nanos() as u64),
    }
}

/// Reports `ENTER <key> <token> <ns> <section>` when a section is entered and
/// `EXIT <key> <token> <ns> <lease end ns> <outcome> <section>` when it is left, also when the
/// body is dropped because the lock was found lost (outcome `dropped`). `<section>` names the
/// section: a token alone may repeat, when a failover lost a counter's increment.
struct Inside {
    key: String,
    by: String,
    guard: Arc<LockGuard>,
    outcome: &'static str,
}

impl Inside {
    fn enter(key: &str, guard: Arc<LockGuard>, by: &str) -> Self {
        emit(format!(
            "ENTER {key} {} {} {by}",
            guard.fencing_token(),
            now_ns()
        ));
        Inside {
            key: key.to_owned(),
            by: by.to_owned(),
            guard,
            outcome: "dropped",
        }
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let exit = now_ns();
        let lease_end = shared_clock(self.guard.lease_end());
        emit(format!(
            "EXIT {} {} {exit} {lease_end} {} {}",
            self.key,
            self.guard.fencing_token(),
            self.outcome,
            self.by
        ));
    }
}

/// One critical section: read the key's counter, hold, write it back incremented.
async fn section(guard: Arc<LockGuard>, store: &Store, key: &str, hold: Duration, by: &str) {
    let token = guard.fencing_token();
    let mut inside = Inside::enter(key, guard, by);
    inside.outcome = match store.read(key, token, by).await {
        None => "store-error",
        Some(-1) => "fenced",
        Some(value) => {
            tokio::time::sleep(hold).await;
            match store.write(key, token, by, value + 1).await {
                None => "store-error",
                Some(true) => "done",
                Some(false) => "fenced",
            }
        }
    };
}

/// A failed locked call, by kind.
fn failure(error: &LockError) -> &'static str {
    match error {
        LockError::Lost { .. } => "lost",
        LockError::Timeout { .. } => "timeout",
        LockError::QuorumNotReached { .. } => "no-quorum",
        LockError::NotReplicated { .. } => "not-replicated",
        LockError::Redis { .. } => "redis",
        _ => "other",
    }
}

/// Locks random keys in `REDLOCK_TASKS` tasks until stdin closes, reporting every section,
/// and `FAIL <kind>` for every failed call.
pub async fn client() {
    if std::env::var_os("REDLOCK_CLIENT_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(std::io::stderr)
            .init();
    }
    let (urls, proxies) = lossy_links(list("REDLOCK_URLS"));
    let lossy = proxies.len();
    jitter(proxies);
    let builder = match setting::<String>("REDLOCK_DEPLOYMENT").as_str() {
        "redlock" => LockManager::builder_redlock(urls),
        #[cfg(feature = "sentinel")]
        "sentinel" => LockManager::builder_sentinel(urls, &setting::<String>("REDLOCK_SERVICE")),
        "single" => LockManager::builder(urls[0].clone()),
        other => panic!("unknown deployment {other}"),
    };
    let mut builder = builder.operation_timeout(OPERATION_TIMEOUT);
    if setting::<u32>("REDLOCK_ACKS") > 0 {
        builder = builder.replica_acks(1, Duration::from_millis(200));
    }
    let locks = builder.build().expect("lock manager");
    let store = Arc::new(Store::connect(&setting::<String>("REDLOCK_STORE")).await);
    let options = LockOptions::new(Duration::from_millis(setting("REDLOCK_TTL_MS")))
        .wait(Duration::from_millis(setting("REDLOCK_WAIT_MS")));
    let keys: usize = setting("REDLOCK_KEYS");
    let holds: Vec<u64> = list("REDLOCK_HOLD_MS")
        .iter()
        .map(|ms| ms.parse().expect("milliseconds"))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut commands = fault_support::commands();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            while commands.recv().await.is_some() {}
            stop.store(true, Ordering::SeqCst);
        });
    }
    emit(format!("READY {lossy}"));
    let sections = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for task in 0..setting::<usize>("REDLOCK_TASKS") {
        let (locks, store, stop, sections) =
            (locks.clone(), store.clone(), stop.clone(), sections.clone());
        let (holds, options) = (holds.clone(), options.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::new();
            while !stop.load(Ordering::SeqCst) {
                let key = format!("k{}", rng.usize(..keys));
                // Now and then (one in eight) a long hold, renewed on the way, if one is given.
                let hold = match holds.get(2) {
                    Some(&long) if rng.u8(..8) == 0 => long,
                    _ => rng.u64(holds[0]..=holds[1]),
                };
                let hold = Duration::from_millis(hold);
                let by = format!(
                    "{}-{task}-{}",
                    std::process::id(),
                    sections.fetch_add(1, Ordering::Relaxed)
                );
                let body = |guard| {
                    let (store, key, by) = (&store, &key, &by);
                    async move { section(guard, store, key, hold, by).await }
                };
                if let Err(error) = locks.with_lock(&key, &options, body).await {
                    emit(format!("FAIL {} {error}", failure(&error)));
                    // A call that fails at once (no quorum, no server) is not retried hot.
                    tokio::time::sleep(Duration::from_millis(rng.u64(10..50))).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
    emit("DONE");
}
