//! A manager works from every runtime of the process: connections opened on one runtime never
//! hold up another, a runtime that goes idle or is dropped costs nothing, and outside any tokio
//! runtime a call fails with a typed error instead of a panic.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use redlock::testing::RedisServer;
use redlock::{distributed_lock, LockError, LockManager};

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A lock cycle, a contended hand-off over release notices, and a locked call.
async fn exercise(locks: &LockManager, server: &RedisServer, key: &str) {
    let options = common::options(10_000, 0);
    let guard = locks.acquire_with(key, &options).await.expect("acquire");
    // A waiter in a task of this runtime subscribes to the key's notices and gets the lock
    // when it is released.
    let waiter = tokio::spawn({
        let locks = locks.clone();
        let key = key.to_owned();
        async move {
            locks
                .acquire_with(&key, &common::options(10_000, 60_000))
                .await
        }
    });
    let redis_key = format!("lock:{key}");
    common::until(common::PATIENCE, "the waiter to subscribe", || {
        server
            .command(&["PUBSUB", "NUMSUB", &redis_key])
            .unwrap()
            .ends_with('1')
    })
    .await;
    guard.release().await.expect("release");
    let next = common::within(waiter).await.unwrap().expect("handed over");
    next.release().await.expect("release");
    let token = locks
        .with_lock(key, &options, |guard| async move { guard.fencing_token() })
        .await
        .expect("locked call");
    assert!(token >= 3, "three acquisitions so far: {token}");
}

#[test]
fn a_manager_first_used_on_a_runtime_that_goes_idle_works_from_another() {
    let server = RedisServer::spawn().unwrap();
    let locks = LockManager::builder(server.url())
        .operation_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    // Start-up work on a current-thread runtime, which then stays alive but idle.
    let start_up = current_thread();
    start_up.block_on(common::within(exercise(&locks, &server, "first")));
    // The application's own runtime, while the first one is not driven.
    let application = multi_thread();
    application.block_on(common::within(exercise(&locks, &server, "second")));
    // And a second current-thread runtime (a runtime kept for blocking work, say).
    current_thread().block_on(common::within(exercise(&locks, &server, "third")));
    // The first one still works when driven again.
    start_up.block_on(common::within(exercise(&locks, &server, "fourth")));
}

#[distributed_lock(key = "global:<n>", ttl = "5s", guard = lock)]
async fn with_the_global_manager(n: u32) -> Result<u64, LockError> {
    Ok(lock.fencing_token())
}

#[test]
fn the_global_manager_keeps_working_across_runtimes_created_and_dropped_one_after_another() {
    let server = RedisServer::spawn().unwrap();
    redlock::install(
        LockManager::builder(server.url())
            .operation_timeout(Duration::from_millis(500))
            .build()
            .unwrap(),
    )
    .expect("the only install of this test binary");
    // As `#[tokio::test]`s do: each its own runtime, dropped at its end.
    let mut tokens = Vec::new();
    for round in 0..4u32 {
        let runtime = if round.is_multiple_of(2) {
            current_thread()
        } else {
            multi_thread()
        };
        let token = runtime
            .block_on(common::within(with_the_global_manager(1)))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        tokens.push(token);
        drop(runtime);
    }
    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "{tokens:?}"
    );
}

/// A minimal executor that is not tokio: polls `future` on this thread until it is ready.
fn block_on_without_tokio<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

#[test]
fn outside_a_tokio_runtime_calls_fail_with_a_config_error_instead_of_panicking() {
    let server = RedisServer::spawn().unwrap();
    let locks = LockManager::new(&server.url()).unwrap();
    let options = common::options(5_000, 0);
    let error = block_on_without_tokio(locks.acquire_with("outside", &options)).unwrap_err();
    assert!(
        matches!(&error, LockError::Config(message) if message.contains("outside a tokio runtime")),
        "{error:?}"
    );
    let error =
        block_on_without_tokio(locks.with_lock("outside", &options, |_| async {})).unwrap_err();
    assert!(matches!(error, LockError::Config(_)), "{error:?}");
    let error = block_on_without_tokio(locks.ping()).unwrap_err();
    assert!(matches!(error, LockError::Config(_)), "{error:?}");
}

