//! The runtime against real redis-server processes: exclusion, waiting, ownership, expiry,
//! renewal, fencing, failures.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redlock::testing::RedisServer;
use redlock::{LockError, LockManager};

fn manager(server: &RedisServer) -> LockManager {
    LockManager::new(&server.url()).expect("valid url")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutual_exclusion_keeps_a_read_modify_write_counter_exact() {
    const TASKS: usize = 32;
    const INCREMENTS: usize = 200;
    let server = common::server();
    let locks = manager(&server);
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let locks = locks.clone();
        let inside = inside.clone();
        let overlaps = overlaps.clone();
        let mut conn = common::connect(&server.url()).await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..INCREMENTS {
                let guard = locks
                    .acquire_with("counter", &common::options(10_000, 60_000))
                    .await
                    .expect("acquire");
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                let value: i64 = conn
                    .get("counter")
                    .await
                    .map(|v: Option<i64>| v.unwrap_or(0))
                    .unwrap();
                tokio::task::yield_now().await;
                let _: () = conn.set("counter", value + 1).await.unwrap();
                inside.fetch_sub(1, Ordering::SeqCst);
                guard.release().await.expect("release");
            }
        }));
    }
    common::joined(tasks).await;
    let total: i64 = common::connect(&server.url())
        .await
        .get("counter")
        .await
        .unwrap();
    assert_eq!(total, (TASKS * INCREMENTS) as i64, "lost updates");
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two holders overlapped");
}

