//! The lock family: read-write locks (readers share, a writer is alone, a waiting writer keeps
//! new readers out) and counting semaphores (at most N holders, each with its own lease), on one
//! server, across processes, on a cluster and, for read-write locks, on Redlock. Holders are
//! counted in Redis (a separate store server), not in one process.

mod common;
mod fault_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fault_support::{emit, setting, ChildProcess};
use redis::aio::MultiplexedConnection;
use redlock::testing::RedisServer;
use redlock::{LockError, LockKind, LockManager, LockOptions};

use common::PATIENCE;

fn read(ttl_ms: u64, wait_ms: u64) -> LockOptions {
    common::options(ttl_ms, wait_ms).read()
}

fn write(ttl_ms: u64, wait_ms: u64) -> LockOptions {
    common::options(ttl_ms, wait_ms).write()
}

fn permits(n: u32, ttl_ms: u64, wait_ms: u64) -> LockOptions {
    common::options(ttl_ms, wait_ms).permits(n)
}

/// Holders counted in a Redis store: each holder adds itself on entry and takes itself off on
/// exit; the store keeps the highest count seen, and, per kind, when readers and writers met.
struct Census {
    conn: MultiplexedConnection,
    name: String,
}

/// Enter: `INCR` the holders of `name` (and of `name:<side>`), keep the maximum; answers the
/// count after entering, and how many of the other side hold.
const ENTER: &str = r"
local n = redis.call('INCR', KEYS[1])
local mine = redis.call('INCR', KEYS[1] .. ':' .. ARGV[1])
local other = tonumber(redis.call('GET', KEYS[1] .. ':' .. ARGV[2]) or '0')
if n > tonumber(redis.call('GET', KEYS[1] .. ':max') or '0') then
    redis.call('SET', KEYS[1] .. ':max', n)
end
if mine > tonumber(redis.call('GET', KEYS[1] .. ':max:' .. ARGV[1]) or '0') then
    redis.call('SET', KEYS[1] .. ':max:' .. ARGV[1], mine)
end
if ARGV[1] == 'w' and (n > 1) then
    redis.call('INCR', KEYS[1] .. ':clashes')
end
if ARGV[1] == 'r' and other > 0 then
    redis.call('INCR', KEYS[1] .. ':clashes')
end
return n
";

impl Census {
    async fn new(store: &str, name: &str) -> Self {
        Self {
            conn: common::connect(store).await,
            name: name.to_owned(),
        }
    }

    /// A holder enters as `side` (`r` reader or permit, `w` writer); the count after it.
    async fn enter(&mut self, side: &str) -> u64 {
        let other = if side == "w" { "r" } else { "w" };
        redis::Script::new(ENTER)
            .key(&self.name)
            .arg(side)
            .arg(other)
            .invoke_async(&mut self.conn)
            .await
            .expect("census enter")
    }

    async fn exit(&mut self, side: &str) {
        let _: () = redis::pipe()
            .cmd("DECR")
            .arg(&self.name)
            .ignore()
            .cmd("DECR")
            .arg(format!("{}:{side}", self.name))
            .ignore()
            .query_async(&mut self.conn)
            .await
            .expect("census exit");
    }

    async fn get(&mut self, what: &str) -> u64 {
        let value: Option<u64> = redis::cmd("GET")
            .arg(format!("{}:{what}", self.name))
            .query_async(&mut self.conn)
            .await
            .expect("census get");
        value.unwrap_or(0)
    }
}

