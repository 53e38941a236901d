//! No secret in any output: every kind of builder and manager, every error reachable from a URL
//! with a password or from a TLS client key, and every log line and metric written meanwhile
//! are formatted, and none contains a password or key.

mod common;

use std::time::Duration;

use redlock::testing::{RedisServer, ServerOptions};
use redlock::{LockError, LockManager, LockManagerBuilder, LockOptions};

const PASSWORD: &str = "hunter2-password";
const WRONG: &str = "hunter2-wrong";
const KEY: &str = "hunter2-client-key";

/// Fails with every secret found in `text`.
fn assert_clean(what: &str, text: &str) {
    for secret in [PASSWORD, WRONG, KEY] {
        assert!(!text.contains(secret), "{what} shows `{secret}`: {text}");
    }
}

/// `Debug` and `Display` of an error and of its sources.
fn error_text(error: &LockError) -> String {
    let mut text = format!("{error} / {error:?}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(" / {cause} / {cause:?}"));
        source = cause.source();
    }
    text
}

fn builders(url_with_password: &str) -> Vec<LockManagerBuilder> {
    let unix = format!("redis+unix:///tmp/none.sock?db=1&pass={PASSWORD}");
    #[allow(unused_mut)]
    let mut builders = vec![
        LockManager::builder(url_with_password),
        LockManager::builder(unix),
        LockManager::builder_redlock([
            url_with_password.to_owned(),
            format!("redis://app:{PASSWORD}@127.0.0.1:2"),
            format!("redis://:{PASSWORD}@127.0.0.1:3"),
        ]),
    ];
    #[cfg(feature = "cluster")]
    builders.push(LockManager::builder_cluster([
        url_with_password.to_owned(),
        format!("redis://app:{PASSWORD}@127.0.0.1:2"),
    ]));
    #[cfg(feature = "sentinel")]
    builders.push(LockManager::builder_sentinel(
        [format!("redis://:{PASSWORD}@127.0.0.1:26379")],
        "mymaster",
    ));
    #[cfg(feature = "tls")]
    builders.push(
        LockManager::builder(format!("rediss://app:{PASSWORD}@127.0.0.1:1"))
            .tls_root_certificate(format!("-----BEGIN CERTIFICATE-----\n{KEY}\n"))
            .tls_client_certificate(
                format!("-----BEGIN CERTIFICATE-----\n{KEY}\n"),
                format!("-----BEGIN PRIVATE KEY-----\n{KEY}\n-----END PRIVATE KEY-----\n"),
            ),
    );
    builders
}

// A current-thread runtime: every event and metric of the lock operations is recorded on this
// thread.
#[tokio::test]
async fn no_password_or_key_appears_in_debug_errors_logs_or_metrics() {
    let logs = common::Logs::capture_all();
    #[cfg(feature = "metrics")]
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    #[cfg(feature = "metrics")]
    let snapshotter = recorder.snapshotter();
    #[cfg(feature = "metrics")]
    let _recording = metrics::set_default_local_recorder(&recorder);

    let server = RedisServer::spawn_with(ServerOptions::new().password(PASSWORD)).unwrap();
    let port = server.port().expect("a TCP server");
    let right = format!("redis://:{PASSWORD}@127.0.0.1:{port}");
    let wrong = format!("redis://:{WRONG}@127.0.0.1:{port}");
    let quick = LockOptions::new(Duration::from_secs(5));

    // Builders and the managers they build, of every kind.
    for builder in builders(&right) {
        assert_clean("a builder's Debug", &format!("{builder:?}"));
        match builder
            .operation_timeout(Duration::from_millis(300))
            .build()
        {
            Ok(manager) => {
                assert_clean("a manager's Debug", &format!("{manager:?}"));
                // Whatever it can reach: errors of every kind of deployment.
                if let Err(error) = manager.acquire_with("s", &quick).await {
                    assert_clean("an acquire error", &error_text(&error));
                }
                if let Err(error) = manager.ping().await {
                    assert_clean("a ping error", &error_text(&error));
                }
            }
            Err(error) => assert_clean("a build error", &error_text(&error)),
        }
    }

    // Errors reachable from URLs with a password.
    let bad_urls = [
        format!("redis://:{PASSWORD}@127.0.0.1:notaport"),
        format!("redis://:{PASSWORD}@"),
        format!("http://:{PASSWORD}@127.0.0.1:6379"),
    ];
    for url in &bad_urls {
        let error = LockManager::new(url).unwrap_err();
        assert_clean("an invalid URL's error", &error_text(&error));
    }
    let error = LockManager::redlock([right.clone(), right.clone()]).unwrap_err();
    assert!(matches!(error, LockError::Config(_)), "{error:?}");
    assert_clean("a duplicate URL's error", &error_text(&error));

    // A wrong password, and an unreachable server, each through every operation.
    let refused = LockManager::new(&wrong).unwrap();
    let error = refused.acquire_with("s", &quick).await.unwrap_err();
    assert_clean("a refused password's error", &error_text(&error));
    let error = refused.ping().await.unwrap_err();
    assert_clean("a refused password's ping error", &error_text(&error));
    let unreachable = LockManager::builder(format!("redis://:{PASSWORD}@127.0.0.1:1"))
        .operation_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let error = unreachable.acquire_with("s", &quick).await.unwrap_err();
    assert_clean("an unreachable server's error", &error_text(&error));

    // The right password: a full lock cycle, contended, renewed, released, lost.
    let locks = LockManager::new(&right).unwrap();
    assert_clean("a manager's Debug", &format!("{locks:?}"));
    let guard = locks.acquire_with("s", &quick).await.unwrap();
    assert_clean("a guard's Debug", &format!("{guard:?}"));
    let busy = locks
        .acquire_with("s", &quick.clone().wait(Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert_clean("a busy lock's error", &error_text(&busy));
    guard.extend().await.unwrap();
    guard.release().await.unwrap();
    let lost = locks
        .with_lock("gone", &quick, |_| async {
            server.command(&["DEL", "lock:gone"]).unwrap();
            std::future::pending::<()>().await
        })
        .await;
    let _ = lost;

    assert!(
        logs.contains("acquired"),
        "the logs were captured: {}",
        logs.text()
    );
    assert_clean("the logs", &logs.text());
    #[cfg(feature = "metrics")]
    for (key, ..) in snapshotter.snapshot().into_vec() {
        assert_clean("a metric", &format!("{key:?}"));
    }
}
