//! The line of waiters between processes: a release hands the lock to the longest waiter of any
//! process, in order of arrival; waiters killed in line, waiters whose wait ends in line and
//! missed notices cost a bounded delay, never the lock. Real processes (this test binary run
//! again, see `fault_support`) and a real `redis-server`.

mod common;
mod fault_support;

use std::time::{Duration, Instant};

use fault_support::{emit, setting, ChildProcess};
use redis::aio::MultiplexedConnection;
use redis::{PushInfo, Value};
use redlock::testing::RedisServer;
use redlock::{LockError, LockManager};

use common::PATIENCE;

/// The queue of waiters of lock `key` of a manager with default settings.
fn queue_key(key: &str) -> String {
    format!("redlock:fence:queue:lock:{key}")
}

async fn in_line(conn: &mut MultiplexedConnection, key: &str) -> usize {
    redis::cmd("ZCARD")
        .arg(queue_key(key))
        .query_async(conn)
        .await
        .expect("ZCARD")
}

async fn until_in_line(conn: &mut MultiplexedConnection, key: &str, waiters: usize) {
    let started = Instant::now();
    while in_line(conn, key).await < waiters {
        assert!(
            started.elapsed() < PATIENCE,
            "{waiters} waiters never in line"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child_process_entry() {
    let Some(role) = fault_support::role() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("child runtime");
    runtime.block_on(async {
        match role.as_str() {
            "waiter" => waiter().await,
            other => panic!("unknown child role {other:?}"),
        }
    });
}

/// Waits up to `REDLOCK_WAIT_MS` for `REDLOCK_KEY` (lease `REDLOCK_TTL_MS`), reports
/// `ACQUIRED <fencing token>`, holds it `REDLOCK_HOLD_MS` and releases, or reports
/// `FAILED <error>`. `REDLOCK_KIND`, if set, takes the key as `read`, `write` or `permits:<N>`.
async fn waiter() {
    let mut builder = LockManager::builder(setting::<String>("REDLOCK_URL"))
        .notifications(setting("REDLOCK_NOTICES"));
    if let Ok(max) = std::env::var("REDLOCK_BACKOFF_MAX_MS") {
        let max = Duration::from_millis(max.parse().expect("REDLOCK_BACKOFF_MAX_MS"));
        builder = builder.backoff(Duration::from_millis(10), max);
    }
    let locks = builder.build().expect("lock manager");
    let key: String = setting("REDLOCK_KEY");
    let options = common::options(setting("REDLOCK_TTL_MS"), setting("REDLOCK_WAIT_MS"));
    let options = match std::env::var("REDLOCK_KIND").as_deref() {
        Ok("read") => options.read(),
        Ok("write") => options.write(),
        Ok(permits) if permits.starts_with("permits:") => {
            options.permits(permits["permits:".len()..].parse().expect("permits"))
        }
        _ => options,
    };
    match locks.acquire_with(&key, &options).await {
        Ok(guard) => {
            emit(format!("ACQUIRED {}", guard.fencing_token()));
            tokio::time::sleep(Duration::from_millis(setting("REDLOCK_HOLD_MS"))).await;
            guard.release().await.expect("release");
        }
        Err(e) => emit(format!("FAILED {e}")),
    }
}

fn waiter_process(server: &RedisServer, key: &str, wait_ms: u64, notices: bool) -> ChildProcess {
    holding_waiter(server, key, wait_ms, notices, 0)
}

fn holding_waiter(
    server: &RedisServer,
    key: &str,
    wait_ms: u64,
    notices: bool,
    hold_ms: u64,
) -> ChildProcess {
    spawn_waiter(server, key, wait_ms, notices, hold_ms, None)
}

/// A waiter process taking `key` as `kind` (`read`, `write`, `permits:<N>`), holding it
/// `hold_ms`.
fn kind_waiter(server: &RedisServer, key: &str, kind: &str, hold_ms: u64) -> ChildProcess {
    let mut settings = waiter_settings(server, key, 30_000, true, hold_ms);
    settings.push(("REDLOCK_KIND", kind.to_owned()));
    ChildProcess::spawn("waiter", &settings)
}

/// A waiter process; `backoff_max_ms` replaces the default longest pause between attempts.
fn spawn_waiter(
    server: &RedisServer,
    key: &str,
    wait_ms: u64,
    notices: bool,
    hold_ms: u64,
    backoff_max_ms: Option<u64>,
) -> ChildProcess {
    let mut settings = waiter_settings(server, key, wait_ms, notices, hold_ms);
    if let Some(max) = backoff_max_ms {
        settings.push(("REDLOCK_BACKOFF_MAX_MS", max.to_string()));
    }
    ChildProcess::spawn("waiter", &settings)
}

fn waiter_settings(
    server: &RedisServer,
    key: &str,
    wait_ms: u64,
    notices: bool,
    hold_ms: u64,
) -> Vec<(&'static str, String)> {
    vec![
        ("REDLOCK_HOLD_MS", hold_ms.to_string()),
        ("REDLOCK_URL", server.url()),
        ("REDLOCK_KEY", key.to_owned()),
        ("REDLOCK_TTL_MS", "10000".to_owned()),
        ("REDLOCK_WAIT_MS", wait_ms.to_string()),
        ("REDLOCK_NOTICES", notices.to_string()),
    ]
}

fn fence_of(words: &[String]) -> u64 {
    words[0].parse().expect("a fencing token")
}

/// Starts `count` waiter processes one after the other, each once the previous one is in line.
async fn waiters_in_line(
    server: &RedisServer,
    conn: &mut MultiplexedConnection,
    key: &str,
    count: usize,
    notices: bool,
) -> Vec<ChildProcess> {
    let mut waiters = Vec::new();
    for i in 0..count {
        waiters.push(waiter_process(server, key, 30_000, notices));
        until_in_line(conn, key, i + 1).await;
    }
    waiters
}

async fn lock_goes_to_waiting_processes_in_order_of_arrival(notices: bool) {
    let server = common::server();
    let mut conn = common::connect(&server.url()).await;
    let locks = LockManager::new(&server.url()).unwrap();
    let holder = locks
        .acquire_with("account", &common::options(10_000, 0))
        .await
        .unwrap();
    let mut waiters = waiters_in_line(&server, &mut conn, "account", 4, notices).await;
    holder.release().await.unwrap();
    let mut fences = Vec::new();
    for waiter in &mut waiters {
        fences.push(fence_of(&waiter.expect("ACQUIRED", PATIENCE).await));
    }
    let mut sorted = fences.clone();
    sorted.sort_unstable();
    assert_eq!(fences, sorted, "not handed over in order of arrival");
    assert_eq!(in_line(&mut conn, "account").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_goes_to_waiting_processes_in_order_of_arrival_with_notices() {
    lock_goes_to_waiting_processes_in_order_of_arrival(true).await;
}

/// Readers and writers of a read-write lock get it in order of arrival across processes: a
/// writer first, then the two readers behind it together (in the same hand-off), then the
/// writer behind them, whom the readers did not let wait longer than their hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_and_writers_get_the_key_in_order_of_arrival_across_processes() {
    let server = common::server();
    let mut conn = common::connect(&server.url()).await;
    let locks = LockManager::new(&server.url()).unwrap();
    let holder = locks
        .acquire_with("doc", &common::options(10_000, 0).write())
        .await
        .unwrap();
    let mut waiters = Vec::new();
    for (i, kind) in ["write", "read", "read", "write"].into_iter().enumerate() {
        waiters.push(kind_waiter(&server, "doc", kind, 300));
        until_in_line(&mut conn, "doc", i + 1).await;
    }
    holder.release().await.unwrap();
    let mut fences = Vec::new();
    for waiter in &mut waiters {
        fences.push(fence_of(&waiter.expect("ACQUIRED", PATIENCE).await));
    }
    assert!(fences[0] < fences[1], "{fences:?}");
    assert_eq!(
        fences[2],
        fences[1] + 1,
        "the readers got in together: {fences:?}"
    );
    assert!(fences[3] > fences[2], "{fences:?}");
    assert_eq!(in_line(&mut conn, "doc").await, 0);
}

/// A semaphore's permits go to waiting processes in order of arrival, one per permit freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permits_go_to_waiting_processes_in_order_of_arrival() {
    let server = common::server();
    let mut conn = common::connect(&server.url()).await;
    let locks = LockManager::new(&server.url()).unwrap();
    let options = common::options(10_000, 0).permits(2);
    let first = locks.acquire_with("pool", &options).await.unwrap();
    let second = locks.acquire_with("pool", &options).await.unwrap();
    let mut waiters = Vec::new();
    for i in 0..3 {
        // The first holds long enough for the line to be looked at while it holds.
        let hold = if i == 0 { 3_000 } else { 200 };
        waiters.push(kind_waiter(&server, "pool", "permits:2", hold));
        until_in_line(&mut conn, "pool", i + 1).await;
    }
    first.release().await.unwrap();
    let head = fence_of(&waiters[0].expect("ACQUIRED", PATIENCE).await);
    assert_eq!(
        in_line(&mut conn, "pool").await,
        2,
        "one permit, one waiter"
    );
    second.release().await.unwrap();
    let mut fences = vec![head];
    for waiter in &mut waiters[1..] {
        fences.push(fence_of(&waiter.expect("ACQUIRED", PATIENCE).await));
    }
    let mut sorted = fences.clone();
    sorted.sort_unstable();
    assert_eq!(fences, sorted, "not handed over in order of arrival");
}

/// Missed notices (here: none at all) cost latency only: a waiter finds the lock handed to it at
/// its next attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_goes_to_waiting_processes_in_order_of_arrival_without_notices() {
    lock_goes_to_waiting_processes_in_order_of_arrival(false).await;
}

/// A waiter killed with `SIGKILL` at the head of the line is skipped once its place expired:
/// the release hands the lock to the next waiter at once, not after the dead one's lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_killed_in_line_is_skipped_once_its_place_expired() {
    let server = common::server();
    let mut conn = common::connect(&server.url()).await;
    let locks = LockManager::new(&server.url()).unwrap();
    let holder = locks
        .acquire_with("job", &common::options(10_000, 0))
        .await
        .unwrap();
    let mut waiters = waiters_in_line(&server, &mut conn, "job", 2, true).await;
    let first: Vec<String> = redis::cmd("ZRANGE")
        .arg(queue_key("job"))
        .arg(0)
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    waiters[0].kill();
    // The dead waiter's place expires at the time its entry names (server clock, ms).
    let entry: String = redis::cmd("HGET")
        .arg("redlock:fence:waiters:lock:job")
        .arg(&first[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    let expiry: u64 = entry.split(' ').next().unwrap().parse().unwrap();
    let started = Instant::now();
    loop {
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
        if secs * 1000 + micros / 1000 > expiry {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the dead waiter's place never expired"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let released = Instant::now();
    holder.release().await.unwrap();
    let fence = fence_of(&waiters[1].expect("ACQUIRED", PATIENCE).await);
    let took = released.elapsed();
    eprintln!("the next waiter got the lock {took:?} after the release");
    // Well under the dead waiter's lease (10 s): handed over at the release.
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(fence > 0);
}

/// A waiter whose wait ends while in line leaves it: the lock goes to the next one at the
/// release, and the one that gave up reports a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_whose_wait_ends_in_line_leaves_it() {
    let server = common::server();
    let mut conn = common::connect(&server.url()).await;
    let locks = LockManager::new(&server.url()).unwrap();
    let holder = locks
        .acquire_with("report", &common::options(10_000, 0))
        .await
        .unwrap();
    let mut impatient = waiter_process(&server, "report", 300, true);
    until_in_line(&mut conn, "report", 1).await;
    let mut patient = waiter_process(&server, "report", 30_000, true);
    until_in_line(&mut conn, "report", 2).await;
    let words = impatient.expect("FAILED", PATIENCE).await;
    assert!(words.join(" ").contains("busy"), "{words:?}");
    let started = Instant::now();
    while in_line(&mut conn, "report").await > 1 {
        assert!(
            started.elapsed() < PATIENCE,
            "the impatient waiter stayed in line"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let released = Instant::now();
    holder.release().await.unwrap();
    patient.expect("ACQUIRED", PATIENCE).await;
    let took = released.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

/// A waiter of this process in line behind waiters of other processes waits its turn, and a
/// newcomer does not overtake the line when the holder releases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_does_not_overtake_the_line() {
    let server = common::server();
    let mut conn = common::connect(&server.url()).await;
    let locks = LockManager::new(&server.url()).unwrap();
    let holder = locks
        .acquire_with("stock", &common::options(10_000, 0))
        .await
        .unwrap();
    let mut waiters = Vec::new();
    for i in 0..2 {
        waiters.push(holding_waiter(&server, "stock", 30_000, true, 500));
        until_in_line(&mut conn, "stock", i + 1).await;
    }
    holder.release().await.unwrap();
    // Right after the release the lock is already the first waiter's.
    let err = locks
        .acquire_with("stock", &common::options(10_000, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Timeout { .. }), "{err:?}");
    for waiter in &mut waiters {
        waiter.expect("ACQUIRED", PATIENCE).await;
    }
}

/// While others wait in line the lock's value is marked (see `scripts/queue.lua`); the holder's
/// renewals and release still recognise it, and the next waiter gets the lock at the release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_renews_and_releases_while_others_wait_in_line() {
    let server = common::server();
    let mut conn = common::connect(&server.url()).await;
    let locks = LockManager::new(&server.url()).unwrap();
    let guard = locks
        .acquire_with("ledger", &common::options(300, 0))
        .await
        .unwrap();
    let mut waiter = waiter_process(&server, "ledger", 30_000, true);
    until_in_line(&mut conn, "ledger", 1).await;
    // Renewed across several leases while the waiter stays in line.
    for _ in 0..4 {
        guard.extend().await.expect("renewal with a waiter in line");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(guard.is_held());
    assert_eq!(
        in_line(&mut conn, "ledger").await,
        1,
        "the waiter left the line"
    );
    guard
        .release()
        .await
        .expect("release with a waiter in line");
    waiter.expect("ACQUIRED", PATIENCE).await;
}

/// A waiter that only ever hears of its turn from the release's notice: its own attempts come
/// every 20 s (its backoff's longest pause is 20 s), far later than the hand-offs below.
fn deaf_waiter(server: &RedisServer, key: &str) -> ChildProcess {
    spawn_waiter(server, key, 60_000, true, 0, Some(20_000))
}

/// Every message published on a channel matching `pattern`, as (channel, message).
async fn listen(url: &str, pattern: &str) -> (MultiplexedConnection, Listened) {
    let info = redis::Client::open(url)
        .unwrap()
        .get_connection_info()
        .clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(settings)).unwrap();
    let (sender, messages) = tokio::sync::mpsc::unbounded_channel::<PushInfo>();
    let config = redis::AsyncConnectionConfig::new().set_push_sender(sender);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("a RESP3 connection");
    conn.psubscribe(pattern).await.expect("PSUBSCRIBE");
    (conn, Listened(messages))
}

struct Listened(tokio::sync::mpsc::UnboundedReceiver<PushInfo>);

impl Listened {
    /// The next message, within `limit`.
    async fn next(&mut self, limit: Duration) -> Option<(String, String)> {
        let text = |value: &Value| match value {
            Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Value::SimpleString(s) => s.clone(),
            other => format!("{other:?}"),
        };
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let info = tokio::time::timeout(left, self.0.recv()).await.ok()??;
            // A pattern message: [pattern, channel, message].
            if info.kind == redis::PushKind::PMessage && info.data.len() == 3 {
                return Some((text(&info.data[1]), text(&info.data[2])));
            }
        }
    }
}

/// A release that hands the lock over tells the new holder's process alone, on that process's
/// own channel of the key's hand-offs, which wakes the waiter at once; nobody else hears of it,
/// on the key's channel or another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_off_is_told_to_the_new_holders_process_alone() {
    let server = common::server();
    let mut conn = common::connect(&server.url()).await;
    let locks = LockManager::new(&server.url()).unwrap();
    let holder = locks
        .acquire_with("vault", &common::options(60_000, 0))
        .await
        .unwrap();
    let mut waiters = Vec::new();
    for i in 0..3 {
        waiters.push(deaf_waiter(&server, "vault"));
        until_in_line(&mut conn, "vault", i + 1).await;
    }
    // Each place names its process's channel once that process subscribed
    // ("<expiry> <lease> <holder> <channel>").
    let started = Instant::now();
    loop {
        let places: Vec<String> = redis::cmd("HVALS")
            .arg("redlock:fence:waiters:lock:vault")
            .query_async(&mut conn)
            .await
            .unwrap();
        if places.len() == 3
            && places
                .iter()
                .all(|p| p.split(' ').nth(3).is_some_and(|c| !c.is_empty()))
        {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "places without a channel: {places:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Each waiting process listens on a channel of its own for the key's hand-offs.
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg("lock:vault:granted:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(channels.len(), 3, "{channels:?}");
    let (_listener, mut grants) = listen(&server.url(), "lock:vault:granted:*").await;
    let (_listener, mut on_key) = listen(&server.url(), "lock:vault").await;

    holder.release().await.unwrap();
    let mut told = Vec::new();
    for waiter in &mut waiters {
        // Well before any waiter's own next attempt (20 s): the notice woke it.
        let fence = fence_of(&waiter.expect("ACQUIRED", Duration::from_secs(10)).await);
        let (channel, message) = grants
            .next(Duration::from_secs(10))
            .await
            .expect("a hand-off notice");
        assert!(
            message.starts_with("granted ") && message.ends_with(&format!(" {fence}")),
            "{message:?}"
        );
        told.push(channel);
    }
    let mut distinct = told.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "one channel per process: {told:?}");
    // The key's channel carried the last waiter's plain release only.
    let (_, message) = on_key
        .next(Duration::from_secs(10))
        .await
        .expect("the last release's notice");
    assert_eq!(message, "released");
    assert!(on_key.next(Duration::from_millis(200)).await.is_none());
}