/// Readers hold the key together; a writer waits for them and then holds it alone.
async fn readers_share_and_a_writer_is_alone(locks: &LockManager) {
    let key = "family:rw";
    let first = locks
        .acquire_with(key, &read(10_000, 0))
        .await
        .expect("read");
    let second = locks
        .acquire_with(key, &read(10_000, 0))
        .await
        .expect("read beside read");
    assert_eq!(first.kind(), LockKind::Read);
    assert!(second.fencing_token() > first.fencing_token());
    let busy = locks
        .acquire_with(key, &write(10_000, 0))
        .await
        .unwrap_err();
    assert!(busy.is_timeout(), "a writer waits for readers: {busy}");
    first.release().await.expect("release a read share");
    let busy = locks
        .acquire_with(key, &write(10_000, 0))
        .await
        .unwrap_err();
    assert!(
        busy.is_timeout(),
        "one reader is enough to keep a writer out: {busy}"
    );
    second.release().await.expect("release the last read share");

    let writer = locks
        .acquire_with(key, &write(10_000, 0))
        .await
        .expect("write");
    assert_eq!(writer.kind(), LockKind::Write);
    for options in [read(10_000, 0), write(10_000, 0)] {
        let busy = locks.acquire_with(key, &options).await.unwrap_err();
        assert!(busy.is_timeout(), "a writer holds alone: {busy}");
    }
    // A waiting reader gets in as soon as the writer releases.
    let waiting = {
        let locks = locks.clone();
        tokio::spawn(async move { locks.acquire_with(key, &read(10_000, 20_000)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let released = Instant::now();
    writer.release().await.expect("release the writer");
    let reader = common::within(waiting)
        .await
        .unwrap()
        .expect("the waiting reader");
    assert!(released.elapsed() < Duration::from_secs(5));
    reader.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_share_a_read_write_lock_and_a_writer_holds_it_alone() {
    let server = common::server();
    let locks = LockManager::new(&server.url()).unwrap();
    readers_share_and_a_writer_is_alone(&locks).await;
}

/// Readers that keep the key read-held without a gap (each arrives while others hold) do not
/// starve a writer: once it waits, new readers wait behind it, so it gets the key when the
/// readers holding at its arrival are done. Returns how long the writer waited.
async fn a_writer_is_not_starved_by_a_stream_of_readers(
    locks: &LockManager,
    store: &str,
    key: &str,
) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for i in 0..6u64 {
        let (locks, stop, reads) = (locks.clone(), stop.clone(), reads.clone());
        let mut census = Census::new(store, key).await;
        let key = key.to_owned();
        readers.push(tokio::spawn(async move {
            // Staggered, so that the holds overlap and the key is never free of readers.
            tokio::time::sleep(Duration::from_millis(i * 15)).await;
            while !stop.load(Ordering::Relaxed) {
                let guard = locks
                    .acquire_with(&key, &read(10_000, 30_000))
                    .await
                    .expect("a reader gets in");
                census.enter("r").await;
                tokio::time::sleep(Duration::from_millis(90)).await;
                census.exit("r").await;
                guard.release().await.expect("release a read share");
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // The readers overlap before the writer comes.
    let mut census = Census::new(store, key).await;
    common::until(PATIENCE, "readers overlapping", || {
        reads.load(Ordering::Relaxed) >= 12
    })
    .await;
    assert!(census.get("max:r").await >= 2, "readers held together");
    let asked = Instant::now();
    let writer = common::within(locks.acquire_with(key, &write(10_000, 30_000)))
        .await
        .expect("the writer gets the key despite the stream of readers");
    let waited = asked.elapsed();
    assert_eq!(census.enter("w").await, 1, "the writer holds alone");
    tokio::time::sleep(Duration::from_millis(50)).await;
    census.exit("w").await;
    writer.release().await.expect("release the writer");
    stop.store(true, Ordering::Relaxed);
    common::joined(readers).await;
    assert_eq!(census.get("clashes").await, 0, "a reader met a writer");
    waited
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_waiting_behind_a_continuous_stream_of_readers_gets_the_lock() {
    let (server, store) = (common::server(), common::server());
    let locks = LockManager::new(&server.url()).unwrap();
    let waited =
        a_writer_is_not_starved_by_a_stream_of_readers(&locks, &store.url(), "family:stream").await;
    // The readers holding when it arrived hold 90 ms each; the bound is generous.
    assert!(
        waited < Duration::from_secs(5),
        "the writer waited {waited:?}"
    );
}

/// Nested locked calls of one task share what the task holds: a read inside a read or a write,
/// a permit inside a permit; a write inside a read fails at once, as does another kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_reads_share_and_a_write_inside_a_read_fails_at_once() {
    let server = common::server();
    let locks = LockManager::new(&server.url()).unwrap();
    let key = "family:nested";
    let outcome = locks
        .with_lock(key, &write(10_000, 0), |outer| {
            let locks = locks.clone();
            async move {
                let inner = locks
                    .with_lock(key, &read(10_000, 0), |inner| async move {
                        inner.fencing_token()
                    })
                    .await
                    .expect("a read inside a write shares it");
                assert_eq!(inner, outer.fencing_token());
            }
        })
        .await;
    outcome.expect("write");

    let started = Instant::now();
    let outcome = locks
        .with_lock(key, &read(10_000, 0), |outer| {
            let locks = locks.clone();
            async move {
                let shared = locks
                    .with_lock(key, &read(10_000, 0), |inner| async move {
                        inner.fencing_token()
                    })
                    .await
                    .expect("a read inside a read shares it");
                assert_eq!(shared, outer.fencing_token());
                let upgrade = locks
                    .with_lock(key, &write(10_000, 5_000), |_| async {})
                    .await
                    .unwrap_err();
                assert!(matches!(upgrade, LockError::Upgrade { .. }), "{upgrade:?}");
                assert!(upgrade
                    .to_string()
                    .contains("held for reading by this task"));
                let other = locks
                    .with_lock(key, &common::options(10_000, 5_000), |_| async {})
                    .await
                    .unwrap_err();
                assert!(matches!(other, LockError::OtherKind { .. }), "{other:?}");
            }
        })
        .await;
    outcome.expect("read");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the failures came at once, not after the 5 s wait"
    );

    let outcome = locks
        .with_lock("family:permits", &permits(2, 10_000, 0), |outer| {
            let locks = locks.clone();
            async move {
                let token = locks
                    .with_lock(
                        "family:permits",
                        &permits(2, 10_000, 0),
                        |inner| async move { inner.fencing_token() },
                    )
                    .await
                    .expect("a permit inside a permit shares it");
                assert_eq!(token, outer.fencing_token());
            }
        })
        .await;
    outcome.expect("permit");
}

/// One key is one kind of lock: asking for another kind is a clear error, and changes nothing
/// (`semaphores`: whether the manager holds semaphores).
async fn a_key_is_one_kind_of_lock(locks: &LockManager, semaphores: bool) {
    let exclusive = locks
        .acquire_with("family:one", &common::options(10_000, 0))
        .await
        .expect("exclusive");
    let mut others = vec![read(10_000, 0), write(10_000, 0)];
    if semaphores {
        others.push(permits(3, 10_000, 0));
    }
    for asked in others {
        let err = locks.acquire_with("family:one", &asked).await.unwrap_err();
        let LockError::OtherKind { found, .. } = &err else {
            panic!("not a clear error: {err:?}");
        };
        assert_eq!(*found, LockKind::Exclusive);
        assert!(
            err.to_string().contains("in use as an exclusive lock"),
            "{err}"
        );
        assert!(!err.to_string().contains("WRONGTYPE"), "{err}");
    }
    exclusive
        .release()
        .await
        .expect("the exclusive lock is untouched");

    let reader = locks
        .acquire_with("family:two", &read(10_000, 0))
        .await
        .expect("read");
    let err = locks
        .acquire_with("family:two", &common::options(10_000, 0))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("in use as a read-write lock"),
        "{err}"
    );
    if !semaphores {
        reader.release().await.expect("the read share is untouched");
        return;
    }
    let err = locks
        .acquire_with("family:two", &permits(2, 10_000, 0))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "in use as a read-write lock, so it cannot be taken as a semaphore of 2 permits"
        ),
        "{err}"
    );
    reader.release().await.expect("the read share is untouched");

    let permit = locks
        .acquire_with("family:three", &permits(3, 10_000, 0))
        .await
        .expect("permit");
    let err = locks
        .acquire_with("family:three", &permits(4, 10_000, 0))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("in use as a semaphore of 3 permits"),
        "{err}"
    );
    permit.release().await.expect("the permit is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_used_as_another_kind_of_lock_is_a_clear_error() {
    let server = common::server();
    let locks = LockManager::new(&server.url()).unwrap();
    a_key_is_one_kind_of_lock(&locks, true).await;
    // A key that is no lock at all is still named as such.
    let mut conn = common::connect(&server.url()).await;
    let _: () = redis::cmd("RPUSH")
        .arg("lock:family:list")
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = locks
        .acquire_with("family:list", &read(10_000, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::WrongType { .. }), "{err:?}");
}

/// A semaphore of 3 never has more than 3 holders among `tasks` tasks that take its permits in
/// a loop for `run`; answers how many sections ran.
async fn permits_bound_holders(
    locks: &LockManager,
    store: &str,
    key: &str,
    tasks: usize,
    run: Duration,
) -> u64 {
    let deadline = Instant::now() + run;
    let sections = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (locks, sections) = (locks.clone(), sections.clone());
        let mut census = Census::new(store, key).await;
        let key = key.to_owned();
        handles.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let guard = locks
                    .acquire_with(&key, &permits(3, 10_000, 30_000))
                    .await
                    .expect("a permit");
                let holders = census.enter("r").await;
                assert!(holders <= 3, "{holders} holders of 3 permits");
                tokio::time::sleep(Duration::from_millis(2)).await;
                census.exit("r").await;
                guard.release().await.expect("release a permit");
                sections.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    common::joined(handles).await;
    sections.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semaphore_bounds_its_holders_within_a_process() {
    let (server, store) = (common::server(), common::server());
    let locks = LockManager::new(&server.url()).unwrap();
    let key = "family:sem";
    let sections =
        permits_bound_holders(&locks, &store.url(), key, 16, Duration::from_secs(2)).await;
    let mut census = Census::new(&store.url(), key).await;
    assert_eq!(
        census.get("max").await,
        3,
        "the permits were all used, never exceeded"
    );
    assert!(sections > 30, "{sections} sections");
}

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child_process_entry() {
    fault_support::run_child(|role| async move {
        match role.as_str() {
            "permits" => permit_worker().await,
            "holder" => holder().await,
            other => panic!("unknown child role {other:?}"),
        }
    });
}

/// The manager a child process is told to use: `REDLOCK_DEPLOY` (`server`, `cluster`,
/// `redlock`) over `REDLOCK_URLS` (separated by spaces).
fn child_manager() -> LockManager {
    let urls: String = setting("REDLOCK_URLS");
    let urls: Vec<&str> = urls.split(' ').collect();
    match setting::<String>("REDLOCK_DEPLOY").as_str() {
        #[cfg(feature = "cluster")]
        "cluster" => LockManager::cluster(urls).expect("cluster manager"),
        "redlock" => LockManager::redlock(urls).expect("redlock manager"),
        _ => LockManager::new(urls[0]).expect("manager"),
    }
}

/// Where a child process takes its locks.
#[derive(Clone)]
struct Target {
    deploy: &'static str,
    urls: Vec<String>,
}

impl Target {
    fn server(server: &RedisServer) -> Self {
        Self {
            deploy: "server",
            urls: vec![server.url()],
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("REDLOCK_DEPLOY", self.deploy.to_owned()),
            ("REDLOCK_URLS", self.urls.join(" ")),
        ]
    }
}

/// 16 tasks taking permits of `REDLOCK_KEY` for `REDLOCK_RUN_MS`, counted in the store at
/// `REDLOCK_STORE`; reports `DONE <sections>`.
async fn permit_worker() {
    let locks = child_manager();
    let key: String = setting("REDLOCK_KEY");
    let store: String = setting("REDLOCK_STORE");
    let run = Duration::from_millis(setting("REDLOCK_RUN_MS"));
    emit("READY");
    let sections = permits_bound_holders(&locks, &store, &key, 16, run).await;
    emit(format!("DONE {sections}"));
}

/// Takes `REDLOCK_KEY` as `REDLOCK_KIND` (`read` or `permit`) with a lease of `REDLOCK_TTL_MS`,
/// reports `HELD`, and holds it until killed.
async fn holder() {
    let locks = child_manager();
    let key: String = setting("REDLOCK_KEY");
    let ttl: u64 = setting("REDLOCK_TTL_MS");
    let options = match setting::<String>("REDLOCK_KIND").as_str() {
        "read" => read(ttl, 0),
        _ => permits(1, ttl, 0),
    };
    let _guard = locks
        .acquire_with(&key, &options)
        .await
        .expect("take the key");
    emit("HELD");
    std::future::pending::<()>().await;
}

/// 3 processes of 16 tasks each take permits of a semaphore of 3 for `run`; answers the
/// sections they ran, once the store showed 3 holders at most, and at times 3.
async fn permits_bound_holders_across_processes(target: &Target, run: Duration) -> u64 {
    let store = common::server();
    let key = "family:sem:procs";
    let mut workers: Vec<ChildProcess> = (0..3)
        .map(|_| {
            let mut env = target.env();
            env.extend([
                ("REDLOCK_STORE", store.url()),
                ("REDLOCK_KEY", key.to_owned()),
                ("REDLOCK_RUN_MS", run.as_millis().to_string()),
            ]);
            ChildProcess::spawn("permits", &env)
        })
        .collect();
    for worker in &mut workers {
        worker.expect("READY", PATIENCE).await;
    }
    let mut total = 0;
    for worker in &mut workers {
        let done = worker.expect("DONE", PATIENCE).await;
        let sections: u64 = done[0].parse().unwrap();
        assert!(sections > 0, "every process got permits");
        total += sections;
    }
    let mut census = Census::new(&store.url(), key).await;
    assert_eq!(
        census.get("max").await,
        3,
        "3 permits held at once at most, and at times all 3 ({total} sections)"
    );
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semaphore_of_3_never_has_more_than_3_holders_across_3_processes_of_16_tasks() {
    let server = common::server();
    let run = Duration::from_secs(10);
    let sections = permits_bound_holders_across_processes(&Target::server(&server), run).await;
    assert!(sections > 100, "{sections} sections in 10 s");
    let mut conn = common::connect(&server.url()).await;
    assert!(
        !common::exists(&mut conn, "lock:family:sem:procs").await,
        "the semaphore's key goes with its last holder"
    );
}

/// A holder process killed with `SIGKILL` frees what it held after its lease, not before.
async fn a_killed_holder_frees_its_share_after_its_ttl(
    target: &Target,
    locks: &LockManager,
    kind: &str,
    then: LockOptions,
) {
    let key = format!("family:killed:{kind}");
    let ttl = Duration::from_millis(1500);
    let mut env = target.env();
    env.extend([
        ("REDLOCK_KEY", key.clone()),
        ("REDLOCK_KIND", kind.to_owned()),
        ("REDLOCK_TTL_MS", ttl.as_millis().to_string()),
    ]);
    let mut holder = ChildProcess::spawn("holder", &env);
    holder.expect("HELD", PATIENCE).await;
    let held = Instant::now();
    holder.kill();
    let busy = locks
        .acquire_with(&key, &then.clone().wait(Duration::ZERO))
        .await;
    assert!(
        busy.unwrap_err().is_timeout(),
        "freed before its lease ran out"
    );
    let guard = common::within(locks.acquire_with(&key, &then.wait(Duration::from_secs(20))))
        .await
        .expect("freed once its lease ran out");
    let after = held.elapsed();
    // The lease counts from before `HELD` was reported, so at most the lease after it.
    assert!(
        after <= ttl + Duration::from_secs(5),
        "freed only after {after:?}"
    );
    assert!(
        after >= ttl - Duration::from_millis(200),
        "freed after {after:?}"
    );
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holders_permit_is_freed_after_its_ttl_not_before() {
    let server = common::server();
    let locks = LockManager::new(&server.url()).unwrap();
    let target = Target::server(&server);
    a_killed_holder_frees_its_share_after_its_ttl(&target, &locks, "permit", permits(1, 10_000, 0))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_readers_share_is_freed_after_its_ttl_not_before() {
    let server = common::server();
    let locks = LockManager::new(&server.url()).unwrap();
    let target = Target::server(&server);
    a_killed_holder_frees_its_share_after_its_ttl(&target, &locks, "read", write(10_000, 0)).await;
}

/// A permit (or read share) lost while its body runs stops the body with `Lost`.
async fn a_lost_share_stops_the_body(locks: &LockManager, options: LockOptions, remove: impl Fn()) {
    let key = "family:lost";
    let entered = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let run = {
        let (locks, entered, finished) = (locks.clone(), entered.clone(), finished.clone());
        tokio::spawn(async move {
            locks
                .with_lock(key, &options, |_| async move {
                    entered.store(true, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    finished.store(true, Ordering::Relaxed);
                })
                .await
        })
    };
    common::until(PATIENCE, "the body running", || {
        entered.load(Ordering::Relaxed)
    })
    .await;
    remove();
    let outcome = common::within(run).await.unwrap();
    assert!(
        matches!(outcome, Err(LockError::Lost { .. })),
        "{outcome:?}"
    );
    assert!(!finished.load(Ordering::Relaxed), "the body was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_permit_drops_the_body_and_returns_lost() {
    let server = common::server();
    let locks = LockManager::new(&server.url()).unwrap();
    let remove = || {
        server.command(&["DEL", "lock:family:lost"]).unwrap();
    };
    a_lost_share_stops_the_body(&locks, permits(2, 600, 0), remove).await;
    a_lost_share_stops_the_body(&locks, read(600, 0), remove).await;
}

/// A read-write lock's behaviour on a deployment: sharing, exclusion, one kind per key (with
/// semaphores where the manager holds them), and a writer not starved by readers.
async fn read_write_scenarios(locks: &LockManager, semaphores: bool) {
    let store = common::server();
    readers_share_and_a_writer_is_alone(locks).await;
    a_key_is_one_kind_of_lock(locks, semaphores).await;
    let waited =
        a_writer_is_not_starved_by_a_stream_of_readers(locks, &store.url(), "family:stream").await;
    assert!(
        waited < Duration::from_secs(5),
        "the writer waited {waited:?}"
    );
}

#[cfg(feature = "cluster")]
mod cluster {
    //! The same on a 3-master cluster: keys, fencing counters and lines in the key's slot.

    use redlock::testing::RedisCluster;

    use super::*;

    fn cluster() -> (RedisCluster, LockManager, Target) {
        let cluster = RedisCluster::spawn(3).expect("start a 3-master cluster");
        let locks = LockManager::cluster(cluster.urls()).expect("cluster manager");
        let target = Target {
            deploy: "cluster",
            urls: cluster.urls(),
        };
        (cluster, locks, target)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_write_locks_share_exclude_and_hand_over_on_a_cluster() {
        let (_cluster, locks, _) = cluster();
        read_write_scenarios(&locks, true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_semaphore_bounds_its_holders_across_processes_on_a_cluster() {
        let (_cluster, _, target) = cluster();
        let sections =
            permits_bound_holders_across_processes(&target, Duration::from_secs(4)).await;
        assert!(sections > 30, "{sections} sections in 4 s");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn killed_and_lost_holders_on_a_cluster() {
        let (cluster, locks, target) = cluster();
        a_killed_holder_frees_its_share_after_its_ttl(
            &target,
            &locks,
            "permit",
            permits(1, 10_000, 0),
        )
        .await;
        let owner = cluster.owner_of("lock:family:lost").unwrap();
        let remove = || {
            cluster
                .master(owner)
                .command(&["DEL", "lock:family:lost"])
                .unwrap();
        };
        a_lost_share_stops_the_body(&locks, permits(2, 600, 0), remove).await;
        a_lost_share_stops_the_body(&locks, read(600, 0), remove).await;
    }
}

mod redlock_quorum {
    //! Read-write locks on a Redlock quorum of 3 masters; semaphores refused.

    use redlock::testing::RedisServers;

    use super::*;

    fn masters() -> (RedisServers, LockManager, Target) {
        let masters = RedisServers::spawn(3).expect("start 3 masters");
        let locks = LockManager::redlock(masters.urls()).expect("redlock manager");
        let target = Target {
            deploy: "redlock",
            urls: masters.urls(),
        };
        (masters, locks, target)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_write_locks_share_exclude_and_keep_writers_first_on_redlock() {
        let (_masters, locks, _) = masters();
        read_write_scenarios(&locks, false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn killed_and_lost_readers_on_redlock() {
        let (masters, locks, target) = masters();
        a_killed_holder_frees_its_share_after_its_ttl(&target, &locks, "read", write(10_000, 0))
            .await;
        let remove = || {
            for master in masters.iter() {
                master.command(&["DEL", "lock:family:lost"]).unwrap();
            }
        };
        a_lost_share_stops_the_body(&locks, read(600, 0), remove).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redlock_manager_refuses_semaphores_with_a_config_error() {
        let (masters, locks, _) = masters();
        let err = locks
            .acquire_with("family:sem", &permits(3, 10_000, 0))
            .await
            .unwrap_err();
        assert!(matches!(err, LockError::Config(_)), "{err:?}");
        assert!(err.to_string().contains("cannot hold semaphores"), "{err}");
        for master in masters.iter() {
            assert_eq!(
                master.command(&["DBSIZE"]).unwrap(),
                "0",
                "nothing was written"
            );
        }
    }
}

#[cfg(feature = "sentinel")]
mod sentinel {
    //! Through the master that Sentinel names.

    use redlock::testing::RedisSentinel;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_write_locks_and_semaphores_through_sentinel() {
        let setup = RedisSentinel::spawn(1).expect("start a master, a replica and a sentinel");
        let locks = LockManager::sentinel(setup.sentinel_urls(), setup.master_name())
            .expect("sentinel manager");
        read_write_scenarios(&locks, true).await;
        let store = common::server();
        let sections = permits_bound_holders(
            &locks,
            &store.url(),
            "family:sem",
            16,
            Duration::from_secs(2),
        )
        .await;
        let mut census = Census::new(&store.url(), "family:sem").await;
        assert_eq!(census.get("max").await, 3, "{sections} sections");
    }
}
