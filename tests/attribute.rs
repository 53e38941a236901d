//! `#[distributed_lock]` end to end, against a real `redis-server` per test.
//!
//! Every locked function takes its manager as a parameter (`client = locks`), so that each test
//! has a server of its own; `tests/runtimes.rs` uses the process-global manager.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use redlock::testing::RedisServer;
use redlock::{distributed_lock, LockError, LockKind, LockManager};
use tokio::sync::oneshot;

struct Setup {
    server: RedisServer,
    locks: LockManager,
    redis: MultiplexedConnection,
}

async fn setup() -> Setup {
    let server = common::server();
    let locks = LockManager::new(&server.url()).expect("lock manager");
    let redis = common::connect(&server.url()).await;
    Setup {
        server,
        locks,
        redis,
    }
}

/// Takes `hold:<name>` and keeps it until `release` fires.
#[distributed_lock(key = "hold:<name>", ttl = "10s", client = locks)]
async fn hold(
    locks: LockManager,
    name: &'static str,
    entered: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
) -> Result<(), LockError> {
    let _ = entered.send(());
    let _ = release.await;
    Ok(())
}

/// A task holding `hold:<name>` until the returned sender fires; the handle ends after release.
async fn held(
    locks: &LockManager,
    name: &'static str,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), LockError>>,
) {
    let (entered, entered_rx) = oneshot::channel();
    let (release, release_rx) = oneshot::channel();
    let task = tokio::spawn(hold(locks.clone(), name, entered, release_rx));
    common::within(entered_rx).await.expect("holder entered");
    (release, task)
}

#[distributed_lock(key = "hold:<name>", wait = "0s", client = locks)]
async fn try_once(locks: &LockManager, name: &str) -> Result<&'static str, LockError> {
    Ok("ran")
}

