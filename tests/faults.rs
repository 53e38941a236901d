//! Faults: holder processes killed and frozen, Redis frozen and restarted, connections cut,
//! swallowed and delayed. Real processes, real `redis-server`s, a loopback proxy.
//!
//! Holder processes are this test binary run again as a child (see `fault_support`): the
//! `child_process_entry` test plays the role named by `REDLOCK_FAULT_CHILD`.

mod common;
mod fault_support;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fault_support::{emit, now_ns, setting, ChildProcess};
use redis::aio::MultiplexedConnection;
use redlock::testing::{Proxy, ProxyMode, RedisServer};
use redlock::{LockError, LockGuard, LockManager, LockOptions};

/// Upper bound for a step that should take well under a second; never a performance claim.
const PATIENCE: Duration = Duration::from_secs(20);

async fn pttl(conn: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(conn)
        .await
        .expect("PTTL")
}

/// Runs blocking testing-support calls (restart, pause) without stalling the runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

// ---------------------------------------------------------------------------------------------
// A store that checks fencing tokens, kept in Redis.

/// Writes `value` with `token` unless a higher token has written before; 1 when accepted.
const FENCED_WRITE: &str = r"
local highest = tonumber(redis.call('HGET', KEYS[1], 'token') or '0')
if tonumber(ARGV[1]) < highest then
    return 0
end
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'value', ARGV[2])
return 1
";

const STORE: &str = "fenced-store";

async fn fenced_write(conn: &mut MultiplexedConnection, token: u64, value: &str) -> bool {
    let accepted: i64 = redis::Script::new(FENCED_WRITE)
        .key(STORE)
        .arg(token)
        .arg(value)
        .invoke_async(conn)
        .await
        .expect("fenced write");
    accepted == 1
}

