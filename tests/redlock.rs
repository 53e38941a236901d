//! Redlock over independent `redis-server` masters started by each test: quorum, validity,
//! rollback, renewal by quorum, exclusion, fencing across quorums, and the attribute over it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redlock::testing::{Proxy, ProxyMode, RedisServer, RedisServers};
use redlock::{distributed_lock, LockError, LockManager};

fn masters(n: usize) -> RedisServers {
    RedisServers::spawn(n).expect("start redis-server masters")
}

fn redlock(servers: &RedisServers) -> LockManager {
    LockManager::redlock(servers.urls()).expect("redlock manager")
}

fn holds(server: &RedisServer, redis_key: &str) -> bool {
    server.command(&["EXISTS", redis_key]).expect("EXISTS") == "1"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_masters_with_two_stopped_still_lock() {
    let mut servers = masters(5);
    servers.get_mut(3).stop().unwrap();
    servers.get_mut(4).stop().unwrap();
    let locks = redlock(&servers);
    locks.ping().await.expect("a quorum answers PING");

    let guard = common::within(locks.acquire_with("account:7", &common::options(5_000, 0)))
        .await
        .expect("3 of 5 masters are a quorum");
    assert!(guard.fencing_token() > 0);
    assert!(guard.remaining() > Duration::from_secs(4));
    for i in 0..3 {
        assert!(holds(servers.get(i), "lock:account:7"), "master {i}");
    }
    let busy = common::within(locks.acquire_with("account:7", &common::options(5_000, 0)))
        .await
        .unwrap_err();
    assert!(busy.is_timeout(), "{busy:?}");

    guard.release().await.expect("release on the quorum");
    for i in 0..3 {
        assert!(!holds(servers.get(i), "lock:account:7"), "master {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_stopped_masters_give_quorum_not_reached_within_the_wait() {
    let mut servers = masters(5);
    for i in 2..5 {
        servers.get_mut(i).stop().unwrap();
    }
    let locks = redlock(&servers);

    // One attempt: at once.
    let err = common::within(locks.acquire_with("job", &common::options(5_000, 0)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LockError::QuorumNotReached {
                reached: 2,
                needed: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("quorum not reached"), "{err}");

    // Retried within the wait, then reported (not a hang, not "busy").
    let started = Instant::now();
    let err = common::within(locks.acquire_with("job", &common::options(5_000, 700)))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(err, LockError::QuorumNotReached { needed: 3, .. }),
        "{err:?}"
    );
    assert!(waited >= Duration::from_millis(700), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    // Nothing is left behind on the two running masters: the partial attempts were rolled back.
    for i in 0..2 {
        assert!(!holds(servers.get(i), "lock:job"), "master {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_masters_mid_hold_do_not_break_exclusion() {
    let servers = masters(5);
    let locks = redlock(&servers);
    let contender = redlock(&servers);
    let ttl = 1_000;
    let hold = common::options(ttl, 0);

    let held = locks.with_lock("report", &hold, |guard| {
        let servers = &servers;
        let contender = &contender;
        async move {
            let first = guard.fencing_token();
            // Two masters freeze while the lock is held.
            servers.get(0).pause().unwrap();
            servers.get(1).pause().unwrap();
            // Nobody else gets the lock meanwhile, for longer than the lease: the holder's
            // renewals reach the 3 other masters (a quorum).
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(2 * ttl + 500) {
                let err = contender
                    .acquire_with("report", &common::options(ttl, 300))
                    .await
                    .expect_err("the lock is held");
                assert!(err.is_timeout(), "{err:?}");
            }
            assert!(guard.is_held());
            first
        }
    });
    let first = common::within(held)
        .await
        .expect("held throughout, then released");
    servers.get(0).resume().unwrap();
    servers.get(1).resume().unwrap();

    let guard = common::within(contender.acquire_with("report", &common::options(ttl, 5_000)))
        .await
        .expect("free after release");
    assert!(guard.fencing_token() > first);
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutual_exclusion_under_contention_with_increasing_fencing_tokens() {
    const TASKS: usize = 8;
    const ROUNDS: usize = 20;
    let servers = masters(3);
    let inside = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let locks = redlock(&servers);
        let inside = inside.clone();
        let tokens = tokens.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let guard = locks
                    .acquire_with("counter", &common::options(10_000, 60_000))
                    .await
                    .expect("acquire");
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two holders at once"
                );
                tokens.lock().unwrap().push(guard.fencing_token());
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
                guard.release().await.expect("release");
            }
        }));
    }
    common::joined(tasks).await;
    let tokens = tokens.lock().unwrap();
    assert_eq!(tokens.len(), TASKS * ROUNDS);
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "fencing tokens must increase with every holder: {tokens:?}"
    );
}

/// A Redlock waiter keeps no place in line: it listens on one master for the key's release
/// notice alone (no channel of hand-offs, no line on any master), and between notices it polls
/// with its backoff, not with the long pauses of a waiter in line (which waits for a hand-off
/// that Redlock never makes). The notice of the master it listens on can come before the other
/// masters have released; the attempt it wakes then finds the lock still held, and the next
/// one, a short backoff later, takes it. A line's pause (20 s here) would have missed that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redlock_waiter_keeps_no_place_in_line_and_gets_the_lock_soon_after_release() {
    let servers = masters(3);
    let holder_side = redlock(&servers);
    // Bounds generous enough that the subscription cannot time out on a loaded machine (which
    // would leave the waiter polling with its 20 s backoff).
    let waiter_side = LockManager::builder_redlock(servers.urls())
        .backoff(Duration::from_millis(10), Duration::from_secs(20))
        .operation_timeout(Duration::from_secs(10))
        .node_timeout(Duration::from_secs(5))
        .build()
        .expect("redlock manager");
    let guard = common::within(holder_side.acquire_with("invoice", &common::options(60_000, 0)))
        .await
        .expect("acquire");
    let waiter = tokio::spawn(async move {
        waiter_side
            .acquire_with("invoice", &common::options(10_000, 60_000))
            .await
    });
    common::until(common::PATIENCE, "the waiter to listen on a master", || {
        servers.iter().any(|master| {
            master
                .command(&["PUBSUB", "NUMSUB", "lock:invoice"])
                .unwrap()
                .ends_with("\n1")
        })
    })
    .await;
    for master in &servers {
        let channels = master
            .command(&["PUBSUB", "CHANNELS", "*granted*"])
            .unwrap();
        assert!(
            channels.is_empty(),
            "a hand-off channel on Redlock: {channels:?}"
        );
        let line = master
            .command(&["EXISTS", "redlock:fence:queue:lock:invoice"])
            .unwrap();
        assert_eq!(line, "0", "a line of waiters on a Redlock master");
    }
    let released = Instant::now();
    guard.release().await.expect("release");
    let next = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter got the lock soon after the release")
        .unwrap()
        .expect("the waiter gets the lock");
    eprintln!("woken {:?} after the release", released.elapsed());
    next.release().await.unwrap();
}