#[test]
fn a_connection_attempt_stalled_on_an_idle_runtime_does_not_hold_up_another_runtime() {
    let server = RedisServer::spawn().unwrap();
    let locks = LockManager::builder(server.url())
        .operation_timeout(Duration::from_millis(500))
        .connections(1)
        .build()
        .unwrap();
    // A task of the start-up runtime starts connecting while the server is frozen, and the
    // runtime goes idle with the attempt under way.
    server.pause().unwrap();
    let start_up = common::runtime_left_idle_while_locking(&locks);
    server.resume().unwrap();
    // Another runtime connects on its own, not behind the stalled attempt.
    let application = multi_thread();
    let guard = application
        .block_on(common::within(
            locks.acquire_with("free", &common::options(5_000, 0)),
        ))
        .expect("acquired from the second runtime");
    application.block_on(guard.release()).unwrap();
    drop(start_up);
}

/// Waiters of one manager on two runtimes listen each on a connection of its own runtime (so a
/// notice is read where its waiter runs) and each hears the hand-off meant for it: both get
/// the lock in turn, long before their own next attempt, which is 20 s away.
#[test]
fn waiters_on_two_runtimes_each_hear_their_hand_off_on_their_own_runtime() {
    let server = RedisServer::spawn().unwrap();
    let locks = LockManager::builder(server.url())
        .backoff(Duration::from_millis(10), Duration::from_secs(20))
        .build()
        .unwrap();
    let holder = current_thread();
    let guard = holder
        .block_on(locks.acquire_with("shared", &common::options(60_000, 0)))
        .unwrap();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let locks = locks.clone();
            std::thread::spawn(move || {
                current_thread().block_on(async move {
                    let options = common::options(10_000, 60_000);
                    let guard = locks.acquire_with("shared", &options).await?;
                    let acquired = Instant::now();
                    guard.release().await?;
                    Ok::<_, LockError>(acquired)
                })
            })
        })
        .collect();
    holder.block_on(common::until(
        common::PATIENCE,
        "both waiters in line, each naming its runtime's channel",
        || {
            let subscribed = server
                .command(&["PUBSUB", "NUMSUB", "lock:shared"])
                .unwrap();
            let places = server
                .command(&["HVALS", "redlock:fence:waiters:lock:shared"])
                .unwrap();
            let mut channels: Vec<&str> = places
                .lines()
                .filter_map(|place| place.split(' ').nth(3))
                .filter(|channel| !channel.is_empty())
                .collect();
            channels.dedup();
            subscribed.ends_with("\n2") && channels.len() == 2
        },
    ));
    let released = Instant::now();
    holder.block_on(guard.release()).unwrap();
    for waiter in waiters {
        let acquired = waiter.join().unwrap().expect("the waiter gets the lock");
        let after = acquired.duration_since(released);
        assert!(
            after < Duration::from_secs(10),
            "told {after:?} after the release"
        );
    }
}

/// Clients of `server` subscribed to a channel (`CLIENT LIST`'s `sub=`).
fn subscribed_clients(server: &RedisServer) -> usize {
    server
        .command(&["CLIENT", "LIST"])
        .unwrap()
        .lines()
        .filter(|client| {
            client
                .split(' ')
                .any(|field| field.strip_prefix("sub=").is_some_and(|n| n != "0"))
        })
        .count()
}

/// Each runtime whose tasks wait has a pub/sub connection of its own; a runtime that is dropped
/// takes its connection along, so runtimes made and dropped one after another (as
/// `#[tokio::test]`s do) never pile connections up on the server.
#[test]
fn the_pub_sub_connection_of_a_dropped_runtime_goes_with_it() {
    let server = RedisServer::spawn().unwrap();
    let locks = LockManager::builder(server.url())
        .operation_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    for round in 0..4 {
        let runtime = if round % 2 == 0 {
            current_thread()
        } else {
            multi_thread()
        };
        runtime.block_on(common::within(exercise(
            &locks,
            &server,
            &format!("round:{round}"),
        )));
        // This round's runtime listens, on one connection.
        assert_eq!(subscribed_clients(&server), 1, "round {round}");
        drop(runtime);
        let checker = current_thread();
        checker.block_on(common::until(
            common::PATIENCE,
            "the dropped runtime's pub/sub connection to close",
            || subscribed_clients(&server) == 0,
        ));
    }
}
