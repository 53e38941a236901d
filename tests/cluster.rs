//! Locks on a local 3-master Redis Cluster started by each test: routing by slot, per-slot
//! fencing counters, sharded release notices, multi-key locks across masters, a slot
//! migration and a master restart while a waiter waits, and the attribute over it.
#![cfg(feature = "cluster")]

mod common;

use std::time::{Duration, Instant};

use redlock::testing::RedisCluster;
use redlock::{distributed_lock, LockError, LockManager};

fn cluster() -> RedisCluster {
    RedisCluster::spawn(3).expect("start a 3-master cluster")
}

fn manager(cluster: &RedisCluster) -> LockManager {
    LockManager::cluster(cluster.urls()).expect("cluster manager")
}

/// `n` lock keys (with the default prefix) served by `n` different masters.
fn keys_on_distinct_masters(cluster: &RedisCluster, n: usize) -> Vec<String> {
    let mut found: Vec<(usize, String)> = Vec::new();
    for i in 0.. {
        let key = format!("account:{i}");
        let owner = cluster.owner_of(&format!("lock:{key}")).unwrap();
        if found.iter().all(|(o, _)| *o != owner) {
            found.push((owner, key));
        }
        if found.len() == n {
            break;
        }
    }
    found.into_iter().map(|(_, key)| key).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_live_on_the_slot_owner_with_a_per_slot_fence_and_sharded_notices() {
    let cluster = cluster();
    let locks = manager(&cluster);
    locks.ping().await.expect("ping");
    let key = "account:7";
    let owner = cluster.owner_of("lock:account:7").unwrap();

    let guard = common::within(locks.acquire_with(key, &common::options(10_000, 0)))
        .await
        .expect("acquire");
    let value = cluster
        .master(owner)
        .command(&["GET", "lock:account:7"])
        .unwrap();
    assert_eq!(
        value.find('|'),
        Some(48),
        "the holder's token (32 random digits and a 16-digit task tag), then who holds it, is on the slot owner: {value:?}"
    );
    // The fencing counter is in the same slot, on the same master.
    let slot = cluster.slot_of("lock:account:7").unwrap();
    let fences = cluster
        .master(owner)
        .command(&["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), "10"])
        .unwrap();
    let fence_key = fences
        .lines()
        .find(|k| k.starts_with("redlock:fence:{"))
        .unwrap_or_else(|| panic!("no fence counter in slot {slot}: {fences:?}"))
        .to_owned();
    let counter = cluster.master(owner).command(&["GET", &fence_key]).unwrap();
    assert_eq!(counter, guard.fencing_token().to_string());

    // A waiter subscribes to the key's shard channel on the slot owner, and gets the lock on
    // release.
    let waiter = {
        let locks = locks.clone();
        tokio::spawn(async move {
            locks
                .acquire_with(key, &common::options(10_000, 30_000))
                .await
        })
    };
    let master = cluster.master(owner);
    common::until_every(
        common::PATIENCE,
        Duration::from_millis(5),
        "a sharded subscription on the slot owner",
        || {
            master
                .command(&["PUBSUB", "SHARDNUMSUB", "lock:account:7"])
                .unwrap()
                .ends_with("\n1")
        },
    )
    .await;
    let first = guard.fencing_token();
    guard.release().await.expect("release");
    let second = common::within(waiter)
        .await
        .unwrap()
        .expect("the waiter gets the lock");
    assert!(second.fencing_token() > first);
    second.release().await.unwrap();
}

/// A release that hands the lock to a waiter of another manager tells it on that manager's
/// own channel of the key's hand-offs, in the key's shard: the waiter, whose own attempts come
/// every 20 s, has the lock at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_off_reaches_another_managers_waiter_over_its_shard_channel() {
    let cluster = cluster();
    let holder_side = manager(&cluster);
    let waiter_side = LockManager::builder_cluster(cluster.urls())
        .backoff(Duration::from_millis(10), Duration::from_secs(20))
        .build()
        .expect("cluster manager");
    let key = "account:9";
    let owner = cluster.owner_of("lock:account:9").unwrap();
    let slot = cluster.slot_of("lock:account:9").unwrap().to_string();
    let guard = common::within(holder_side.acquire_with(key, &common::options(60_000, 0)))
        .await
        .expect("acquire");
    let waiter = tokio::spawn(async move {
        waiter_side
            .acquire_with(key, &common::options(10_000, 60_000))
            .await
    });
    // The waiter's place in line names its manager's channel once it subscribed.
    let master = cluster.master(owner);
    common::until_every(
        common::PATIENCE,
        Duration::from_millis(5),
        "a place in line naming a channel",
        || {
            let keys = master
                .command(&["CLUSTER", "GETKEYSINSLOT", &slot, "10"])
                .unwrap();
            keys.lines()
                .filter(|k| k.starts_with("redlock:fence:waiters:"))
                .any(|places| {
                    master
                        .command(&["HVALS", places])
                        .unwrap()
                        .split(' ')
                        .nth(3)
                        .is_some_and(|channel| channel.starts_with("lock:account:9:granted:"))
                })
        },
    )
    .await;
    let first = guard.fencing_token();
    let released = Instant::now();
    guard.release().await.expect("release");
    let second = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the hand-off's notice woke the waiter")
        .unwrap()
        .expect("the waiter gets the lock");
    eprintln!("handed over in {:?}", released.elapsed());
    assert!(second.fencing_token() > first);
    second.release().await.unwrap();
}

/// Braces are ordinary characters in a key, on a cluster too: keys with an unclosed `{`, an
/// empty `{}` or a `}` before a `{` are taken, waited for in line, handed over and released
/// like any other (their companions, the fencing counter and the line, live in their slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_stray_braces_are_waited_for_and_handed_over() {
    let cluster = cluster();
    let locks = manager(&cluster);
    let other = manager(&cluster);
    for key in ["odd{key", "empty{}tag", "a}b{c"] {
        let guard = common::within(locks.acquire_with(key, &common::options(10_000, 0)))
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        let waiter = {
            let other = other.clone();
            tokio::spawn(async move {
                other
                    .acquire_with(key, &common::options(10_000, 30_000))
                    .await
            })
        };
        // In line: the holder's value is marked (`<token>+|...`) while anyone waits.
        let owner = cluster.owner_of(&format!("lock:{key}")).unwrap();
        let master = cluster.master(owner);
        let lock_key = format!("lock:{key}");
        common::until_every(
            common::PATIENCE,
            Duration::from_millis(5),
            "a waiter in line",
            || master.command(&["GET", &lock_key]).unwrap().contains("+|"),
        )
        .await;
        let first = guard.fencing_token();
        guard
            .release()
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        let second = common::within(waiter)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert!(second.fencing_token() > first);
        second
            .release()
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
    }
}

#[distributed_lock(keys = ["<from>", "<to>"], ttl = "5s", wait = "30s", client = locks, guard = held)]
async fn transfer(locks: &LockManager, from: &str, to: &str) -> Result<usize, LockError> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    Ok(held.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_locks_span_masters_without_deadlock() {
    let cluster = cluster();
    let locks = manager(&cluster);
    let keys = keys_on_distinct_masters(&cluster, 3);

    let guards = common::within(locks.acquire_many(&keys, &common::options(10_000, 0)))
        .await
        .expect("all three keys");
    assert_eq!(guards.len(), 3);
    for key in &keys {
        let owner = cluster.owner_of(&format!("lock:{key}")).unwrap();
        assert_ne!(
            cluster
                .master(owner)
                .command(&["GET", &format!("lock:{key}")])
                .unwrap(),
            "(nil)"
        );
    }
    let busy =
        common::within(locks.acquire_many(&[&keys[2], &keys[0]], &common::options(10_000, 0)))
            .await
            .unwrap_err();
    assert!(busy.is_timeout(), "{busy:?}");
    for guard in guards {
        guard.release().await.unwrap();
    }

    // A→B and B→A (on different masters), several times each: canonical order, no deadlock.
    let (a, b) = (keys[0].as_str(), keys[1].as_str());
    let results = common::within(async {
        tokio::join!(
            transfer(&locks, a, b),
            transfer(&locks, b, a),
            transfer(&locks, a, b),
            transfer(&locks, b, a)
        )
    })
    .await;
    for result in [results.0, results.1, results.2, results.3] {
        assert_eq!(result.expect("transfer"), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_gets_the_lock_after_its_slot_migrates() {
    let cluster = cluster();
    let locks = manager(&cluster);
    let key = "invoice:42";
    let redis_key = "lock:invoice:42";
    let slot = cluster.slot_of(redis_key).unwrap();
    let from = cluster.owner_of_slot(slot).unwrap();
    let to = (from + 1) % cluster.len();

    let guard = common::within(locks.acquire_with(key, &common::options(20_000, 0)))
        .await
        .expect("acquire");
    let waiter = {
        let locks = locks.clone();
        tokio::spawn(async move {
            locks
                .acquire_with(key, &common::options(20_000, 30_000))
                .await
        })
    };
    let source = cluster.master(from);
    common::until_every(
        common::PATIENCE,
        Duration::from_millis(5),
        "the waiter's subscription",
        || {
            source
                .command(&["PUBSUB", "SHARDNUMSUB", redis_key])
                .unwrap()
                .ends_with("\n1")
        },
    )
    .await;

    // The lock key moves, with its expiry and the slot's fencing counter.
    cluster.migrate_slot(slot, to).expect("migrate the slot");
    assert_eq!(cluster.owner_of(redis_key).unwrap(), to);
    let pttl: i64 = cluster
        .master(to)
        .command(&["PTTL", redis_key])
        .unwrap()
        .parse()
        .unwrap();
    assert!(pttl > 0, "the lease moved along: {pttl}");
    assert!(
        !waiter.is_finished(),
        "the lock is still held after the migration"
    );

    // The holder still holds it: renewal and release follow the slot to its new master.
    guard.extend().await.expect("extend on the new owner");
    let first = guard.fencing_token();
    guard.release().await.expect("release on the new owner");
    let second = common::within(waiter)
        .await
        .unwrap()
        .expect("the waiter gets the lock");
    assert!(
        second.fencing_token() > first,
        "the slot's counter moved along"
    );
    assert_ne!(
        cluster.master(to).command(&["GET", redis_key]).unwrap(),
        "(nil)"
    );
    second.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_keeps_trying_while_a_master_restarts() {
    let mut cluster = cluster();
    let locks = manager(&cluster);
    let key = "batch:1";
    let redis_key = "lock:batch:1";
    let owner = cluster.owner_of(redis_key).unwrap();

    let guard = common::within(locks.acquire_with(key, &common::options(30_000, 0)))
        .await
        .expect("acquire");
    let waiter = {
        let locks = locks.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = locks
                .acquire_with(key, &common::options(30_000, 40_000))
                .await;
            (outcome, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "the lock is held");

    // The master restarts without persistence: it forgets the lock (the documented caveat), and
    // the waiter, which kept retrying through the outage, gets it long before the 30 s lease.
    tokio::task::block_in_place(|| cluster.restart_master(owner)).expect("restart the master");
    let (outcome, waited) = common::within(waiter).await.unwrap();
    let second = outcome.expect("the waiter gets the lock once the master is back");
    assert!(waited < Duration::from_secs(25), "{waited:?}");
    let err = guard.release().await.unwrap_err();
    assert!(
        err.is_lost(),
        "the first holder's lock was forgotten: {err:?}"
    );
    second.release().await.unwrap();
}

#[test]
fn a_cluster_fence_key_must_not_carry_a_hash_tag() {
    let err = LockManager::builder_cluster(["redis://127.0.0.1:1"])
        .fence_key("fence:{x}")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("braces"), "{err}");
}

#[test]
fn a_cluster_connection_attempt_stalled_on_an_idle_runtime_does_not_hold_up_another_runtime() {
    let cluster = cluster();
    let locks = LockManager::builder_cluster(cluster.urls())
        .operation_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    // A task of a start-up runtime starts the cluster connection while every master is frozen,
    // and the runtime goes idle with the attempt under way.
    for i in 0..cluster.len() {
        cluster.master(i).pause().unwrap();
    }
    let start_up = common::runtime_left_idle_while_locking(&locks);
    for i in 0..cluster.len() {
        cluster.master(i).resume().unwrap();
    }
    let application = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let guard = application
        .block_on(common::within(
            locks.acquire_with("free", &common::options(5_000, 5_000)),
        ))
        .expect("acquired from the second runtime");
    application.block_on(guard.release()).unwrap();
    drop(start_up);
}