/// The command connections `server` has open (not subscribed ones, nor this query's own).
fn command_connections(server: &RedisServer) -> usize {
    let clients = server.command(&["CLIENT", "LIST"]).expect("CLIENT LIST");
    clients
        .lines()
        .filter(|client| {
            client.contains(" sub=0 ")
                && client.contains(" psub=0 ")
                && !client.contains("cmd=client|list")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_that_arrives_late_does_not_undo_a_later_attempt() {
    // Masters 1 and 2 behind proxies that hold every byte back 1.5 s: the first attempts
    // reach only master 0 in time, fail, and are rolled back; their requests (and rollbacks)
    // wait in the proxies while the manager gives those connections up and opens new ones.
    let servers = masters(3);
    let proxies: Vec<Proxy> = (1..3)
        .map(|i| Proxy::start(("127.0.0.1", servers.get(i).port().unwrap())).unwrap())
        .collect();
    let urls = vec![servers.get(0).url(), proxies[0].url(), proxies[1].url()];
    let locks = LockManager::builder_redlock(urls.clone())
        .node_timeout(Duration::from_millis(100))
        .operation_timeout(Duration::from_millis(500))
        .connections(1)
        .build()
        .unwrap();
    // A failed attempt first, as in a service that has run a while: the masters know the
    // rollback script, so a late rollback runs when it lands.
    let other = redlock(&servers);
    let warm = other
        .acquire_with("warm", &common::options(20_000, 0))
        .await
        .unwrap();
    let busy = common::within(locks.acquire_with("warm", &common::options(20_000, 0)))
        .await
        .unwrap_err();
    assert!(matches!(busy, LockError::Timeout { .. }), "{busy:?}");
    warm.release().await.unwrap();
    let held_back = Duration::from_millis(1_500);
    for proxy in &proxies {
        proxy.set_mode(ProxyMode::Delay(held_back)).unwrap();
    }
    let acquiring = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .acquire_with("late", &common::options(20_000, 10_000))
                .await
        }
    });
    let before = [1, 2].map(|i| command_connections(servers.get(i)));
    common::until(
        common::PATIENCE,
        "the manager to reconnect to masters 1 and 2",
        || (0..2).all(|i| command_connections(servers.get(i + 1)) > before[i]),
    )
    .await;
    for proxy in &proxies {
        proxy.set_mode(ProxyMode::Pass).unwrap();
    }
    let passed = Instant::now();
    let guard = common::within(acquiring).await.unwrap().unwrap();
    // Every byte held back lands within 1.5 s of the switch. Meanwhile a master that holds the
    // holder's token keeps it (the old attempts' rollbacks name other tokens; an old attempt's
    // copy may come and go where the holder's has not landed yet), and by the end every master
    // holds it (a copy still held back when the lock was taken lands too).
    let value = servers.get(0).command(&["GET", "lock:late"]).unwrap();
    let token = value.split('|').next().unwrap().to_owned();
    let holds_token = |i: usize| {
        let value = servers.get(i).command(&["GET", "lock:late"]).unwrap();
        value.split('|').next() == Some(token.as_str())
    };
    let mut held = [false; 3];
    while passed.elapsed() < held_back + Duration::from_millis(500) {
        for (i, held) in held.iter_mut().enumerate() {
            let now = holds_token(i);
            assert!(
                now || !*held,
                "a late rollback removed the lock from master {i}"
            );
            *held = now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(held, [true; 3], "the lock is on every master in the end");
    let busy = common::within(other.acquire_with("late", &common::options(20_000, 0)))
        .await
        .unwrap_err();
    assert!(matches!(busy, LockError::Timeout { .. }), "{busy:?}");
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_increase_across_different_quorums() {
    let servers = masters(3);
    let locks = redlock(&servers);
    let take = |locks: &LockManager| {
        let locks = locks.clone();
        async move {
            let guard =
                common::within(locks.acquire_with("fenced", &common::options(2_000, 5_000)))
                    .await
                    .expect("quorum of 2");
            let token = guard.fencing_token();
            guard.release().await.expect("release");
            token
        }
    };
    let t1 = take(&locks).await;
    // Quorum {1, 2}: their counters move on, master 0's stays behind.
    servers.get(0).pause().unwrap();
    let t2 = take(&locks).await;
    servers.get(0).resume().unwrap();
    // Quorum {0, 2}: master 0 is behind; the token is the maximum, and master 0 is raised to it.
    servers.get(1).pause().unwrap();
    let t3 = take(&locks).await;
    servers.get(1).resume().unwrap();
    let t4 = take(&locks).await;
    assert!(t1 < t2 && t2 < t3 && t3 < t4, "{t1} {t2} {t3} {t4}");
    let counter: u64 = servers
        .get(0)
        .command(&["GET", "redlock:fence"])
        .unwrap()
        .parse()
        .unwrap();
    assert!(counter >= t3, "master 0 was raised: {counter} vs {t3}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_quorum_times_out_and_leaves_the_holder_intact() {
    let servers = masters(3);
    let locks = redlock(&servers);
    let guard = locks
        .acquire_with("shared", &common::options(10_000, 0))
        .await
        .unwrap();
    let started = Instant::now();
    let err = common::within(locks.acquire_with("shared", &common::options(10_000, 300)))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The contender's rollbacks deleted only its own keys.
    for i in 0..3 {
        let value = servers.get(i).command(&["GET", "lock:shared"]).unwrap();
        assert_ne!(value, "(nil)", "master {i}");
    }
    guard.release().await.unwrap();
}

#[test]
fn a_redlock_manager_needs_distinct_urls() {
    let err = LockManager::redlock(Vec::<String>::new()).unwrap_err();
    assert!(err.to_string().contains("at least one URL"), "{err}");
    let err = LockManager::redlock(["redis://127.0.0.1:1", "redis://127.0.0.1:1"]).unwrap_err();
    assert!(err.to_string().contains("given twice"), "{err}");
    let locks = LockManager::redlock([
        "redis://127.0.0.1:1",
        "redis://127.0.0.1:2",
        "redis://127.0.0.1:3",
    ])
    .unwrap();
    assert!(format!("{locks:?}").contains("quorum 2"), "{locks:?}");
}

#[distributed_lock(key = "ledger:<id>", ttl = "2s", wait = "20s", client = locks, guard = lock)]
async fn append(locks: &LockManager, id: u32, inside: &AtomicUsize) -> Result<u64, LockError> {
    assert_eq!(
        inside.fetch_add(1, Ordering::SeqCst),
        0,
        "two holders at once"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    inside.fetch_sub(1, Ordering::SeqCst);
    Ok(lock.fencing_token())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attribute_works_unchanged_over_redlock() {
    let servers = masters(3);
    let locks = redlock(&servers);
    let inside = AtomicUsize::new(0);
    let (a, b, c) = common::within(async {
        tokio::join!(
            append(&locks, 1, &inside),
            append(&locks, 1, &inside),
            append(&locks, 1, &inside)
        )
    })
    .await;
    let mut tokens = vec![a.unwrap(), b.unwrap(), c.unwrap()];
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "every holder has its own token");
    for i in 0..3 {
        assert!(
            !holds(servers.get(i), "lock:ledger:1"),
            "released on master {i}"
        );
    }
}
