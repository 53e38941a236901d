//! Locks on the master named by Redis Sentinel (a master, a replica and a sentinel started by
//! the test): discovery, a forced failover after which new locks go to the new master, and the
//! attribute over it.
#![cfg(feature = "sentinel")]

mod common;

use redlock::testing::RedisSentinel;
use redlock::{distributed_lock, LockError, LockManager};

#[distributed_lock(key = "nightly:<job>", ttl = "5s", wait = "10s", client = locks, guard = lock)]
async fn run_job(locks: &LockManager, job: &str) -> Result<u64, LockError> {
    Ok(lock.fencing_token())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_new_locks_go_to_the_new_master() {
    let setup = RedisSentinel::spawn(1).expect("start a master, a replica and a sentinel");
    let locks = LockManager::sentinel(setup.sentinel_urls(), setup.master_name())
        .expect("sentinel manager");
    locks
        .ping()
        .await
        .expect("the sentinel names a master that answers");
    assert_eq!(setup.master_index().unwrap(), 0);

    // Before: locks on server 0, the first master.
    let before = common::within(locks.acquire_with("before", &common::options(30_000, 0)))
        .await
        .expect("acquire on the first master");
    assert_ne!(
        setup.server(0).command(&["GET", "lock:before"]).unwrap(),
        "(nil)"
    );
    let token = common::within(run_job(&locks, "report"))
        .await
        .expect("attribute");
    assert!(token > 0);

    tokio::task::block_in_place(|| setup.failover()).expect("failover");
    assert_eq!(setup.master_index().unwrap(), 1);

    // After: the old master is a replica and answers READONLY; the manager asks the sentinel
    // again and locks on the new master.
    let after = common::within(locks.acquire_with("after", &common::options(30_000, 5_000)))
        .await
        .expect("acquire on the new master");
    let on_new = setup.server(1).command(&["GET", "lock:after"]).unwrap();
    assert_eq!(
        on_new.find('|'),
        Some(48),
        "the new master holds the lock: {on_new:?}"
    );
    assert!(format!("{locks:?}").contains(&setup.server(1).port().unwrap().to_string()));
    // Fencing tokens continue from the replicated counter.
    assert!(after.fencing_token() > token);
    let later = common::within(run_job(&locks, "report"))
        .await
        .expect("attribute after failover");
    assert!(later > after.fencing_token());

    // A lock taken before the failover was replicated: its holder still releases it.
    before
        .release()
        .await
        .expect("release the replicated lock on the new master");
    assert_eq!(
        setup.server(1).command(&["GET", "lock:before"]).unwrap(),
        "(nil)"
    );
    after.release().await.expect("release");
}

#[test]
fn a_sentinel_manager_needs_urls_and_a_master_name() {
    let err = LockManager::sentinel(Vec::<String>::new(), "m").unwrap_err();
    assert!(err.to_string().contains("at least one URL"), "{err}");
    let err = LockManager::sentinel(["redis://127.0.0.1:26379"], "").unwrap_err();
    assert!(
        err.to_string().contains("name of the monitored master"),
        "{err}"
    );
}
