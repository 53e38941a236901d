//! Bad input at run time: odd keys, impossible leases, keys of the wrong type, flushed scripts,
//! wrong credentials, unreachable hosts, malformed URLs. Each one either works exactly as a lock
//! should or gives a clear `LockError`, in bounded time, and leaves the rest of Redis untouched.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redlock::testing::{Proxy, ProxyMode, RedisServer, ServerOptions};
use redlock::{distributed_lock, LockError, LockGuard, LockManager, LockOptions, MAX_TTL};

/// Upper bound for any one step; never a performance claim.
const PATIENCE: Duration = Duration::from_secs(20);
const FENCE: &str = "redlock:fence";

/// Every key with its serialized value and whether it has an expiry; the fencing counter is
/// left out (busy attempts advance it by design).
type Snapshot = BTreeMap<Vec<u8>, (Vec<u8>, bool)>;

async fn snapshot(conn: &mut MultiplexedConnection) -> Snapshot {
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query_async(conn).await.unwrap();
    let mut snapshot = Snapshot::new();
    for key in keys {
        if key == FENCE.as_bytes() {
            continue;
        }
        let dump: Option<Vec<u8>> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(conn)
            .await
            .unwrap();
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(conn)
            .await
            .unwrap();
        if let Some(dump) = dump {
            snapshot.insert(key, (dump, pttl >= 0));
        }
    }
    snapshot
}

async fn fence(conn: &mut MultiplexedConnection) -> Option<u64> {
    redis::cmd("GET")
        .arg(FENCE)
        .query_async(conn)
        .await
        .unwrap()
}

/// A server holding a few unrelated keys and one lock taken by someone else.
struct Seeded {
    server: RedisServer,
    conn: MultiplexedConnection,
    _other: LockGuard,
}

async fn seeded() -> Seeded {
    seeded_with(ServerOptions::new()).await
}

async fn seeded_with(server_options: ServerOptions) -> Seeded {
    let server = RedisServer::spawn_with(server_options).expect("start redis-server");
    let mut conn = common::connect(&server.url()).await;
    redis::pipe()
        .cmd("SET")
        .arg("user:1")
        .arg("alice")
        .cmd("RPUSH")
        .arg("jobs")
        .arg("a")
        .arg("b")
        .cmd("HSET")
        .arg("profile:1")
        .arg("name")
        .arg("Alice")
        .cmd("SET")
        .arg("session:1")
        .arg("s")
        .arg("EX")
        .arg(3_600)
        .exec_async(&mut conn)
        .await
        .unwrap();
    let other = LockManager::new(&server.url())
        .unwrap()
        .acquire_with("other", &common::options(600_000, 0))
        .await
        .unwrap();
    Seeded {
        server,
        conn,
        _other: other,
    }
}

