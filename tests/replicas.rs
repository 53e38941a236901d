//! Replica acknowledgement (`LockManagerBuilder::replica_acks`): acquires and renewals wait for
//! a real replica, fewer acknowledgements give the lock back or lose it, and a write waiting for
//! replicas holds up no other command.

mod common;

use std::time::Duration;

use redlock::testing::RedisServer;
use redlock::{LockError, LockManager};
use tokio::sync::oneshot;

/// One connection of each kind: a command queued behind a `WAIT` on a shared connection would
/// show.
fn acknowledged(primary: &RedisServer) -> LockManager {
    LockManager::builder(primary.url())
        .connections(1)
        .operation_timeout(Duration::from_secs(3))
        .replica_acks(1, Duration::from_millis(800))
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_acquire_returns_once_the_replica_has_the_lock() {
    let primary = common::server();
    let replica = RedisServer::spawn_replica_of(&primary).unwrap();
    let locks = acknowledged(&primary);
    let guard = common::within(locks.acquire_with("paid", &common::options(10_000, 0)))
        .await
        .unwrap();
    // Acknowledged: already on the replica, with no waiting here.
    let on_replica = replica.command(&["GET", "lock:paid"]).unwrap();
    assert_eq!(
        on_replica.find('|'),
        Some(48),
        "the holder's token: {on_replica:?}"
    );
    guard.extend().await.unwrap();
    guard.release().await.unwrap();
}

#[tokio::test]
async fn with_the_replica_stopped_an_acquire_is_given_back_and_not_replicated() {
    let primary = common::server();
    let mut replica = RedisServer::spawn_replica_of(&primary).unwrap();
    let locks = acknowledged(&primary);
    replica.stop().unwrap();
    for wait_ms in [0, 1_000] {
        let error = common::within(locks.acquire_with("paid", &common::options(10_000, wait_ms)))
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                LockError::NotReplicated {
                    acknowledged: 0,
                    required: 1,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("replicas"), "{error}");
        assert_eq!(
            primary.command(&["EXISTS", "lock:paid"]).unwrap(),
            "0",
            "the lock taken on the primary was given back"
        );
    }
    // Once the replica is back and in sync, locks are granted again.
    replica.restart().unwrap();
    common::until(common::PATIENCE, "the replica to sync", || {
        replica
            .command(&["INFO", "replication"])
            .unwrap()
            .contains("master_link_status:up")
    })
    .await;
    let guard = common::within(locks.acquire_with("paid", &common::options(10_000, 5_000)))
        .await
        .unwrap();
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_renewal_the_replica_does_not_acknowledge_loses_the_lock() {
    let primary = common::server();
    let mut replica = RedisServer::spawn_replica_of(&primary).unwrap();
    let locks = acknowledged(&primary);
    let (entered, entered_rx) = oneshot::channel();
    let options = common::options(1_500, 0);
    let body = locks.with_lock("renewed", &options, |_| async move {
        let _ = entered.send(());
        std::future::pending::<()>().await
    });
    let (outcome, ()) = common::within(async {
        tokio::join!(body, async {
            entered_rx.await.unwrap();
            replica.stop().unwrap();
        })
    })
    .await;
    let error = outcome.unwrap_err();
    assert!(
        matches!(&error, LockError::Lost { key } if key == "renewed"),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_off_counts_only_once_the_replica_acknowledges_it() {
    let primary = common::server();
    let replica = RedisServer::spawn_replica_of(&primary).unwrap();
    // Two managers, as two processes: the hand-off comes from the release script on the
    // primary, which waits for no replica.
    let (holder, waiter) = (acknowledged(&primary), acknowledged(&primary));
    let held = common::within(holder.acquire_with("paid", &common::options(10_000, 0)))
        .await
        .unwrap();
    let waiting = tokio::spawn(async move {
        waiter
            .acquire_with("paid", &common::options(10_000, 2_500))
            .await
    });
    let start = std::time::Instant::now();
    while holder.inspect("paid").await.unwrap().waiting != 1 {
        assert!(
            start.elapsed() < common::PATIENCE,
            "the waiter took no place in line"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The replica stops acknowledging; the release hands the lock to the waiter on the
    // primary alone.
    replica.pause().unwrap();
    held.release().await.unwrap();
    let outcome = common::within(waiting).await.unwrap();
    replica.resume().unwrap();
    let error = outcome.expect_err("a hand-off no replica acknowledged was used");
    assert!(
        matches!(
            error,
            LockError::NotReplicated {
                acknowledged: 0,
                ..
            }
        ),
        "{error:?}"
    );
    // Acknowledged again, the lock is granted.
    let guard = common::within(holder.acquire_with("paid", &common::options(10_000, 5_000)))
        .await
        .unwrap();
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waiting_for_replicas_does_not_stall_other_commands() {
    let primary = common::server();
    let mut replica = RedisServer::spawn_replica_of(&primary).unwrap();
    let locks = acknowledged(&primary);
    let held = common::within(locks.acquire_with("other", &common::options(10_000, 0)))
        .await
        .unwrap();
    replica.stop().unwrap();
    // An acquire now waits for the replica, up to its 800 ms, in a blocked WAIT.
    let waiting = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .acquire_with("blocked", &common::options(10_000, 0))
                .await
        }
    });
    common::until(common::PATIENCE, "the WAIT to block", || {
        primary
            .command(&["INFO", "clients"])
            .unwrap()
            .lines()
            .any(|line| line.starts_with("blocked_clients:") && !line.ends_with(":0"))
    })
    .await;
    // Meanwhile the other key's release and a ping go through.
    held.release().await.unwrap();
    locks.ping().await.unwrap();
    assert!(
        !waiting.is_finished(),
        "release and ping went through while the acquire still waited for the replica"
    );
    let error = common::within(waiting).await.unwrap().unwrap_err();
    assert!(
        matches!(error, LockError::NotReplicated { .. }),
        "{error:?}"
    );
}

#[test]
fn replica_acknowledgement_settings_are_checked() {
    let url = "redis://127.0.0.1:1";
    for (replicas, timeout) in [(0, 100), (1, 0), (1, 5_000)] {
        let error = LockManager::builder(url)
            .operation_timeout(Duration::from_secs(2))
            .replica_acks(replicas, Duration::from_millis(timeout))
            .build()
            .unwrap_err();
        assert!(matches!(error, LockError::Config(_)), "{error:?}");
    }
}