/// Non-atomic read-modify-write: only the lock keeps it exact.
#[distributed_lock(key = "counter:<name>", ttl = "10s", wait = "60s", client = locks)]
async fn increment(
    locks: LockManager,
    mut redis: MultiplexedConnection,
    name: &'static str,
) -> anyhow::Result<()> {
    let value: Option<i64> = redis.get(name).await?;
    tokio::task::yield_now().await;
    redis.set::<_, _, ()>(name, value.unwrap_or(0) + 1).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_key_callers_run_one_at_a_time() {
    let Setup {
        server,
        locks,
        redis,
    } = setup().await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (locks, redis) = (locks.clone(), redis.clone());
            tokio::spawn(async move {
                for _ in 0..20 {
                    increment(locks.clone(), redis.clone(), "shared").await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for increments in common::joined(tasks).await {
        increments.expect("increments");
    }
    assert_eq!(server.command(&["GET", "shared"]).unwrap(), "320");
}

#[tokio::test]
async fn different_keys_do_not_block_each_other() {
    let Setup {
        server: _server,
        locks,
        ..
    } = setup().await;
    let (release, holder) = held(&locks, "a").await;
    assert_eq!(common::within(try_once(&locks, "b")).await.unwrap(), "ran");
    release.send(()).unwrap();
    common::within(holder).await.unwrap().unwrap();
}

#[tokio::test]
async fn busy_lock_with_zero_wait_returns_timeout() {
    let Setup {
        server: _server,
        locks,
        ..
    } = setup().await;
    let (release, holder) = held(&locks, "busy").await;
    let error = common::within(try_once(&locks, "busy")).await.unwrap_err();
    assert!(
        matches!(&error, LockError::Timeout { key, .. } if key == "hold:busy"),
        "{error:?}"
    );
    release.send(()).unwrap();
    common::within(holder).await.unwrap().unwrap();
    assert_eq!(
        common::within(try_once(&locks, "busy")).await.unwrap(),
        "ran"
    );
}

#[distributed_lock(key = "hold:<name>", on_busy = "skip", client = locks)]
async fn job(locks: &LockManager, name: &str, runs: &AtomicUsize) -> Option<usize> {
    Some(runs.fetch_add(1, Ordering::SeqCst) + 1)
}

#[distributed_lock(key = "hold:<name>", on_busy = "skip", client = locks)]
async fn fallible_job(locks: &LockManager, name: &str) -> Result<Option<&'static str>, LockError> {
    Ok(Some("ran"))
}

#[tokio::test]
async fn skip_mode_returns_none_when_busy_and_runs_when_free() {
    let Setup {
        server: _server,
        locks,
        ..
    } = setup().await;
    let runs = AtomicUsize::new(0);
    let (release, holder) = held(&locks, "nightly").await;
    assert_eq!(common::within(job(&locks, "nightly", &runs)).await, None);
    assert_eq!(
        common::within(fallible_job(&locks, "nightly"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    release.send(()).unwrap();
    common::within(holder).await.unwrap().unwrap();
    assert_eq!(common::within(job(&locks, "nightly", &runs)).await, Some(1));
    assert_eq!(
        common::within(fallible_job(&locks, "nightly"))
            .await
            .unwrap(),
        Some("ran")
    );
}

#[distributed_lock(keys = ["account:<from>", "account:<to>"], ttl = "10s", wait = "60s", client = locks)]
async fn transfer(
    locks: &LockManager,
    redis: &mut MultiplexedConnection,
    from: &str,
    to: &str,
    amount: i64,
) -> anyhow::Result<()> {
    let source: i64 = redis.get(format!("balance:{from}")).await?;
    let target: i64 = redis.get(format!("balance:{to}")).await?;
    tokio::task::yield_now().await;
    redis
        .set::<_, _, ()>(format!("balance:{from}"), source - amount)
        .await?;
    redis
        .set::<_, _, ()>(format!("balance:{to}"), target + amount)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opposite_transfers_never_deadlock_and_balance_exactly() {
    let Setup {
        server,
        locks,
        redis,
    } = setup().await;
    server.command(&["SET", "balance:a", "1000"]).unwrap();
    server.command(&["SET", "balance:b", "1000"]).unwrap();
    // 200 transfers: two tasks move 3 from a to b, two move 2 from b to a, 50 times each.
    let directions = [("a", "b", 3), ("b", "a", 2), ("a", "b", 3), ("b", "a", 2)];
    let tasks: Vec<_> = directions
        .into_iter()
        .map(|(from, to, amount)| {
            let (locks, mut redis) = (locks.clone(), redis.clone());
            tokio::spawn(async move {
                for _ in 0..50 {
                    transfer(&locks, &mut redis, from, to, amount).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for transfers in common::joined(tasks).await {
        transfers.expect("transfers");
    }
    assert_eq!(server.command(&["GET", "balance:a"]).unwrap(), "900");
    assert_eq!(server.command(&["GET", "balance:b"]).unwrap(), "1100");
}

#[distributed_lock(key = "order:<id>", ttl = "10s", client = locks, guard = lock)]
async fn outer(
    locks: &LockManager,
    redis: &mut MultiplexedConnection,
    id: u64,
) -> anyhow::Result<(u64, u64, bool)> {
    // `wait = "0s"` on the inner call: without reentrancy it would fail at once.
    let inner_token = inner(locks, id).await?;
    let still_held: bool = redis.exists(format!("lock:order:{id}")).await?;
    Ok((lock.fencing_token(), inner_token, still_held))
}

#[distributed_lock(key = "order:<id>", wait = "0s", client = locks, guard = lock)]
async fn inner(locks: &LockManager, id: u64) -> Result<u64, LockError> {
    Ok(lock.fencing_token())
}

#[tokio::test]
async fn nested_call_on_held_key_reenters_and_only_outer_releases() {
    let Setup {
        server,
        locks,
        mut redis,
    } = setup().await;
    let (outer_token, inner_token, held_after_inner) =
        common::within(outer(&locks, &mut redis, 7)).await.unwrap();
    assert_eq!(inner_token, outer_token, "the inner call reuses the lock");
    assert!(held_after_inner, "the inner call must not release");
    assert_eq!(server.command(&["EXISTS", "lock:order:7"]).unwrap(), "0");
}

/// Holds `pair:<a>`, then calls `widen`, which locks `pair:<a>` and `pair:<b>`.
#[distributed_lock(key = "pair:<a>", ttl = "10s", client = locks, guard = lock)]
async fn narrow(
    locks: &LockManager,
    redis: &mut MultiplexedConnection,
    a: &str,
    b: &str,
) -> anyhow::Result<(u64, Widened, Vec<String>)> {
    let widened = widen(locks, redis, a, b).await?;
    let keys: Vec<String> = redis.keys("lock:pair:*").await?;
    Ok((lock.fencing_token(), widened, keys))
}

/// What `widen` saw of its two locks, and what `narrow_again` saw inside it.
#[derive(Debug)]
struct Widened {
    keys: Vec<String>,
    tokens: Vec<u64>,
    innermost_token: u64,
    held_inside: Vec<String>,
}

/// Nested in `narrow`: `pair:<a>` is held around it, `pair:<b>` is not.
#[distributed_lock(keys = ["pair:<b>", "pair:<a>"], ttl = "10s", wait = "0s", client = locks, guard = set)]
async fn widen(
    locks: &LockManager,
    redis: &mut MultiplexedConnection,
    a: &str,
    b: &str,
) -> anyhow::Result<Widened> {
    let innermost_token = narrow_again(locks, b).await?;
    let mut held_inside: Vec<String> = redis.keys("lock:pair:*").await?;
    held_inside.sort();
    Ok(Widened {
        keys: set.keys().map(str::to_owned).collect(),
        tokens: set.iter().map(|guard| guard.fencing_token()).collect(),
        innermost_token,
        held_inside,
    })
}

/// Nested in `widen`: `pair:<b>` is held by `widen` itself.
#[distributed_lock(key = "pair:<b>", wait = "0s", client = locks, guard = lock)]
async fn narrow_again(locks: &LockManager, b: &str) -> Result<u64, LockError> {
    Ok(lock.fencing_token())
}

#[tokio::test]
async fn nested_call_takes_only_the_keys_not_held_around_it_and_releases_only_those() {
    let Setup {
        server,
        locks,
        mut redis,
    } = setup().await;
    let (outer_token, widened, left_after_widen) =
        common::within(narrow(&locks, &mut redis, "x", "y"))
            .await
            .unwrap();
    assert_eq!(widened.keys, ["pair:x", "pair:y"], "sorted, both keys");
    assert_eq!(
        widened.tokens[0], outer_token,
        "`pair:x` is the enclosing call's lock, not taken again"
    );
    assert_ne!(widened.tokens[1], outer_token);
    assert_eq!(
        widened.innermost_token, widened.tokens[1],
        "the innermost call reenters the lock its caller took"
    );
    assert_eq!(widened.held_inside, ["lock:pair:x", "lock:pair:y"]);
    assert_eq!(
        left_after_widen,
        ["lock:pair:x"],
        "the nested call releases the key it took, and only that one"
    );
    assert_eq!(server.command(&["EXISTS", "lock:pair:x"]).unwrap(), "0");
}

#[distributed_lock(key = "fence:<id>", client = locks, guard = lock)]
async fn fenced(locks: &LockManager, id: u64) -> Result<(String, u64), LockError> {
    Ok((lock.key().to_owned(), lock.fencing_token()))
}

#[tokio::test]
async fn guard_exposes_a_fencing_token_that_increases_between_calls() {
    let Setup {
        server: _server,
        locks,
        ..
    } = setup().await;
    let (key, first) = common::within(fenced(&locks, 3)).await.unwrap();
    let (_, second) = common::within(fenced(&locks, 3)).await.unwrap();
    assert_eq!(key, "fence:3");
    assert!(second > first, "{second} > {first}");
}

#[distributed_lock(key = "lease:<id>", ttl = "300ms", client = locks)]
async fn long_job(
    locks: &LockManager,
    id: u64,
    entered: oneshot::Sender<()>,
    finished: &AtomicBool,
) -> Result<(), LockError> {
    let _ = entered.send(());
    tokio::time::sleep(common::PATIENCE).await;
    finished.store(true, Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn lost_lock_aborts_the_body_with_lost() {
    let Setup { server, locks, .. } = setup().await;
    let finished = AtomicBool::new(false);
    let (entered, entered_rx) = oneshot::channel();
    let (result, ()) = common::within(async {
        tokio::join!(long_job(&locks, 9, entered, &finished), async {
            entered_rx.await.unwrap();
            assert_eq!(server.command(&["DEL", "lock:lease:9"]).unwrap(), "1");
        })
    })
    .await;
    let error = result.unwrap_err();
    assert!(
        matches!(&error, LockError::Lost { key } if key == "lease:9"),
        "{error:?}"
    );
    assert!(!finished.load(Ordering::SeqCst), "the body was stopped");
}

#[derive(Debug)]
enum AppError {
    Lock(LockError),
    Rejected(u64),
}

impl From<LockError> for AppError {
    fn from(error: LockError) -> Self {
        AppError::Lock(error)
    }
}

#[distributed_lock(key = "hold:<name>", client = locks)]
async fn reject(locks: &LockManager, name: &str, amount: u64) -> Result<(), AppError> {
    if amount > 100 {
        return Err(AppError::Rejected(amount));
    }
    Ok(())
}

#[tokio::test]
async fn body_error_is_returned_as_is_and_the_lock_released() {
    let Setup { server, locks, .. } = setup().await;
    let error = common::within(reject(&locks, "limit", 500))
        .await
        .unwrap_err();
    assert!(matches!(error, AppError::Rejected(500)), "{error:?}");
    assert_eq!(server.command(&["EXISTS", "lock:hold:limit"]).unwrap(), "0");
    assert_eq!(
        common::within(try_once(&locks, "limit")).await.unwrap(),
        "ran"
    );
}

#[tokio::test]
async fn busy_lock_converts_into_the_function_error_type() {
    let Setup {
        server: _server,
        locks,
        ..
    } = setup().await;
    let (release, holder) = held(&locks, "limit").await;
    let error = common::within(reject(&locks, "limit", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, AppError::Lock(lock) if lock.is_timeout()),
        "{error:?}"
    );
    release.send(()).unwrap();
    common::within(holder).await.unwrap().unwrap();
}

/// No `ttl`, `wait` or `renew` written: all three come from the manager.
#[distributed_lock(key = "hold:<name>", client = locks, guard = lock)]
async fn with_manager_settings(
    locks: &LockManager,
    name: &str,
) -> Result<std::time::Duration, LockError> {
    Ok(lock.ttl())
}

#[tokio::test]
async fn builder_ttl_and_wait_reach_attributed_functions() {
    let server = common::server();
    let locks = LockManager::builder(server.url())
        .ttl(std::time::Duration::from_secs(7))
        .wait(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    assert_eq!(
        common::within(with_manager_settings(&locks, "defaults"))
            .await
            .unwrap(),
        std::time::Duration::from_secs(7),
        "the builder's ttl, not a default written into the expansion"
    );
    // Busy at first: with the builder's wait the call waits for the holder instead of
    // giving up at once.
    let (release, holder) = held(&locks, "defaults").await;
    let call = tokio::spawn({
        let locks = locks.clone();
        async move { with_manager_settings(&locks, "defaults").await }
    });
    common::until(common::PATIENCE, "the call to wait", || {
        server
            .command(&["PUBSUB", "NUMSUB", "lock:hold:defaults"])
            .unwrap()
            .ends_with('1')
    })
    .await;
    release.send(()).unwrap();
    common::within(holder).await.unwrap().unwrap();
    let ttl = common::within(call).await.unwrap().unwrap();
    assert_eq!(ttl, std::time::Duration::from_secs(7));
}

#[distributed_lock(key = "order:<id>", wait = "30s", client = locks, guard = lock)]
async fn patient_inner(locks: &LockManager, id: u64) -> Result<u64, LockError> {
    Ok(lock.fencing_token())
}

#[tokio::test]
async fn attributed_call_inside_with_lock_shares_its_lock() {
    let Setup { server, locks, .. } = setup().await;
    let options = common::options(10_000, 0);
    let (outer, inner) = common::within(locks.with_lock("order:5", &options, |guard| {
        let locks = locks.clone();
        async move { (guard.fencing_token(), patient_inner(&locks, 5).await) }
    }))
    .await
    .unwrap();
    assert_eq!(
        inner.unwrap(),
        outer,
        "the nested call shared the outer lock"
    );
    assert_eq!(server.command(&["EXISTS", "lock:order:5"]).unwrap(), "0");
}

#[tokio::test]
async fn with_lock_inside_an_attributed_call_shares_its_lock() {
    let Setup { server, locks, .. } = setup().await;
    let (entered, _entered_rx) = oneshot::channel();
    let (release, release_rx) = oneshot::channel::<()>();
    drop(release);
    // `outer` holds `order:<id>` and calls `inner`; here the nesting goes the other way round:
    // an attributed call whose body calls `with_lock` on the same key.
    let tokens = common::within(outer_with_lock(&locks, 6, entered, release_rx))
        .await
        .unwrap();
    assert_eq!(tokens.0, tokens.1, "with_lock shared the attribute's lock");
    assert_eq!(server.command(&["EXISTS", "lock:order:6"]).unwrap(), "0");
}

#[distributed_lock(key = "order:<id>", ttl = "10s", client = locks, guard = lock)]
async fn outer_with_lock(
    locks: &LockManager,
    id: u64,
    entered: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
) -> Result<(u64, u64), LockError> {
    let _ = entered.send(());
    let _ = release.await;
    let options = redlock::LockOptions::inherit().wait(std::time::Duration::from_secs(30));
    let inner = locks
        .with_lock(&format!("order:{id}"), &options, |guard| async move {
            guard.fencing_token()
        })
        .await?;
    Ok((lock.fencing_token(), inner))
}

#[tokio::test]
async fn locked_call_under_a_plain_guard_of_the_same_task_fails_at_once() {
    let Setup { server, locks, .. } = setup().await;
    let guard = locks
        .acquire_with("order:7", &common::options(10_000, 0))
        .await
        .unwrap();
    // Its wait is 30 s: it fails at once instead of waiting for its own task.
    let error = common::within(patient_inner(&locks, 7)).await.unwrap_err();
    assert!(
        matches!(&error, LockError::HeldByThisTask { key } if key == "order:7"),
        "{error:?}"
    );
    assert!(error.to_string().contains("this task"), "{error}");
    let error =
        common::within(locks.with_lock("order:7", &common::options(10_000, 30_000), |_| async {}))
            .await
            .unwrap_err();
    assert!(
        matches!(error, LockError::HeldByThisTask { .. }),
        "{error:?}"
    );
    // The guard is untouched and still releases its own lock.
    assert_eq!(server.command(&["EXISTS", "lock:order:7"]).unwrap(), "1");
    guard.release().await.unwrap();

    // Held by a plain guard of another task: an ordinary busy lock, waited for.
    let guard = locks
        .acquire_with("order:7", &common::options(10_000, 0))
        .await
        .unwrap();
    let call = tokio::spawn({
        let locks = locks.clone();
        async move { patient_inner(&locks, 7).await }
    });
    common::until(common::PATIENCE, "the other task to wait", || {
        server
            .command(&["PUBSUB", "NUMSUB", "lock:order:7"])
            .unwrap()
            .ends_with('1')
    })
    .await;
    guard.release().await.unwrap();
    common::within(call).await.unwrap().unwrap();
}

#[distributed_lock(key = "lease:<id>", ttl = "200ms", renew = false, client = locks, guard = lock)]
async fn unrenewed_job(locks: &LockManager, id: u64) -> Result<&'static str, LockError> {
    common::until(common::PATIENCE, "the lease to run out", || !lock.is_held()).await;
    // Still running after the lease: the body is not stopped.
    tokio::task::yield_now().await;
    Ok("finished")
}

#[tokio::test]
async fn without_renewal_the_body_runs_past_its_lease_and_the_lapse_is_logged() {
    let Setup {
        server: _server,
        locks,
        ..
    } = setup().await;
    let logs = common::Logs::capture();
    let result = common::within(unrenewed_job(&locks, 3)).await;
    assert_eq!(result.unwrap(), "finished");
    common::until(common::PATIENCE, "the warning", || {
        logs.contains("lease ran out while the body still runs")
    })
    .await;
    assert!(logs.contains("lease:3"), "{}", logs.text());
}

/// How many run inside a section at once, and the most seen.
#[derive(Default)]
struct Inside {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Inside {
    async fn stay(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[distributed_lock(key = "doc:<name>", mode = "read", ttl = "10s", wait = "30s", client = locks, guard = lock)]
async fn read_doc(locks: &LockManager, name: &str, inside: &Inside) -> Result<LockKind, LockError> {
    inside.stay().await;
    Ok(lock.kind())
}

#[distributed_lock(key = "doc:<name>", mode = "write", ttl = "10s", wait = "30s", client = locks)]
async fn write_doc(
    locks: &LockManager,
    name: &str,
    inside: &Inside,
) -> Result<LockKind, LockError> {
    inside.stay().await;
    // A read inside the write shares it.
    read_doc(locks, name, &Inside::default()).await
}

#[distributed_lock(key = "pool:<name>", permits = 2, ttl = "10s", wait = "30s", client = locks)]
async fn pooled(locks: &LockManager, name: &str, inside: &Inside) -> Result<(), LockError> {
    inside.stay().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_and_write_modes_and_permits_through_the_attribute() {
    let setup = setup().await;
    let locks = setup.locks.clone();
    let (readers, writers, users) = (
        std::sync::Arc::new(Inside::default()),
        std::sync::Arc::new(Inside::default()),
        std::sync::Arc::new(Inside::default()),
    );
    let reads = (0..4).map(|_| {
        let (locks, readers) = (locks.clone(), readers.clone());
        tokio::spawn(async move { read_doc(&locks, "a", &readers).await })
    });
    for kind in common::joined(reads.collect()).await {
        assert_eq!(kind.expect("read"), LockKind::Read);
    }
    assert!(readers.most.load(Ordering::SeqCst) >= 2, "readers share");

    let writes = (0..3).map(|_| {
        let (locks, writers) = (locks.clone(), writers.clone());
        tokio::spawn(async move { write_doc(&locks, "a", &writers).await })
    });
    for kind in common::joined(writes.collect()).await {
        let kind = kind.expect("write");
        assert_eq!(kind, LockKind::Write, "the nested read shares the write");
    }
    assert_eq!(writers.most.load(Ordering::SeqCst), 1, "a writer is alone");

    let uses = (0..6).map(|_| {
        let (locks, users) = (locks.clone(), users.clone());
        tokio::spawn(async move { pooled(&locks, "p", &users).await })
    });
    for used in common::joined(uses.collect()).await {
        used.expect("a permit");
    }
    assert_eq!(
        users.most.load(Ordering::SeqCst),
        2,
        "two permits, both used"
    );
}