impl Seeded {
    fn locks(&self) -> LockManager {
        LockManager::new(&self.server.url()).unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Keys.

/// Locks `key`, checks it is exactly one Redis key `redis_key` and exclusive, releases it, and
/// checks the rest of the dataset never changed.
async fn locks_exactly(seeded: &mut Seeded, locks: &LockManager, key: &str, redis_key: &[u8]) {
    let before = snapshot(&mut seeded.conn).await;
    let guard = locks
        .acquire_with(key, &common::options(30_000, 0))
        .await
        .expect("a valid lock key");
    assert_eq!(guard.key(), key);
    assert!(
        common::exists(&mut seeded.conn, redis_key).await,
        "not at the expected Redis key"
    );
    let mut during = snapshot(&mut seeded.conn).await;
    assert!(during.remove(redis_key).is_some());
    assert_eq!(during, before, "other keys changed");

    let busy = locks.acquire_with(key, &common::options(30_000, 0)).await;
    assert!(matches!(busy, Err(LockError::Timeout { .. })), "{busy:?}");
    guard.release().await.expect("release");
    assert_eq!(snapshot(&mut seeded.conn).await, before);
}

#[tokio::test]
async fn empty_key_is_a_lock_of_its_own() {
    let mut seeded = seeded().await;
    let locks = seeded.locks();
    locks_exactly(&mut seeded, &locks, "", b"lock:").await;
    // Without a prefix the Redis key is the empty string, which Redis accepts too.
    let bare = LockManager::builder(seeded.server.url())
        .prefix("")
        .build()
        .unwrap();
    locks_exactly(&mut seeded, &bare, "", b"").await;
}

#[tokio::test]
async fn key_of_100_kb_locks_waits_and_wakes_like_any_other() {
    let mut seeded = seeded().await;
    let locks = seeded.locks();
    let key = "k".repeat(100 * 1024);
    let redis_key = format!("lock:{key}");
    locks_exactly(&mut seeded, &locks, &key, redis_key.as_bytes()).await;

    // A waiter polling once per 5 s is woken by the release notice on the 100 KB channel.
    let waiter = LockManager::builder(seeded.server.url())
        .backoff(Duration::from_secs(5), Duration::from_secs(5))
        .build()
        .unwrap();
    let held = locks
        .acquire_with(&key, &common::options(30_000, 0))
        .await
        .unwrap();
    let task = {
        let key = key.clone();
        tokio::spawn(async move {
            let guard = waiter
                .acquire_with(&key, &common::options(30_000, 20_000))
                .await;
            (guard, Instant::now())
        })
    };
    let subscribed = Instant::now();
    while !seeded
        .server
        .command(&["PUBSUB", "NUMSUB", &redis_key])
        .unwrap()
        .ends_with('1')
    {
        assert!(
            subscribed.elapsed() < PATIENCE,
            "the waiter never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let released = Instant::now();
    held.release().await.unwrap();
    let (guard, acquired) = task.await.unwrap();
    guard
        .expect("acquired after the release")
        .release()
        .await
        .unwrap();
    let latency = acquired - released;
    assert!(
        latency < Duration::from_secs(1),
        "not woken by the notice: {latency:?}"
    );
}

/// `Display` of a path that is not UTF-8: the bytes become U+FFFD.
struct Lossy<'a>(&'a Path);

impl std::fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.display().fmt(f)
    }
}

#[distributed_lock(key = "item:<name>", ttl = "10s", client = locks, guard = lock)]
async fn locked_item<N: std::fmt::Display>(
    locks: &LockManager,
    name: N,
    probe: &LockManager,
) -> Result<Vec<u8>, LockError> {
    // Busy for everyone else while held.
    let busy = probe
        .acquire_with(lock.key(), &common::options(10_000, 0))
        .await;
    assert!(matches!(busy, Err(LockError::Timeout { .. })), "{busy:?}");
    Ok(lock.redis_key().as_bytes().to_vec())
}

#[tokio::test]
async fn formatted_values_with_control_and_non_ascii_bytes_give_exact_distinct_keys() {
    let mut seeded = seeded().await;
    let locks = seeded.locks();
    let probe = seeded.locks();
    let names = [
        "\r\nSET injected 1\r\n",
        "*3\r\n$3\r\nSET\r\n$8\r\ninjected\r\n$1\r\n1\r\n",
        "\0",
        "\u{1}\u{7f}\u{1b}[31m",
        "ÿþ",
        "\u{FFFD}",
        "🔒",
        "ä",
        "a\u{308}", // the same letter, decomposed: a different key
        "a b",
        "*",
        "?",
        "[ab]",
        "{tag}",
        "%ff\\xff",
        "lock:",
        "",
    ];
    let before = snapshot(&mut seeded.conn).await;
    let fence_before = fence(&mut seeded.conn).await.unwrap_or(0);

    // All held at once: every name is its own lock.
    let mut guards = Vec::new();
    for name in names {
        let guard = locks
            .acquire_with(&format!("item:{name}"), &common::options(30_000, 0))
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        let expected = format!("lock:item:{name}");
        assert!(
            common::exists(&mut seeded.conn, expected.as_bytes()).await,
            "{name:?}"
        );
        guards.push(guard);
    }
    let during = snapshot(&mut seeded.conn).await;
    assert_eq!(during.len(), before.len() + names.len(), "keys collided");
    for guard in guards {
        guard.release().await.unwrap();
    }

    // Through the attribute, one at a time.
    for name in names {
        let redis_key = locked_item(&locks, name, &probe)
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(redis_key, format!("lock:item:{name}").into_bytes());
    }
    let raw = Path::new(OsStr::from_bytes(b"dir/\xff\xfe.txt"));
    let redis_key = locked_item(&locks, Lossy(raw), &probe).await.unwrap();
    assert_eq!(redis_key, "lock:item:dir/\u{FFFD}\u{FFFD}.txt".as_bytes());

    assert!(
        !common::exists(&mut seeded.conn, b"injected").await,
        "a key name was interpreted"
    );
    assert_eq!(snapshot(&mut seeded.conn).await, before);
    assert!(fence(&mut seeded.conn).await.unwrap() > fence_before);
}

// ---------------------------------------------------------------------------------------------
// Leases and waits.

#[tokio::test]
async fn ttl_above_the_redis_limit_is_a_config_error_that_sends_nothing() {
    let mut seeded = seeded().await;
    let locks = seeded.locks();
    let before = snapshot(&mut seeded.conn).await;
    let fence_before = fence(&mut seeded.conn).await;
    let bad_ttls = [
        MAX_TTL + Duration::from_millis(1),
        Duration::MAX,
        Duration::ZERO,
        Duration::from_micros(1_500),
    ];
    for ttl in bad_ttls {
        let opts = LockOptions::new(ttl);
        let config = |result: Result<(), LockError>, what: &str| match result {
            Err(LockError::Config(message)) => assert!(message.contains("ttl"), "{message}"),
            other => panic!("{what} with ttl {ttl:?}: {other:?}"),
        };
        config(
            locks.acquire_with("t", &opts).await.map(drop),
            "acquire_with",
        );
        config(
            locks.acquire_many(&["t", "u"], &opts).await.map(drop),
            "acquire_many",
        );
        config(locks.with_lock("t", &opts, |_| async {}).await, "with_lock");
        config(
            LockManager::builder(seeded.server.url())
                .ttl(ttl)
                .build()
                .map(drop),
            "builder",
        );
    }
    assert_eq!(snapshot(&mut seeded.conn).await, before);
    assert_eq!(
        fence(&mut seeded.conn).await,
        fence_before,
        "a request was sent"
    );

    // The limit itself works.
    let guard = locks
        .acquire_with("year", &LockOptions::new(MAX_TTL))
        .await
        .expect("a lease of MAX_TTL");
    let pttl: u64 = seeded
        .server
        .command(&["PTTL", "lock:year"])
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        pttl > (MAX_TTL - Duration::from_secs(60)).as_millis() as u64,
        "{pttl}"
    );
    guard.release().await.unwrap();
    let ran = locks
        .with_lock("year", &LockOptions::new(MAX_TTL), |guard| async move {
            guard.remaining() > Duration::from_secs(300 * 24 * 3600)
        })
        .await;
    assert!(matches!(ran, Ok(true)), "{ran:?}");
}

