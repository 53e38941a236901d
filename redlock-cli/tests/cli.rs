//! The `redlock` command end to end: the binary run against real servers holding real locks.

use std::process::{Command, Output};
use std::time::Duration;

use redlock_runtime::testing::{RedisServer, RedisServers, ServerOptions};
use redlock_runtime::{LockManager, LockOptions};

/// Runs `redlock` with `args`; its exit code, standard output and standard error.
fn redlock(args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_redlock"))
        .args(args)
        .env_remove("REDIS_URL")
        .output()
        .expect("run redlock");
    (
        status.code().expect("an exit code"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn options() -> LockOptions {
    LockOptions::new(Duration::from_secs(30))
}

fn manager(url: &str, name: &str) -> LockManager {
    LockManager::builder(url)
        .holder_name(name)
        .build()
        .expect("manager")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_show_tell_who_holds_which_lock() {
    let server = RedisServer::spawn().unwrap();
    let url = server.url();
    let locks = manager(&url, "billing-1");
    let account = locks.acquire_with("account:7", &options()).await.unwrap();
    account.extend().await.unwrap(); // its fencing token is written in from here on
    let report = locks
        .acquire_with("report:daily", &options().read())
        .await
        .unwrap();

    let (code, out, err) = redlock(&["--url", &url, "list"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("account:7  billing-1  token "),
        "{out}"
    );
    assert!(
        lines[0].contains(&format!("token {}", account.fencing_token())),
        "{out}"
    );
    assert!(
        lines[1].contains("report:daily") && lines[1].contains("(read)"),
        "{out}"
    );

    let (code, out, _) = redlock(&["--url", &url, "list", "account:*", "--json"]);
    assert_eq!(code, 0);
    let line: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(line["key"], "account:7");
    assert_eq!(line["holder"], "billing-1");
    assert_eq!(line["fencing_token"], account.fencing_token());
    let left = line["lease_remaining_ms"].as_u64().unwrap();
    assert!(left > 20_000 && left <= 30_000, "{line}");

    let (code, out, _) = redlock(&["--url", &url, "show", "account:7"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("account:7: exclusive lock, 1 holder, 0 waiting"),
        "{out}"
    );
    assert!(out.contains("holder          billing-1"), "{out}");
    assert!(
        out.contains(&format!("fencing token   {}", account.fencing_token())),
        "{out}"
    );

    let (code, out, _) = redlock(&["--url", &url, "show", "report:daily", "--json"]);
    assert_eq!(code, 0);
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["kind"], "read");
    assert_eq!(line["fencing_token"], report.fencing_token());

    // Nothing held: exit code 1.
    let (code, out, _) = redlock(&["--url", &url, "show", "account:8"]);
    assert_eq!((code, out.trim()), (1, "account:8: not held; 0 waiting"));
    let (code, _, _) = redlock(&["--url", &url, "list", "nothing:*"]);
    assert_eq!(code, 1);
    // The prefix is the application's: another prefix sees nothing.
    let (code, _, _) = redlock(&["--url", &url, "--prefix", "other:", "list"]);
    assert_eq!(code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_force_frees_a_lock_for_its_waiter() {
    let server = RedisServer::spawn().unwrap();
    let url = server.url();
    let stuck = manager(&url, "stuck");
    let _held = stuck.acquire_with("job", &options()).await.unwrap();
    let waiter = {
        let next = manager(&url, "next");
        tokio::spawn(async move {
            next.acquire_with("job", &options().wait(Duration::from_secs(30)))
                .await
        })
    };
    let (code, out, err) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || redlock(&["--url", &url, "release", "--force", "job"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("released `job`"), "{out}");
    let next = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("the waiter is woken")
        .unwrap()
        .expect("the waiter gets the lock");
    let (_, out, _) = redlock(&["--url", &url, "show", "job"]);
    assert!(out.contains("holder          next"), "{out}");
    next.release().await.unwrap();
    let (code, out, _) = redlock(&["--url", &url, "release", "--force", "job"]);
    assert_eq!((code, out.trim()), (1, "`job` was not held"));
    // Without --force: a usage error.
    let (code, _, err) = redlock(&["--url", &url, "release", "job"]);
    assert_eq!(code, 2);
    assert!(err.contains("--force"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_shows_the_key_again_and_again() {
    let server = RedisServer::spawn().unwrap();
    let url = server.url();
    let locks = manager(&url, "watched");
    let _held = locks.acquire_with("door", &options()).await.unwrap();
    let (code, out, _) = tokio::task::spawn_blocking(move || {
        redlock(&[
            "--url",
            &url,
            "watch",
            "door",
            "--interval",
            "50ms",
            "--count",
            "3",
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    assert_eq!(
        out.matches("door: exclusive lock, 1 holder").count(),
        3,
        "{out}"
    );
}

#[test]
fn a_wrong_url_a_server_that_does_not_answer_or_a_wrong_password_is_exit_code_2() {
    let (code, _, err) = redlock(&["--url", "http//nope", "list"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid redis URL"), "{err}");

    let (code, _, err) = redlock(&[
        "--url",
        "redis://:secret@127.0.0.1:1",
        "--timeout",
        "500ms",
        "list",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no answer from redis://***@127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");

    let server = RedisServer::spawn_with(ServerOptions::new().password("right")).unwrap();
    let port = server.port().unwrap();
    let url = format!("redis://:wrong@127.0.0.1:{port}");
    let (code, _, err) = redlock(&["--url", &url, "list"]);
    assert_eq!(code, 2);
    assert!(err.to_lowercase().contains("auth"), "{err}");
    assert!(!err.contains("wrong"), "{err}");
    let (code, _, _) = redlock(&["--url", &server.url(), "list"]);
    assert_eq!(code, 1, "the right password: nothing held");

    let (code, _, err) = redlock(&["list", "--bogus"]);
    assert_eq!(code, 2, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_urls_are_redlock_masters_and_show_each_masters_view() {
    let masters = RedisServers::spawn(3).unwrap();
    let urls = masters.urls();
    let locks = LockManager::builder_redlock(urls.clone())
        .holder_name("quorum")
        .build()
        .unwrap();
    let _held = locks.acquire_with("shared", &options()).await.unwrap();
    let mut args: Vec<String> = Vec::new();
    for url in &urls {
        args.extend(["--url".to_owned(), url.clone()]);
    }
    args.extend(["show".to_owned(), "shared".to_owned()]);
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        redlock(&args)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("holder          quorum"), "{out}");
    assert_eq!(
        out.matches(": 1 holder\n").count(),
        3,
        "each master's view: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_goes_away_ends_the_output_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let server = RedisServer::spawn().unwrap();
    let locks = manager(&server.url(), "many");
    let mut guards = Vec::new();
    for i in 0..300 {
        guards.push(
            locks
                .acquire_with(&format!("k:{i}"), &options())
                .await
                .unwrap(),
        );
    }
    let url = server.url();
    let (status, err) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_redlock"))
            .args(["--url", &url, "list"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.starts_with("k:"), "{first}");
        // The reader is gone (`| head -1`); the tool must not panic writing the rest.
        let output = child.wait_with_output().unwrap();
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}