async fn store(conn: &mut MultiplexedConnection) -> (u64, String) {
    let (token, value): (Option<u64>, Option<String>) = redis::cmd("HMGET")
        .arg(STORE)
        .arg("token")
        .arg("value")
        .query_async(conn)
        .await
        .expect("HMGET");
    (token.unwrap_or(0), value.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Child processes.

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child_process_entry() {
    fault_support::run_child(|role| async move {
        match role.as_str() {
            "renewing-holder" => renewing_holder().await,
            "fenced-holder" => fenced_holder().await,
            "renewing-writer" => renewing_writer().await,
            other => panic!("unknown child role {other:?}"),
        }
    });
}

fn child_manager() -> LockManager {
    LockManager::new(&setting::<String>("REDLOCK_URL")).expect("lock manager")
}

fn child_options() -> LockOptions {
    common::options(setting("REDLOCK_TTL_MS"), 0)
}

/// Holds `REDLOCK_KEY` with renewal until killed; reports `ACQUIRED <token>`.
async fn renewing_holder() {
    let locks = child_manager();
    let key: String = setting("REDLOCK_KEY");
    let outcome = locks
        .with_lock(&key, &child_options(), |guard| async move {
            emit(format!("ACQUIRED {}", guard.fencing_token()));
            std::future::pending::<()>().await;
        })
        .await;
    emit(format!("OUTCOME {outcome:?}"));
}

/// Takes `REDLOCK_KEY` by hand (no renewal loop) and obeys stdin: `WRITE <value>` (a fenced
/// write with its token), `EXTEND`, `RELEASE`.
async fn fenced_holder() {
    let locks = child_manager();
    let key: String = setting("REDLOCK_KEY");
    let mut conn = common::connect(&setting::<String>("REDLOCK_URL")).await;
    let guard = locks
        .acquire_with(&key, &child_options())
        .await
        .expect("child acquires");
    emit(format!("ACQUIRED {}", guard.fencing_token()));
    let mut guard = Some(guard);
    let mut commands = fault_support::commands();
    while let Some(command) = commands.recv().await {
        let mut words = command.split_whitespace();
        match (words.next(), guard.as_ref()) {
            (Some("WRITE"), Some(held)) => {
                let value = words.next().unwrap_or_default();
                let accepted = fenced_write(&mut conn, held.fencing_token(), value).await;
                emit(if accepted {
                    "WRITE accepted"
                } else {
                    "WRITE refused"
                });
            }
            (Some("EXTEND"), Some(held)) => {
                emit(format!("EXTEND {}", verdict(held.extend().await)))
            }
            (Some("RELEASE"), Some(_)) => {
                let released = guard.take().expect("held").release().await;
                emit(format!("RELEASE {}", verdict(released)));
            }
            _ => panic!("unexpected command {command:?}"),
        }
    }
}

fn verdict(result: Result<(), LockError>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(LockError::Lost { .. }) => "lost".into(),
        Err(other) => format!("error {other:?}"),
    }
}

/// Under `with_lock` (renewing), writes `<n>` to the fenced store every 300 ms, reporting
/// `ATTEMPT <n> <clock ns>` before each write and `DONE <n> <clock ns> <accepted|refused>` after
/// it; finally reports `OUTCOME <lost|ok|...>`.
async fn renewing_writer() {
    let locks = child_manager();
    let key: String = setting("REDLOCK_KEY");
    let mut conn = common::connect(&setting::<String>("REDLOCK_URL")).await;
    let outcome = locks
        .with_lock(&key, &child_options(), |guard| async move {
            emit(format!("ACQUIRED {}", guard.fencing_token()));
            for n in 0u64.. {
                emit(format!("ATTEMPT {n} {}", now_ns()));
                let accepted = fenced_write(&mut conn, guard.fencing_token(), &n.to_string()).await;
                let verdict = if accepted { "accepted" } else { "refused" };
                emit(format!("DONE {n} {} {verdict}", now_ns()));
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
        .await;
    emit(format!("OUTCOME {}", verdict(outcome)));
}

fn child_env(server: &RedisServer, key: &str, ttl_ms: u64) -> Vec<(&'static str, String)> {
    vec![
        ("REDLOCK_URL", server.url()),
        ("REDLOCK_KEY", key.to_owned()),
        ("REDLOCK_TTL_MS", ttl_ms.to_string()),
    ]
}

fn token_of(words: &[String]) -> u64 {
    words[0].parse().expect("a fencing token")
}

// ---------------------------------------------------------------------------------------------
// Holder processes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_of_a_killed_holder_process_is_free_after_its_ttl_and_not_before() {
    const TTL: u64 = 1_000;
    let server = common::server();
    let mut conn = common::connect(&server.url()).await;
    let locks = LockManager::new(&server.url()).unwrap();
    let mut holder = ChildProcess::spawn("renewing-holder", &child_env(&server, "job", TTL));
    let child_token = token_of(&holder.expect("ACQUIRED", PATIENCE).await);

    // Kill it right after a renewal was seen landing, so the lease left is known.
    let mut last = pttl(&mut conn, "lock:job").await;
    let (sent, left) = loop {
        let sent = Instant::now();
        let now = pttl(&mut conn, "lock:job").await;
        if now > last {
            break (sent, now);
        }
        last = now;
        assert!(sent.elapsed() < PATIENCE, "no renewal seen");
    };
    holder.kill();
    let killed = Instant::now();
    // The lease ends on the server no earlier than this.
    let expiry = sent + Duration::from_millis(left as u64);

    let busy = locks
        .acquire_with("job", &common::options(TTL, 0))
        .await
        .unwrap_err();
    assert!(busy.is_timeout(), "acquired right after the kill: {busy:?}");
    let guard = locks
        .acquire_with("job", &common::options(TTL, 10_000))
        .await
        .expect("free once the dead holder's lease ran out");
    let acquired = Instant::now();
    eprintln!(
        "lease left at the kill {left} ms; acquired {:?} after the kill",
        acquired - killed
    );
    assert!(
        acquired + Duration::from_millis(2) >= expiry,
        "acquired {:?} before the dead holder's lease ended",
        expiry - acquired
    );
    assert!(
        acquired - killed < Duration::from_millis(TTL) + Duration::from_secs(2),
        "took {:?} to take over",
        acquired - killed
    );
    assert!(guard.fencing_token() > child_token);
    guard.release().await.unwrap();
}

/// Freezes `holder` until the lock key has expired, then takes the lock in this process and
/// writes to the fenced store; returns the guard and its token.
async fn take_over_from_frozen(
    holder: &ChildProcess,
    conn: &mut MultiplexedConnection,
    locks: &LockManager,
    key: &str,
) -> LockGuard {
    holder.pause();
    let started = Instant::now();
    while common::exists(conn, &format!("lock:{key}")).await {
        assert!(
            started.elapsed() < PATIENCE,
            "the frozen holder's lease never ran out"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let guard = locks
        .acquire_with(key, &common::options(30_000, 0))
        .await
        .expect("free once the frozen holder's lease ran out");
    assert!(fenced_write(conn, guard.fencing_token(), "new-holder").await);
    guard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_process_frozen_past_its_lease_is_fenced_off_when_it_resumes() {
    let server = common::server();
    let mut conn = common::connect(&server.url()).await;
    let locks = LockManager::new(&server.url()).unwrap();
    let mut holder = ChildProcess::spawn("fenced-holder", &child_env(&server, "account", 500));
    let old_token = token_of(&holder.expect("ACQUIRED", PATIENCE).await);
    holder.send("WRITE old-holder");
    assert_eq!(holder.expect("WRITE", PATIENCE).await, ["accepted"]);

    let current = take_over_from_frozen(&holder, &mut conn, &locks, "account").await;
    assert!(current.fencing_token() > old_token);
    holder.resume();

    holder.send("WRITE stale");
    assert_eq!(
        holder.expect("WRITE", PATIENCE).await,
        ["refused"],
        "the store accepted a write from the holder that lost its lock"
    );
    holder.send("EXTEND");
    assert_eq!(holder.expect("EXTEND", PATIENCE).await, ["lost"]);
    holder.send("RELEASE");
    assert_eq!(holder.expect("RELEASE", PATIENCE).await, ["lost"]);

    assert_eq!(
        store(&mut conn).await,
        (current.fencing_token(), "new-holder".to_owned())
    );
    assert!(
        pttl(&mut conn, "lock:account").await > 20_000,
        "the stale holder touched the current lock"
    );
    current.extend().await.expect("still the owner");
    current.release().await.expect("still the owner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewing_holder_frozen_past_its_lease_reports_lost_without_running_its_body_again() {
    let server = common::server();
    let mut conn = common::connect(&server.url()).await;
    let locks = LockManager::new(&server.url()).unwrap();
    let mut holder = ChildProcess::spawn("renewing-writer", &child_env(&server, "ledger", 600));
    let mut reports = Vec::new();
    // Freeze it right after a write: between two steps of the body, while it sleeps.
    let mut done = 0;
    while done < 2 {
        let line = holder.next(PATIENCE).await.expect("the writer reports");
        done += usize::from(line.starts_with("DONE "));
        reports.push(line);
    }
    assert!(reports[0].starts_with("ACQUIRED "), "{reports:?}");
    let old_token: u64 = words(&reports[0])[1].parse().unwrap();
    let paused = now_ns();
    let current = take_over_from_frozen(&holder, &mut conn, &locks, "ledger").await;
    assert!(current.fencing_token() > old_token);
    let resumed = now_ns();
    holder.resume();
    reports.extend(holder.rest(PATIENCE).await);

    // (n, clock) of every attempt and every finished write.
    let events = |kind: &str| -> Vec<(u64, u64)> {
        reports
            .iter()
            .map(|line| words(line))
            .filter(|w| w[0] == kind)
            .map(|w| (w[1].parse().unwrap(), w[2].parse().unwrap()))
            .collect()
    };
    let (attempts, writes) = (events("ATTEMPT"), events("DONE"));
    let last_before = attempts
        .iter()
        .filter(|(_, at)| *at < paused)
        .max()
        .unwrap();
    assert!(
        writes
            .iter()
            .any(|&(n, at)| n == last_before.0 && at < paused),
        "precondition: the freeze was meant to land between two steps: {reports:?}"
    );
    assert!(
        reports.iter().any(|line| line == "OUTCOME lost"),
        "the resumed holder did not report the lost lock: {reports:?}"
    );
    let late: Vec<&(u64, u64)> = attempts.iter().filter(|(_, at)| *at >= resumed).collect();
    assert!(
        late.is_empty(),
        "the body took another step after its lease had run out: {late:?} in {reports:?}"
    );
    assert_eq!(
        store(&mut conn).await,
        (current.fencing_token(), "new-holder".to_owned()),
        "a stale write got through"
    );
    current
        .release()
        .await
        .expect("the lost holder left the new lock alone");
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

// ---------------------------------------------------------------------------------------------
// Losing Redis while holding: frozen server, swallowed and cut connections.

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Holds `key` through `locks` with renewal, injects `fault` right after a renewal is seen
/// landing on `server`, and checks that the holder reports `Lost` (dropping its body) before
/// the lease can have run out on the server. Returns how long after the fault the loss came.
async fn lost_before_the_server_expiry(
    server: &RedisServer,
    locks: LockManager,
    ttl_ms: u64,
    fault: impl FnOnce(),
) -> Duration {
    let mut conn = common::connect(&server.url()).await;
    let started = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let call = {
        let (started, dropped) = (started.clone(), dropped.clone());
        tokio::spawn(async move {
            let outcome = locks
                .with_lock("held", &common::options(ttl_ms, 0), |_guard| async move {
                    let _flag = DropFlag(dropped);
                    started.store(true, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                })
                .await;
            (outcome, Instant::now())
        })
    };
    common::until(PATIENCE, "the body to start", || {
        started.load(Ordering::SeqCst)
    })
    .await;
    let mut last = pttl(&mut conn, "lock:held").await;
    let (sent, left) = loop {
        let sent = Instant::now();
        let now = pttl(&mut conn, "lock:held").await;
        if now > last {
            break (sent, now);
        }
        last = now;
        assert!(sent.elapsed() < PATIENCE, "no renewal seen");
    };
    blocking(fault);
    let faulted = Instant::now();
    let server_expiry = sent + Duration::from_millis(left as u64);

    let (outcome, lost_at) = tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the holder reports within its lease")
        .unwrap();
    assert!(
        matches!(outcome, Err(LockError::Lost { ref key }) if key == "held"),
        "{outcome:?}"
    );
    assert!(dropped.load(Ordering::SeqCst), "the body was not dropped");
    assert!(
        lost_at < server_expiry,
        "reported lost {:?} after the lease ended on the server",
        lost_at - server_expiry
    );
    let margin = server_expiry - lost_at;
    let after = lost_at - faulted;
    eprintln!("lost {after:?} after the fault, {margin:?} before the server-side expiry");
    assert!(
        after > Duration::from_millis(ttl_ms / 2),
        "gave up after {after:?}, long before the lease ran out"
    );
    after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_past_the_lease_makes_the_holder_report_lost_before_the_server_expiry() {
    let server = common::server();
    let locks = LockManager::new(&server.url()).unwrap();
    lost_before_the_server_expiry(&server, locks, 3_000, || server.pause().unwrap()).await;
    server.resume().unwrap();
    // Redis wakes up with the lease over: the lock is free for the next holder.
    let other = LockManager::new(&server.url()).unwrap();
    let guard = other
        .acquire_with("held", &common::options(1_000, 5_000))
        .await
        .expect("free after the frozen lease");
    guard.release().await.unwrap();
}

fn proxied(server: &RedisServer) -> (Proxy, LockManager) {
    let proxy = Proxy::start(("127.0.0.1", server.port().expect("tcp server"))).expect("proxy");
    let locks = LockManager::builder(proxy.url())
        .operation_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    (proxy, locks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_connection_mid_hold_reports_lost_before_the_server_expiry_and_recovers() {
    let server = common::server();
    let (proxy, locks) = proxied(&server);
    lost_before_the_server_expiry(&server, locks.clone(), 3_000, || {
        proxy.set_mode(ProxyMode::Blackhole).unwrap()
    })
    .await;
    proxy.set_mode(ProxyMode::Pass).unwrap();
    let guard = locks
        .acquire_with("held", &common::options(1_000, 5_000))
        .await
        .expect("the same manager works again once traffic flows");
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_mid_hold_report_lost_before_the_server_expiry_and_recover() {
    let server = common::server();
    let (proxy, locks) = proxied(&server);
    lost_before_the_server_expiry(&server, locks.clone(), 3_000, || {
        proxy.set_mode(ProxyMode::Drop).unwrap()
    })
    .await;
    proxy.set_mode(ProxyMode::Pass).unwrap();
    let guard = locks
        .acquire_with("held", &common::options(1_000, 5_000))
        .await
        .expect("the same manager reconnects");
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_under_50ms_added_latency_keeps_the_lock() {
    const TTL: u64 = 600;
    let server = common::server();
    let (proxy, locks) = proxied(&server);
    proxy
        .set_mode(ProxyMode::Delay(Duration::from_millis(50)))
        .unwrap();
    let direct = LockManager::new(&server.url()).unwrap();
    let outcome = locks
        .with_lock("slow", &common::options(TTL, 0), |guard| async move {
            let until = Instant::now() + Duration::from_millis(5 * TTL);
            while Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(TTL / 4)).await;
                let busy = direct.acquire_with("slow", &common::options(TTL, 0)).await;
                assert!(
                    matches!(busy, Err(LockError::Timeout { .. })),
                    "the lock was free while held: {busy:?}"
                );
                assert!(guard.is_held());
            }
            guard.fencing_token()
        })
        .await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(
        server.command(&["EXISTS", "lock:slow"]).unwrap(),
        "0",
        "released after the body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_whose_answer_comes_after_its_lease_is_not_handed_out() {
    let server = common::server();
    let (proxy, locks) = proxied(&server);
    // The key's connection set up and its release script loaded first: the delay then falls on
    // the attempt and its give-back alone, not on the connection's own handshake.
    let warm = locks
        .acquire_with("late", &common::options(2_000, 0))
        .await
        .unwrap();
    warm.release().await.unwrap();
    // Each round trip now takes over 120 ms: longer than a 100 ms lease, shorter than 2 s.
    proxy
        .set_mode(ProxyMode::Delay(Duration::from_millis(60)))
        .unwrap();
    let late = locks.acquire_with("late", &common::options(100, 0)).await;
    assert!(
        matches!(late, Err(LockError::Timeout { .. })),
        "a lock granted after its lease could have run out was handed out: {late:?}"
    );
    let guard = locks
        .acquire_with("late", &common::options(2_000, 0))
        .await
        .expect("the same delay within a longer lease is fine");
    assert!(guard.is_held());
    guard.release().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Deadlines: acquisition ends in bounded time whatever the network does.

/// Runs `acquire` and checks it fails with a Redis error (not `Timeout`: the lock was never
/// busy) no later than the wait plus one operation timeout.
async fn fails_within<F: Future<Output = Result<LockGuard, LockError>>>(
    wait: Duration,
    op_timeout: Duration,
    acquire: F,
) -> Duration {
    let start = Instant::now();
    let outcome = tokio::time::timeout(PATIENCE, acquire)
        .await
        .expect("acquire hung");
    let took = start.elapsed();
    let err = outcome.expect_err("acquired without a server");
    assert!(matches!(err, LockError::Redis { .. }), "{err:?}");
    let bound = wait + op_timeout + Duration::from_millis(300);
    assert!(took <= bound, "gave up after {took:?}, past {bound:?}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_through_cut_connections_respects_its_deadline() {
    let server = common::server();
    let (proxy, locks) = proxied(&server);
    locks.ping().await.unwrap();
    proxy.set_mode(ProxyMode::Drop).unwrap();
    let op = Duration::from_millis(500);
    for wait in [0, 1_000] {
        let wait = Duration::from_millis(wait);
        let opts = LockOptions::new(Duration::from_secs(5)).wait(wait);
        let took = fails_within(wait, op, locks.acquire_with("cut", &opts)).await;
        eprintln!("wait {wait:?}: gave up after {took:?}");
    }
    proxy.set_mode(ProxyMode::Pass).unwrap();
    locks
        .acquire_with("cut", &common::options(1_000, 5_000))
        .await
        .expect("reconnects")
        .release()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_into_a_blackhole_respects_its_deadline() {
    let server = common::server();
    let (proxy, locks) = proxied(&server);
    locks.ping().await.unwrap();
    proxy.set_mode(ProxyMode::Blackhole).unwrap();
    let op = Duration::from_millis(500);
    // 600 ms: the first attempt times out with wait left, and what follows (subscribing to
    // release notices, one more attempt) must still end within one operation timeout of it.
    for wait in [0, 600, 1_200] {
        let wait = Duration::from_millis(wait);
        let opts = LockOptions::new(Duration::from_secs(5)).wait(wait);
        let took = fails_within(wait, op, locks.acquire_with("void", &opts)).await;
        eprintln!("wait {wait:?}: gave up after {took:?}");
    }
    proxy.set_mode(ProxyMode::Pass).unwrap();
    locks
        .acquire_with("void", &common::options(1_000, 5_000))
        .await
        .expect("works again once traffic flows")
        .release()
        .await
        .unwrap();
    assert_eq!(
        server.command(&["EXISTS", "lock:void"]).unwrap(),
        "0",
        "nothing left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_for_longer_than_the_wait_gives_a_redis_error_in_bounded_time() {
    let mut server = common::server();
    let op = Duration::from_millis(500);
    let locks = LockManager::builder(server.url())
        .operation_timeout(op)
        .build()
        .unwrap();
    locks.ping().await.unwrap();
    blocking(|| server.stop().unwrap());
    let wait = Duration::from_millis(1_000);
    let opts = LockOptions::new(Duration::from_secs(5)).wait(wait);
    fails_within(wait, op, locks.acquire_with("down", &opts)).await;
    blocking(|| server.restart().unwrap());
    locks
        .acquire_with("down", &common::options(1_000, 5_000))
        .await
        .expect("works again after the restart")
        .release()
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Redis restarts (no persistence: every lock is gone).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_wait_lets_the_waiter_acquire_within_its_wait() {
    let mut server = common::server();
    let holder = LockManager::new(&server.url()).unwrap();
    let waiter = LockManager::builder(server.url())
        .operation_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let held = holder
        .acquire_with("queue", &common::options(60_000, 0))
        .await
        .unwrap();
    let wait = Duration::from_secs(8);
    let waiting = tokio::spawn(async move {
        let start = Instant::now();
        let outcome = waiter
            .acquire_with(
                "queue",
                &LockOptions::new(Duration::from_secs(30)).wait(wait),
            )
            .await;
        (outcome, start.elapsed())
    });
    common::until(PATIENCE, "the waiter to subscribe", || {
        server
            .command(&["PUBSUB", "NUMSUB", "lock:queue"])
            .is_ok_and(|reply| reply.ends_with('1'))
    })
    .await;
    blocking(|| server.restart().unwrap());
    let (outcome, took) = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("the waiter hung")
        .unwrap();
    let guard = outcome.expect("the lock is free after the restart: acquired within the wait");
    assert!(took < wait, "took {took:?}");
    eprintln!("acquired {took:?} after starting to wait, across a restart");
    // The old holder's lock is gone with the restart: its release must not delete the new one.
    let released = held.release().await;
    assert!(
        matches!(released, Err(LockError::Lost { .. })),
        "{released:?}"
    );
    assert!(
        server
            .command(&["PTTL", "lock:queue"])
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 20_000,
        "the new lock was touched"
    );
    guard.release().await.expect("the new holder still owns it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_hold_reports_lost_and_drops_the_body() {
    const TTL: u64 = 900;
    let mut server = common::server();
    let locks = LockManager::builder(server.url())
        .operation_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let call = {
        let (started, dropped, locks) = (started.clone(), dropped.clone(), locks.clone());
        tokio::spawn(async move {
            locks
                .with_lock("batch", &common::options(TTL, 0), |_guard| async move {
                    let _flag = DropFlag(dropped);
                    started.store(true, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                })
                .await
        })
    };
    common::until(PATIENCE, "the body to start", || {
        started.load(Ordering::SeqCst)
    })
    .await;
    let by_hand = locks
        .acquire_with("manual", &common::options(60_000, 0))
        .await
        .unwrap();
    blocking(|| server.restart().unwrap());
    let restarted = Instant::now();
    // Someone takes the lock on the fresh server; the old holders must leave it alone.
    let other = LockManager::new(&server.url()).unwrap();
    let newcomer = other
        .acquire_with("manual", &common::options(60_000, 0))
        .await
        .expect("free after the restart");

    let outcome = tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the holder hung")
        .unwrap();
    assert!(
        matches!(outcome, Err(LockError::Lost { ref key }) if key == "batch"),
        "{outcome:?}"
    );
    assert!(dropped.load(Ordering::SeqCst), "the body was not dropped");
    let after = restarted.elapsed();
    assert!(
        after < Duration::from_millis(TTL) + Duration::from_secs(1),
        "noticed {after:?} after the restart"
    );

    let extended = by_hand.extend().await;
    assert!(
        matches!(extended, Err(LockError::Lost { .. })),
        "{extended:?}"
    );
    let released = by_hand.release().await;
    assert!(
        matches!(released, Err(LockError::Lost { .. })),
        "{released:?}"
    );
    newcomer
        .extend()
        .await
        .expect("the newcomer's lock is intact");
    newcomer.release().await.unwrap();
}
