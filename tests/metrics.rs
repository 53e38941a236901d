//! Metrics through the `metrics` facade (feature `metrics`): real lock operations against a real
//! Redis, seen by a recorder that keeps what it is given.

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use redlock::testing::RedisServer;
use redlock::{LockError, LockManager, LockOptions};

type Entry = (
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
);

/// The value of counter `name`, with label `outcome` when given (0 when never touched).
fn counter(entries: &[Entry], name: &str, outcome: Option<&str>) -> u64 {
    labelled(entries, name, outcome.map(|want| ("outcome", want)))
}

/// The value of counter `name`, summed over the series with `label` when given.
fn labelled(entries: &[Entry], name: &str, label: Option<(&str, &str)>) -> u64 {
    entries
        .iter()
        .filter(|(key, ..)| key.kind() == MetricKind::Counter && key.key().name() == name)
        .filter(|(key, ..)| {
            label.is_none_or(|(name, want)| {
                key.key()
                    .labels()
                    .any(|label| label.key() == name && label.value() == want)
            })
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

/// The values recorded into histogram `name`.
fn histogram(entries: &[Entry], name: &str) -> Vec<f64> {
    entries
        .iter()
        .filter(|(key, ..)| key.kind() == MetricKind::Histogram && key.key().name() == name)
        .flat_map(|(.., value)| match value {
            DebugValue::Histogram(values) => {
                values.iter().map(|v| v.into_inner()).collect::<Vec<f64>>()
            }
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .collect()
}

// A current-thread runtime: every lock operation runs on the thread whose local recorder is set.
#[tokio::test]
async fn acquisitions_releases_renewals_and_losses_are_counted_and_timed() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let server = RedisServer::spawn().unwrap();
    let locks = LockManager::new(&server.url()).unwrap();
    let options = LockOptions::new(Duration::from_secs(5));

    let guard = locks.acquire_with("held", &options).await.unwrap();
    let busy = locks.acquire_with("held", &options).await;
    assert!(matches!(busy, Err(LockError::Timeout { .. })), "{busy:?}");
    guard.extend().await.unwrap();
    guard.release().await.unwrap();

    let guard = locks.acquire_with("gone", &options).await.unwrap();
    server.command(&["DEL", "lock:gone"]).unwrap();
    let extended = guard.extend().await;
    assert!(
        matches!(extended, Err(LockError::Lost { .. })),
        "{extended:?}"
    );

    server.command(&["RPUSH", "lock:typed", "a list"]).unwrap();
    let wrong = locks.acquire_with("typed", &options).await;
    assert!(
        matches!(wrong, Err(LockError::WrongType { .. })),
        "{wrong:?}"
    );

    let entries = snapshotter.snapshot().into_vec();
    let count = |name, outcome| counter(&entries, name, outcome);
    assert_eq!(count("redlock_acquire_total", Some("acquired")), 2);
    assert_eq!(count("redlock_acquire_total", Some("busy")), 1);
    assert_eq!(count("redlock_acquire_total", Some("error")), 1);
    assert_eq!(count("redlock_release_total", Some("released")), 1);
    assert_eq!(count("redlock_renew_total", Some("renewed")), 1);
    assert_eq!(count("redlock_renew_total", Some("lost")), 1);
    assert_eq!(count("redlock_lost_total", None), 1);

    let waits = histogram(&entries, "redlock_acquire_wait_seconds");
    assert_eq!(waits.len(), 2, "{waits:?}");
    let holds = histogram(&entries, "redlock_hold_seconds");
    assert_eq!(holds.len(), 1, "{holds:?}");
    assert!(
        holds[0] > 0.0 && holds[0] < 5.0,
        "held for {} s, between acquiring and releasing",
        holds[0]
    );
}

#[tokio::test]
async fn read_shares_writes_and_permits_are_counted_by_kind() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let server = RedisServer::spawn().unwrap();
    let locks = LockManager::new(&server.url()).unwrap();
    let options = LockOptions::new(Duration::from_secs(5));
    for (key, options) in [
        ("doc", options.clone().read()),
        ("doc", options.clone().read()),
        ("doc", options.clone().write()),
        ("pool", options.clone().permits(2)),
    ] {
        let guard = locks.acquire_with(key, &options).await.unwrap();
        guard.release().await.unwrap();
    }
    let entries = snapshotter.snapshot().into_vec();
    let by_kind = |name, kind| labelled(&entries, name, Some(("kind", kind)));
    assert_eq!(by_kind("redlock_acquire_total", "read"), 2);
    assert_eq!(by_kind("redlock_acquire_total", "write"), 1);
    assert_eq!(by_kind("redlock_acquire_total", "permit"), 1);
    assert_eq!(by_kind("redlock_release_total", "read"), 2);
    assert_eq!(by_kind("redlock_release_total", "write"), 1);
    assert_eq!(by_kind("redlock_release_total", "permit"), 1);
    assert_eq!(by_kind("redlock_acquire_total", "exclusive"), 0);
}

#[tokio::test]
async fn a_lease_that_runs_out_without_renewal_counts_as_lost() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let server = RedisServer::spawn().unwrap();
    let locks = LockManager::new(&server.url()).unwrap();
    let options = LockOptions::new(Duration::from_millis(100)).renew(false);
    let outcome = locks
        .with_lock("short", &options, |guard| async move {
            while guard.is_held() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            "ran to the end"
        })
        .await;
    assert_eq!(outcome.unwrap(), "ran to the end");
    let entries = snapshotter.snapshot().into_vec();
    assert_eq!(counter(&entries, "redlock_lost_total", None), 1);
}