#[tokio::test]
async fn endless_wait_is_a_config_error_not_a_panic() {
    let mut seeded = seeded().await;
    let locks = seeded.locks();
    let before = snapshot(&mut seeded.conn).await;
    let opts = LockOptions::new(Duration::from_secs(1)).wait(Duration::MAX);
    for (what, result) in [
        (
            "acquire_with",
            locks.acquire_with("w", &opts).await.map(drop),
        ),
        (
            "acquire_many",
            locks.acquire_many(&["w", "x"], &opts).await.map(drop),
        ),
        ("with_lock", locks.with_lock("w", &opts, |_| async {}).await),
        (
            "builder",
            LockManager::builder(seeded.server.url())
                .wait(Duration::MAX)
                .build()
                .map(drop),
        ),
    ] {
        match result {
            Err(LockError::Config(message)) => assert!(message.contains("wait"), "{message}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    assert_eq!(snapshot(&mut seeded.conn).await, before);
}

// ---------------------------------------------------------------------------------------------
// Keys that are not locks; scripts flushed.

#[tokio::test]
async fn keys_of_another_type_are_wrong_type_errors_and_stay_untouched() {
    let mut seeded = seeded().await;
    let locks = seeded.locks();
    for (command, kind) in [
        (&["RPUSH", "lock:list", "x"][..], "list"),
        (&["HSET", "lock:hash", "f", "v"], "hash"),
        (&["SADD", "lock:set", "m"], "set"),
        (&["ZADD", "lock:zset", "1", "m"], "zset"),
        (&["XADD", "lock:stream", "*", "f", "v"], "stream"),
    ] {
        seeded.server.command(command).unwrap();
        let before = snapshot(&mut seeded.conn).await;
        let key = command[1].trim_start_matches("lock:");
        let start = Instant::now();
        let err = locks
            .acquire_with(key, &common::options(1_000, 2_000))
            .await
            .unwrap_err();
        assert!(
            matches!(err, LockError::WrongType { key: ref k, ref found } if k == key && found == kind),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&format!("holds a {kind}")),
            "{err}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "waited for a key that is no lock"
        );
        let with = locks
            .with_lock(key, &common::options(1_000, 0), |_| async {})
            .await;
        assert!(matches!(with, Err(LockError::WrongType { .. })), "{with:?}");
        assert_eq!(snapshot(&mut seeded.conn).await, before, "{kind} touched");
    }

    // A plain string without expiry at the lock key: busy, never overwritten or given a TTL.
    seeded
        .server
        .command(&["SET", "lock:config", "v1"])
        .unwrap();
    let before = snapshot(&mut seeded.conn).await;
    let err = locks
        .acquire_with("config", &common::options(1_000, 300))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(snapshot(&mut seeded.conn).await, before);
}

#[tokio::test]
async fn lock_replaced_by_another_type_while_held_is_lost_and_left_alone() {
    let mut seeded = seeded().await;
    let locks = seeded.locks();
    let guard = locks
        .acquire_with("swapped", &common::options(30_000, 0))
        .await
        .unwrap();
    seeded.server.command(&["DEL", "lock:swapped"]).unwrap();
    seeded
        .server
        .command(&["RPUSH", "lock:swapped", "x"])
        .unwrap();
    let before = snapshot(&mut seeded.conn).await;
    let extended = guard.extend().await;
    assert!(
        matches!(extended, Err(LockError::Lost { .. })),
        "{extended:?}"
    );
    let released = guard.release().await;
    assert!(
        matches!(released, Err(LockError::Lost { .. })),
        "{released:?}"
    );
    assert_eq!(snapshot(&mut seeded.conn).await, before);
}

#[tokio::test]
async fn scripts_flushed_from_redis_are_loaded_again() {
    let mut seeded = seeded().await;
    let locks = seeded.locks();
    let flush =
        |server: &RedisServer| assert_eq!(server.command(&["SCRIPT", "FLUSH"]).unwrap(), "OK");
    let guard = locks
        .acquire_with("s", &common::options(30_000, 0))
        .await
        .unwrap();
    flush(&seeded.server);
    guard.extend().await.expect("extend after SCRIPT FLUSH");
    flush(&seeded.server);
    guard.release().await.expect("release after SCRIPT FLUSH");
    assert!(!common::exists(&mut seeded.conn, b"lock:s").await);

    // The acquire script (used for keys without expiry) too.
    seeded.server.command(&["SET", "lock:plain", "v"]).unwrap();
    flush(&seeded.server);
    let err = locks
        .acquire_with("plain", &common::options(1_000, 0))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");

    // Renewal keeps going across flushes.
    let ran = locks
        .with_lock("renewed", &common::options(300, 0), |guard| {
            let server = &seeded.server;
            async move {
                for _ in 0..6 {
                    flush(server);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                guard.is_held()
            }
        })
        .await;
    assert!(matches!(ran, Ok(true)), "{ran:?}");
}

// ---------------------------------------------------------------------------------------------
// Connections: credentials, hosts, URLs.

/// Checks that `locks` fails with a Redis error mentioning one of `words`, well before `wait`
/// ends (retrying cannot help), and that nothing in `seeded` changed.
async fn refused_at_once(seeded: &mut Seeded, locks: &LockManager, words: &[&str]) {
    let before = snapshot(&mut seeded.conn).await;
    let fence_before = fence(&mut seeded.conn).await;
    let start = Instant::now();
    let err = locks
        .acquire_with("k", &common::options(1_000, 10_000))
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, LockError::Redis { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        words.iter().any(|w| message.contains(w)),
        "unclear message: {message}"
    );
    assert!(took < Duration::from_secs(3), "retried for {took:?}");
    assert_eq!(snapshot(&mut seeded.conn).await, before);
    assert_eq!(fence(&mut seeded.conn).await, fence_before);
}

#[tokio::test]
async fn wrong_or_missing_password_is_a_redis_error_at_once() {
    let mut seeded = seeded_with(ServerOptions::new().password("right")).await;
    let port = seeded.server.port().unwrap();
    let wrong = LockManager::new(&format!("redis://:wrong@127.0.0.1:{port}")).unwrap();
    refused_at_once(&mut seeded, &wrong, &["WRONGPASS", "authentication failed"]).await;
    assert!(
        !format!("{wrong:?}").contains("wrong"),
        "the password shows in Debug output: {wrong:?}"
    );
    let missing = LockManager::new(&format!("redis://127.0.0.1:{port}")).unwrap();
    refused_at_once(
        &mut seeded,
        &missing,
        &["NOAUTH", "Authentication required"],
    )
    .await;
}

/// `acquire_with` through `locks` fails with a Redis error within the wait plus one operation
/// timeout.
async fn unreachable(locks: &LockManager, wait: Duration, op: Duration) {
    let start = Instant::now();
    let err = tokio::time::timeout(
        PATIENCE,
        locks.acquire_with("k", &LockOptions::new(Duration::from_secs(1)).wait(wait)),
    )
    .await
    .expect("hung")
    .unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(err, LockError::Redis { ref key, .. } if key == "k"),
        "{err:?}"
    );
    let bound = wait + op + Duration::from_millis(300);
    assert!(took <= bound, "gave up after {took:?}, past {bound:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_hosts_give_redis_errors_in_bounded_time() {
    let op = Duration::from_millis(400);
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = RedisServer::spawn().unwrap();
    let silent = Proxy::start(("127.0.0.1", server.port().unwrap())).unwrap();
    silent.set_mode(ProxyMode::Blackhole).unwrap();
    for url in [
        format!("redis://127.0.0.1:{free_port}"),
        "redis://no-such-host.invalid:6379".to_owned(),
        silent.url(),
        "redis+unix:///nonexistent/redis.sock".to_owned(),
    ] {
        let locks = LockManager::builder(&url)
            .operation_timeout(op)
            .build()
            .unwrap();
        for wait in [Duration::ZERO, Duration::from_millis(700)] {
            unreachable(&locks, wait, op).await;
        }
        let err = locks.ping().await.unwrap_err();
        assert!(matches!(err, LockError::Redis { .. }), "{url}: {err:?}");
    }
}

#[test]
fn malformed_urls_are_config_errors_that_hide_passwords() {
    for url in [
        "",
        "not a url",
        "127.0.0.1:6379",
        "http://127.0.0.1:6379",
        "redis://127.0.0.1:notaport",
        "redis://127.0.0.1:99999",
        "redis://127.0.0.1:6379/notadb",
        "redis://:s3cret@127.0.0.1:bad",
        "redis+unix://",
    ] {
        let err = LockManager::new(url).unwrap_err();
        match &err {
            LockError::Config(message) => {
                assert!(message.contains("invalid redis URL"), "{url}: {message}");
                assert!(
                    !message.contains("s3cret"),
                    "{url}: password leaked: {message}"
                );
            }
            other => panic!("{url:?}: {other:?}"),
        }
    }
}

#[test]
fn connection_counts_outside_one_to_sixty_four_are_config_errors() {
    for count in [0, 65] {
        let err = LockManager::builder("redis://127.0.0.1:6379")
            .connections(count)
            .build()
            .unwrap_err();
        match &err {
            LockError::Config(message) => {
                assert!(message.contains("connections"), "{count}: {message}")
            }
            other => panic!("{count}: {other:?}"),
        }
    }
    for count in [1, 64] {
        assert!(LockManager::builder("redis://127.0.0.1:6379")
            .connections(count)
            .build()
            .is_ok());
    }
}
