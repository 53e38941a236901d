//! The line of waiters between processes: a release hands the lock to the longest waiter of any
//! process, in order of arrival; waiters killed in line, waiters whose wait ends in line and
//! missed notices cost a bounded delay, never the lock. Real processes (this test binary run
//! again, see `fault_support`) and a real `redis-server`.

mod common;
mod fault_support;

use std::time::{Duration, Instant};

use fault_support::{emit, setting, ChildProcess};
use redis::aio::MultiplexedConnection;
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
/// `FAILED <error>`.
async fn waiter() {
    let locks = LockManager::builder(setting::<String>("REDLOCK_URL"))
        .notifications(setting("REDLOCK_NOTICES"))
        .build()
        .expect("lock manager");
    let key: String = setting("REDLOCK_KEY");
    let options = common::options(setting("REDLOCK_TTL_MS"), setting("REDLOCK_WAIT_MS"));
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
    ChildProcess::spawn(
        "waiter",
        &[
            ("REDLOCK_HOLD_MS", hold_ms.to_string()),
            ("REDLOCK_URL", server.url()),
            ("REDLOCK_KEY", key.to_owned()),
            ("REDLOCK_TTL_MS", "10000".to_owned()),
            ("REDLOCK_WAIT_MS", wait_ms.to_string()),
            ("REDLOCK_NOTICES", notices.to_string()),
        ],
    )
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
