//! Who holds a lock: holder names, fencing tokens, since when and lease left, for every kind of
//! lock; listing held keys with `SCAN`; the administrative forced release; on one server, a
//! cluster and Redlock.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use redlock::{LockError, LockKind, LockManager};

fn named(url: &str, name: &str) -> LockManager {
    LockManager::builder(url)
        .holder_name(name)
        .build()
        .expect("manager")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_shows_who_holds_it_since_when_with_which_token_and_lease() {
    let server = common::server();
    let locks = named(&server.url(), "billing-1");
    let before = SystemTime::now() - Duration::from_secs(1);
    let guard = locks
        .acquire_with("acct:7", &common::options(10_000, 0))
        .await
        .unwrap();
    let seen = locks.inspect("acct:7").await.unwrap();
    assert_eq!(seen.key, "acct:7");
    assert_eq!(seen.kind, Some(LockKind::Exclusive));
    assert_eq!(seen.holders.len(), 1, "{seen:?}");
    let holder = &seen.holders[0];
    assert_eq!(holder.name, "billing-1");
    assert_eq!(holder.kind, LockKind::Exclusive);
    let since = holder.since.expect("since");
    assert!(since >= before && since <= SystemTime::now() + Duration::from_secs(1));
    assert!(holder.lease_remaining <= Duration::from_secs(10));
    assert!(holder.lease_remaining > Duration::from_secs(5));
    // Taken uncontended: its fencing token shows from its first renewal on.
    assert_eq!(holder.fencing_token, None);
    guard.extend().await.unwrap();
    let seen = locks.inspect("acct:7").await.unwrap();
    assert_eq!(seen.holders[0].fencing_token, Some(guard.fencing_token()));
    assert_eq!(
        seen.holders[0].since,
        Some(since),
        "a renewal keeps the time it was taken"
    );
    assert_eq!(seen.waiting, 0);

    // A waiter of another process shows as waiting; the hand-off records its holder at once.
    let other = named(&server.url(), "billing-2");
    let waiter = {
        let other = other.clone();
        tokio::spawn(async move {
            other
                .acquire_with("acct:7", &common::options(10_000, 30_000))
                .await
        })
    };
    let started = std::time::Instant::now();
    while locks.inspect("acct:7").await.unwrap().waiting == 0 {
        assert!(
            started.elapsed() < common::PATIENCE,
            "the waiter never showed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    guard.release().await.unwrap();
    let handed = common::within(waiter).await.unwrap().unwrap();
    let seen = locks.inspect("acct:7").await.unwrap();
    assert_eq!(seen.holders[0].name, "billing-2");
    assert_eq!(seen.holders[0].fencing_token, Some(handed.fencing_token()));
    handed.release().await.unwrap();
    let seen = locks.inspect("acct:7").await.unwrap();
    assert!(!seen.is_held() && seen.kind.is_none(), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_shares_writers_and_permits_show_each_holder() {
    let server = common::server();
    let (a, b) = (
        named(&server.url(), "reader-a"),
        named(&server.url(), "reader-b"),
    );
    let read = common::options(10_000, 0).read();
    let first = a.acquire_with("doc", &read).await.unwrap();
    let second = b.acquire_with("doc", &read).await.unwrap();
    let seen = a.inspect("doc").await.unwrap();
    assert_eq!(seen.kind, Some(LockKind::Read));
    let mut names: Vec<&str> = seen.holders.iter().map(|h| h.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["reader-a", "reader-b"]);
    let mut fences: Vec<Option<u64>> = seen.holders.iter().map(|h| h.fencing_token).collect();
    fences.sort_unstable();
    assert_eq!(
        fences,
        [Some(first.fencing_token()), Some(second.fencing_token())]
    );
    first.release().await.unwrap();
    second.release().await.unwrap();

    let writer = a
        .acquire_with("doc", &common::options(10_000, 0).write())
        .await
        .unwrap();
    let seen = a.inspect("doc").await.unwrap();
    assert_eq!(seen.holders.len(), 1);
    assert_eq!(seen.holders[0].kind, LockKind::Write);
    assert_eq!(seen.holders[0].fencing_token, Some(writer.fencing_token()));
    writer.release().await.unwrap();

    let permits = common::options(10_000, 0).permits(3);
    let p1 = a.acquire_with("pool", &permits).await.unwrap();
    let p2 = b.acquire_with("pool", &permits).await.unwrap();
    let seen = a.inspect("pool").await.unwrap();
    assert_eq!(seen.kind, Some(LockKind::Permits(3)));
    assert_eq!(seen.holders.len(), 2);
    assert!(seen.holders.iter().all(|h| h.kind == LockKind::Permits(3)));
    p1.release().await.unwrap();
    p2.release().await.unwrap();
    let mut conn = common::connect(&server.url()).await;
    let left: i64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert_eq!(
        left, 1,
        "only the fencing counter is left, no holders' record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_keys_are_listed_by_pattern() {
    let server = common::server();
    let locks = named(&server.url(), "lister");
    let mut guards = Vec::new();
    for i in 0..250 {
        guards.push(
            locks
                .acquire_with(&format!("acct:{i}"), &common::options(10_000, 0))
                .await
                .unwrap(),
        );
    }
    let other = locks
        .acquire_with("job:nightly", &common::options(10_000, 0).permits(2))
        .await
        .unwrap();
    let released = locks
        .acquire_with("acct:gone", &common::options(10_000, 0))
        .await
        .unwrap();
    released.release().await.unwrap();
    let listed = locks.list("acct:*").await.unwrap();
    assert_eq!(listed.len(), 250, "every held account, in batches of 100");
    assert!(listed.iter().all(|seen| seen.holders[0].name == "lister"));
    let all = locks.list("*").await.unwrap();
    assert_eq!(all.len(), 251);
    assert!(all.iter().any(|seen| seen.key == "job:nightly"));
    assert!(locks.list("nothing:*").await.unwrap().is_empty());
    drop(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_release_wakes_the_waiters_and_the_removed_holder_finds_its_lock_lost() {
    let server = common::server();
    let locks = named(&server.url(), "stuck");
    let entered = Arc::new(AtomicBool::new(false));
    let holder = {
        let (locks, entered) = (locks.clone(), entered.clone());
        tokio::spawn(async move {
            locks
                .with_lock("report", &common::options(900, 0), |_| async move {
                    entered.store(true, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(60)).await;
                })
                .await
        })
    };
    common::until(common::PATIENCE, "the holder's body", || {
        entered.load(Ordering::Relaxed)
    })
    .await;
    let waiter = {
        let other = named(&server.url(), "next");
        tokio::spawn(async move {
            let asked = std::time::Instant::now();
            let guard = other
                .acquire_with("report", &common::options(10_000, 30_000))
                .await;
            (guard, asked.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(locks.force_release("report").await.unwrap());
    let (guard, waited) = common::within(waiter).await.unwrap();
    let guard = guard.expect("the waiter gets the key");
    assert!(waited < Duration::from_secs(20), "waited {waited:?}");
    let seen = locks.inspect("report").await.unwrap();
    assert_eq!(seen.holders[0].name, "next");
    let outcome = common::within(holder).await.unwrap();
    assert!(
        matches!(outcome, Err(LockError::Lost { .. })),
        "the removed holder's renewal finds its lock gone: {outcome:?}"
    );
    guard.release().await.unwrap();
    assert!(
        !locks.force_release("report").await.unwrap(),
        "nothing held"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_shows_each_masters_view_and_the_quorums() {
    let masters = redlock::testing::RedisServers::spawn(3).unwrap();
    let locks = LockManager::builder_redlock(masters.urls())
        .holder_name("quorum-1")
        .build()
        .unwrap();
    let guard = locks
        .acquire_with("shared", &common::options(10_000, 0))
        .await
        .unwrap();
    let seen = locks.inspect("shared").await.unwrap();
    assert_eq!(seen.masters.len(), 3);
    assert!(seen
        .masters
        .iter()
        .all(|m| m.as_ref().is_some_and(|m| m.is_held())));
    assert_eq!(seen.holders.len(), 1);
    assert_eq!(seen.holders[0].name, "quorum-1");
    assert_eq!(locks.list("*").await.unwrap().len(), 1);
    // A master that forgot the lock still leaves a quorum's view.
    masters.get(2).command(&["DEL", "lock:shared"]).unwrap();
    let seen = locks.inspect("shared").await.unwrap();
    assert!(!seen.masters[2].as_ref().unwrap().is_held());
    assert_eq!(seen.holders.len(), 1, "2 of 3 masters still show it");
    masters.get(1).command(&["DEL", "lock:shared"]).unwrap();
    assert!(
        !locks.inspect("shared").await.unwrap().is_held(),
        "no quorum shows it"
    );
    drop(guard);
}

#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_lists_held_keys_of_every_master() {
    let cluster = redlock::testing::RedisCluster::spawn(3).unwrap();
    let locks = LockManager::cluster(cluster.urls()).unwrap();
    let mut guards = Vec::new();
    let mut owners = std::collections::HashSet::new();
    for i in 0..30 {
        let key = format!("acct:{i}");
        owners.insert(cluster.owner_of(&format!("lock:{key}")).unwrap());
        let options = match i % 3 {
            0 => common::options(10_000, 0),
            1 => common::options(10_000, 0).read(),
            _ => common::options(10_000, 0).permits(2),
        };
        guards.push(locks.acquire_with(&key, &options).await.unwrap());
    }
    assert_eq!(owners.len(), 3, "the keys span every master");
    let listed = locks.list("acct:*").await.unwrap();
    assert_eq!(listed.len(), 30);
    let seen = locks.inspect("acct:1").await.unwrap();
    assert_eq!(seen.kind, Some(LockKind::Read));
    assert!(seen.holders[0].fencing_token.is_some());
    assert!(locks.force_release("acct:2").await.unwrap());
    assert_eq!(locks.list("acct:*").await.unwrap().len(), 29);
}

#[cfg(feature = "sentinel")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_sentinel_the_named_master_is_inspected_and_listed() {
    let setup = redlock::testing::RedisSentinel::spawn(1).unwrap();
    let locks = LockManager::builder_sentinel(setup.sentinel_urls(), setup.master_name())
        .holder_name("sentinel-1")
        .build()
        .unwrap();
    let guard = locks
        .acquire_with("nightly", &common::options(10_000, 0).permits(2))
        .await
        .unwrap();
    let listed = locks.list("*").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].holders[0].name, "sentinel-1");
    assert_eq!(
        listed[0].holders[0].fencing_token,
        Some(guard.fencing_token())
    );
    assert!(locks.force_release("nightly").await.unwrap());
    assert!(locks.list("*").await.unwrap().is_empty());
}