/// With polling slowed to once per 5 s, a waiter that gets the lock well within a second of the
/// release was woken by the release notice.
async fn hand_off_latency(
    waiter: LockManager,
    holder: LockManager,
    server: &RedisServer,
) -> Duration {
    let guard = holder
        .acquire_with("handoff", &common::options(30_000, 0))
        .await
        .unwrap();
    let acquired_at = Arc::new(std::sync::Mutex::new(None));
    let record = acquired_at.clone();
    let task = tokio::spawn(async move {
        let guard = waiter
            .acquire_with("handoff", &common::options(30_000, 20_000))
            .await
            .expect("waiter acquires after the release");
        *record.lock().unwrap() = Some(Instant::now());
        guard.release().await.unwrap();
    });
    // The waiter has subscribed and made its attempt after subscribing once it is listening
    // on the channel; give its second attempt time to come back busy.
    common::until(Duration::from_secs(5), "the waiter to subscribe", || {
        server
            .command(&["PUBSUB", "NUMSUB", "lock:handoff"])
            .unwrap()
            .ends_with('1')
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let released_at = Instant::now();
    guard.release().await.unwrap();
    task.await.unwrap();
    let acquired_at = acquired_at.lock().unwrap().expect("recorded");
    acquired_at.duration_since(released_at)
}

fn slow_polling(server: &RedisServer) -> LockManager {
    LockManager::builder(server.url())
        .backoff(Duration::from_secs(5), Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_in_another_process_wakes_on_the_release_notice() {
    let server = common::server();
    let latency = hand_off_latency(slow_polling(&server), slow_polling(&server), &server).await;
    eprintln!("hand-off through pub/sub: {latency:?}");
    assert!(
        latency < Duration::from_secs(1),
        "hand-off took {latency:?}: not woken by the notice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_in_the_same_process_wakes_on_the_release() {
    let server = common::server();
    let locks = slow_polling(&server);
    let latency = hand_off_latency(locks.clone(), locks, &server).await;
    eprintln!("hand-off within one manager: {latency:?}");
    assert!(
        latency < Duration::from_secs(1),
        "hand-off took {latency:?}: not woken by the release"
    );
}

#[tokio::test]
async fn release_and_extend_with_a_stale_token_touch_nothing() {
    let server = common::server();
    let locks = manager(&server);
    let stale = locks
        .acquire_with("owned", &common::options(100, 0))
        .await
        .unwrap();
    let current = locks
        .acquire_with("owned", &common::options(30_000, 5_000))
        .await
        .expect("acquired after the first lease expired");
    assert!(matches!(stale.extend().await, Err(LockError::Lost { .. })));
    assert!(matches!(stale.release().await, Err(LockError::Lost { .. })));
    let pttl: i64 = server
        .command(&["PTTL", "lock:owned"])
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        pttl > 20_000,
        "the current holder's lock was touched (pttl {pttl})"
    );
    current.extend().await.expect("the owner can extend");
    current.release().await.expect("the owner can release");
    assert_eq!(server.command(&["EXISTS", "lock:owned"]).unwrap(), "0");
}

#[tokio::test]
async fn lock_of_a_vanished_holder_is_free_after_its_ttl_and_not_before() {
    let server = common::server();
    let locks = manager(&server);
    let taken = Instant::now();
    std::mem::forget(
        locks
            .acquire_with("vanished", &common::options(400, 0))
            .await
            .unwrap(),
    );
    let busy = locks
        .acquire_with("vanished", &common::options(400, 0))
        .await
        .unwrap_err();
    assert!(busy.is_timeout(), "{busy:?}");
    let guard = locks
        .acquire_with("vanished", &common::options(1_000, 5_000))
        .await
        .expect("free after the ttl");
    let after = taken.elapsed();
    assert!(
        after >= Duration::from_millis(390),
        "acquired after {after:?}, before the ttl ran out"
    );
    guard.release().await.unwrap();
}

#[tokio::test]
async fn renewal_keeps_a_lock_alive_for_three_times_its_ttl() {
    let server = common::server();
    let locks = manager(&server);
    let other = manager(&server);
    let ttl = 300;
    let result = locks
        .with_lock("long-job", &common::options(ttl, 0), |guard| {
            let other = other.clone();
            async move {
                let start = guard.fencing_token();
                tokio::time::sleep(Duration::from_millis(3 * ttl)).await;
                let busy = other
                    .acquire_with("long-job", &common::options(ttl, 0))
                    .await;
                assert!(matches!(busy, Err(LockError::Timeout { .. })), "{busy:?}");
                assert!(guard.remaining() > Duration::ZERO);
                start
            }
        })
        .await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        server.command(&["EXISTS", "lock:long-job"]).unwrap(),
        "0",
        "released after"
    );
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn deleting_the_key_makes_the_locked_call_return_lost_and_drops_the_body() {
    let server = common::server();
    let locks = manager(&server);
    let started = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let call = {
        let (started, dropped, finished) = (started.clone(), dropped.clone(), finished.clone());
        let locks = locks.clone();
        tokio::spawn(async move {
            locks
                .with_lock("doomed", &common::options(300, 0), |_guard| async move {
                    let _flag = DropFlag(dropped);
                    started.store(true, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    finished.store(true, Ordering::SeqCst);
                })
                .await
        })
    };
    common::until(Duration::from_secs(5), "the body to start", || {
        started.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(server.command(&["DEL", "lock:doomed"]).unwrap(), "1");
    let outcome = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the call ends soon after the loss")
        .unwrap();
    assert!(
        matches!(outcome, Err(LockError::Lost { ref key }) if key == "doomed"),
        "{outcome:?}"
    );
    assert!(
        dropped.load(Ordering::SeqCst),
        "the body future was not dropped"
    );
    assert!(!finished.load(Ordering::SeqCst));
}

#[tokio::test]
async fn fencing_tokens_increase_across_acquisitions_and_expiry() {
    let server = common::server();
    let locks = manager(&server);
    let other = manager(&server);
    let mut last = 0;
    for i in 0..1000u32 {
        let by = if i.is_multiple_of(2) { &locks } else { &other };
        let guard = by
            .acquire_with("fenced", &common::options(10_000, 1_000))
            .await
            .unwrap();
        assert!(
            guard.fencing_token() > last,
            "token {} after {last}",
            guard.fencing_token()
        );
        last = guard.fencing_token();
        guard.release().await.unwrap();
    }
    std::mem::forget(
        locks
            .acquire_with("fenced", &common::options(50, 0))
            .await
            .unwrap(),
    );
    let after_expiry = other
        .acquire_with("fenced", &common::options(10_000, 5_000))
        .await
        .unwrap();
    assert!(after_expiry.fencing_token() > last + 1);
}

#[tokio::test]
async fn different_keys_do_not_block_each_other() {
    let server = common::server();
    let locks = manager(&server);
    let a = locks
        .acquire_with("left", &common::options(10_000, 0))
        .await
        .unwrap();
    let b = locks
        .acquire_with("right", &common::options(10_000, 0))
        .await
        .unwrap();
    a.release().await.unwrap();
    b.release().await.unwrap();
}

#[tokio::test]
async fn acquire_many_is_all_or_nothing() {
    let server = common::server();
    let locks = manager(&server);
    let held = locks
        .acquire_with("b", &common::options(10_000, 0))
        .await
        .unwrap();
    let err = locks
        .acquire_many(&["b", "a"], &common::options(10_000, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LockError::Timeout { ref key, .. } if key == "b"),
        "{err:?}"
    );
    assert_eq!(
        server.command(&["EXISTS", "lock:a"]).unwrap(),
        "0",
        "`a` was rolled back"
    );
    held.release().await.unwrap();
    let both = locks
        .acquire_many(&["b", "a", "b"], &common::options(10_000, 0))
        .await
        .unwrap();
    let keys: Vec<_> = both.iter().map(|guard| guard.key().to_owned()).collect();
    assert_eq!(keys, ["a", "b"]);
}

#[tokio::test]
async fn a_key_holding_another_type_is_a_wrong_type_error() {
    let server = common::server();
    let locks = manager(&server);
    server.command(&["RPUSH", "lock:queue", "job"]).unwrap();
    let err = locks
        .acquire_with("queue", &common::options(1_000, 1_000))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LockError::WrongType { ref key, ref found } if key == "queue" && found == "list"),
        "{err:?}"
    );
    assert!(err.to_string().contains("holds a list"), "{err}");
    assert_eq!(
        server.command(&["LLEN", "lock:queue"]).unwrap(),
        "1",
        "the list was touched"
    );
}

#[tokio::test]
async fn stopped_redis_gives_an_error_in_bounded_time_and_restart_recovers() {
    let mut server = common::server();
    let locks = LockManager::builder(server.url())
        .operation_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    locks
        .acquire_with("up", &common::options(1_000, 0))
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    server.stop().unwrap();
    let start = Instant::now();
    let err = locks
        .acquire_with("up", &common::options(1_000, 1_000))
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, LockError::Redis { .. }), "{err:?}");
    assert!(took < Duration::from_secs(5), "gave up after {took:?}");
    server.restart().unwrap();
    let guard = locks
        .acquire_with("up", &common::options(1_000, 5_000))
        .await
        .expect("works again after the restart");
    guard.release().await.unwrap();
}

#[tokio::test]
async fn paused_redis_gives_an_error_in_bounded_time() {
    let server = common::server();
    let locks = LockManager::builder(server.url())
        .operation_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    locks.ping().await.unwrap();
    server.pause().unwrap();
    let start = Instant::now();
    let err = locks
        .acquire_with("frozen", &common::options(1_000, 0))
        .await
        .unwrap_err();
    let took = start.elapsed();
    server.resume().unwrap();
    assert!(matches!(err, LockError::Redis { .. }), "{err:?}");
    assert!(took < Duration::from_secs(3), "gave up after {took:?}");
}

/// A manager with one command connection to `server`, connected.
async fn one_connection(server: &RedisServer, limit: Duration) -> LockManager {
    let locks = LockManager::builder(server.url())
        .operation_timeout(limit)
        .connections(1)
        .build()
        .unwrap();
    locks.ping().await.unwrap();
    locks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_on_a_silent_server_all_fail_together_and_the_next_connection_works() {
    let server = common::server();
    let limit = Duration::from_millis(400);
    let locks = one_connection(&server, limit).await;
    server.pause().unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let locks = locks.clone();
        tasks.push(tokio::spawn(async move {
            let err = locks
                .acquire_with(&format!("silent:{i}"), &common::options(5_000, 0))
                .await
                .unwrap_err();
            (err, start.elapsed())
        }));
    }
    let outcomes = common::joined(tasks).await;
    server.resume().unwrap();
    for (err, took) in &outcomes {
        // One operation timeout of silence closes the connection; the watchdog looks four
        // times per timeout, so a request fails after at most about 1.25 timeouts.
        let LockError::Redis { source, .. } = err else {
            panic!("expected a Redis error, got {err:?}");
        };
        assert!(source.is_timeout(), "{source}");
        assert!(source.to_string().contains("did not answer"), "{source}");
        assert!(*took >= limit, "failed after {took:?}, before the timeout");
        assert!(*took < limit * 3, "failed only after {took:?}");
    }
    // (The unanswered requests may still run now that the server is back: their keys stay
    // taken until their leases end. Another key shows the new connection.)
    let guard = common::within(locks.acquire_with("silent:after", &common::options(5_000, 0)))
        .await
        .expect("a new connection once the server answers again");
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_request_its_caller_gave_up_does_not_cost_a_healthy_connection() {
    let server = common::server();
    let limit = Duration::from_millis(200);
    let locks = one_connection(&server, limit).await;
    let ids = || -> Vec<String> {
        clients(&server)
            .iter()
            .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
            .collect()
    };
    let before = ids();
    // Given up right after it is sent: its answer comes, and nobody hears it.
    {
        let mut ping = std::pin::pin!(locks.ping());
        let first = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::future::Future::poll(ping.as_mut(), cx))
        })
        .await;
        assert!(first.is_pending(), "the ping ended in its first poll");
    }
    // The watchdog looks four times per operation timeout; give it several timeouts to
    // (wrongly) close the connection.
    tokio::time::sleep(limit * 4).await;
    locks.ping().await.unwrap();
    assert_eq!(ids(), before, "the connection was replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_manager_leaves_no_connection_task_running() {
    let server = common::server();
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let locks = LockManager::builder(server.url())
        .connections(2)
        .build()
        .unwrap();
    for key in ["left", "right", "up", "down"] {
        let guard = locks
            .acquire_with(key, &common::options(5_000, 0))
            .await
            .unwrap();
        guard.release().await.unwrap();
    }
    assert!(
        metrics.num_alive_tasks() > before,
        "connections run their tasks here"
    );
    drop(locks);
    common::until(common::PATIENCE, "the connection tasks to end", || {
        metrics.num_alive_tasks() == before
    })
    .await;
}

#[tokio::test]
async fn unreachable_server_and_bad_url_give_typed_errors() {
    let err = LockManager::new("not a url").unwrap_err();
    assert!(matches!(err, LockError::Config(_)), "{err:?}");
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let locks = LockManager::builder(format!("redis://127.0.0.1:{free_port}"))
        .operation_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = locks
        .acquire_with("nowhere", &common::options(1_000, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Redis { .. }), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

/// The clients Redis lists, without the one asking.
fn clients(server: &RedisServer) -> Vec<String> {
    let list = server.command(&["CLIENT", "LIST"]).unwrap();
    list.lines()
        .filter(|line| !line.contains("cmd=client|list"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn keys_spread_over_the_command_connections() {
    let server = common::server();
    let locks = LockManager::builder(server.url())
        .connections(3)
        .notifications(false)
        .build()
        .unwrap();
    locks.ping().await.unwrap();
    assert_eq!(clients(&server).len(), 1, "{:?}", clients(&server));
    for i in 0..60 {
        let guard = locks
            .acquire_with(&format!("spread:{i}"), &common::options(1_000, 0))
            .await
            .unwrap();
        guard.release().await.unwrap();
    }
    assert_eq!(clients(&server).len(), 3, "{:?}", clients(&server));
}

/// CI runs these suites on Redis and again with `REDIS_SERVER_BIN=valkey-server`: the server a
/// test spawns is the binary that variable names (else `redis-server`), as its `INFO server`
/// shows: the name and version the binary prints for `--version`.
#[test]
fn spawned_server_is_the_binary_redis_server_bin_names() {
    let bin = std::env::var_os("REDIS_SERVER_BIN")
        .filter(|bin| !bin.is_empty())
        .unwrap_or_else(|| "redis-server".into());
    let output = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{} --version: {e}", bin.to_string_lossy()));
    // "Redis server v=7.0.15 sha=..." or "Valkey server v=8.0.1 sha=..."
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    let (name, rest) = printed
        .split_once(" server v=")
        .unwrap_or_else(|| panic!("unexpected --version output {printed:?}"));
    let version = rest.split_whitespace().next().unwrap_or_default();
    let named = std::path::Path::new(&bin).file_name().unwrap_or_default();
    let named = named.to_string_lossy();
    if named.starts_with("valkey") {
        assert_eq!(name, "Valkey", "{printed}");
    } else if named.starts_with("redis") {
        assert_eq!(name, "Redis", "{printed}");
    }

    let server = common::server();
    let info = server.command(&["INFO", "server"]).unwrap();
    let field = |key: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
            .map(str::to_owned)
    };
    match name {
        "Valkey" => {
            assert_eq!(field("server_name").as_deref(), Some("valkey"), "{info}");
            // Valkey 8 reports its own version beside the Redis version it is compatible with.
            let reported = field("valkey_version").or_else(|| field("redis_version"));
            assert_eq!(reported.as_deref(), Some(version), "{info}");
        }
        "Redis" => {
            assert_eq!(field("server_name"), None, "{info}");
            assert_eq!(field("valkey_version"), None, "{info}");
            assert_eq!(field("redis_version").as_deref(), Some(version), "{info}");
        }
        // Another server: at least some `*_version` field is the version it printed.
        _ => {
            let suffix = format!("_version:{version}");
            assert!(info.lines().any(|l| l.ends_with(&suffix)), "{info}");
        }
    }
}
