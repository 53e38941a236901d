//! Unit tests of the testing support, against real servers.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use super::*;

#[test]
fn spawned_server_answers_ping() {
    let server = RedisServer::spawn().expect("spawn");
    assert_eq!(server.command(&["PING"]).expect("ping"), "PONG");
    assert!(server.is_running());
    assert!(server.pid().is_some());
    let port = server.port().expect("tcp port");
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
}

#[test]
fn set_get_roundtrip_and_reply_rendering() {
    let server = RedisServer::spawn().expect("spawn");
    assert_eq!(server.command(&["SET", "k", "hello world"]).unwrap(), "OK");
    assert_eq!(server.command(&["GET", "k"]).unwrap(), "hello world");
    assert_eq!(server.command(&["GET", "missing"]).unwrap(), "(nil)");
    assert_eq!(server.command(&["INCR", "n"]).unwrap(), "1");
    assert_eq!(server.command(&["RPUSH", "l", "a", "b", ""]).unwrap(), "3");
    assert_eq!(
        server.command(&["LRANGE", "l", "0", "-1"]).unwrap(),
        "a\nb\n"
    );
    match server.command(&["INCR", "k"]) {
        Err(ServerError::Reply(msg)) => assert!(msg.starts_with("ERR"), "{msg}"),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[test]
fn url_works_with_the_redis_crate() {
    let server =
        RedisServer::spawn_with(ServerOptions::new().password("p@ss word/&?")).expect("spawn");
    server.command(&["SET", "k", "v"]).unwrap();
    let client = redis::Client::open(server.url()).expect("valid url");
    let mut con = client.get_connection().expect("connect with url");
    let value: String = redis::cmd("GET").arg("k").query(&mut con).expect("GET");
    assert_eq!(value, "v");
}

#[test]
fn password_server_rejects_unauthenticated_commands() {
    let server = RedisServer::spawn_with(ServerOptions::new().password("s3cret")).expect("spawn");
    let port = server.port().expect("tcp server");
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut con = client.get_connection().expect("connect without password");
    let err = redis::cmd("PING").query::<String>(&mut con).unwrap_err();
    assert_eq!(err.code(), Some("NOAUTH"), "{err:?}");
    assert_eq!(server.command(&["PING"]).unwrap(), "PONG");
    assert!(
        server.url().starts_with("redis://:s3cret@127.0.0.1:"),
        "{}",
        server.url()
    );
}

#[test]
fn unix_socket_server_works() {
    let server = RedisServer::spawn_with(ServerOptions::new().unix_socket(true).password("pw"))
        .expect("spawn");
    assert_eq!(server.port(), None);
    let path = server.socket_path().expect("socket path").to_owned();
    assert!(path.starts_with(server.dir()));
    assert_eq!(
        server.url(),
        format!("redis+unix://{}?pass=pw", path.display())
    );
    assert_eq!(server.command(&["SET", "k", "v"]).unwrap(), "OK");
    assert_eq!(server.command(&["GET", "k"]).unwrap(), "v");
    let client = redis::Client::open(server.url()).expect("valid url");
    let mut con = client.get_connection().expect("connect over unix socket");
    let value: String = redis::cmd("GET").arg("k").query(&mut con).expect("GET");
    assert_eq!(value, "v");
}

#[test]
fn extra_args_are_passed() {
    let server =
        RedisServer::spawn_with(ServerOptions::new().arg("--maxmemory").arg("1mb")).expect("spawn");
    assert_eq!(
        server.command(&["CONFIG", "GET", "maxmemory"]).unwrap(),
        "maxmemory\n1048576"
    );
}

/// The session id of process `pid` (`getsid`, on Linux and macOS alike).
fn session_of(pid: u32) -> i64 {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: `getsid` only reads the process table; it has no memory-safety preconditions.
    let sid = unsafe { libc::getsid(pid) };
    assert!(sid != -1, "getsid({pid}): {}", io::Error::last_os_error());
    i64::from(sid)
}

#[test]
fn own_session_puts_the_server_in_a_session_it_leads() {
    let ours = session_of(std::process::id());
    let shared = RedisServer::spawn().expect("spawn");
    assert_eq!(session_of(shared.pid().unwrap()), ours);
    let own = RedisServer::spawn_with(ServerOptions::new().own_session(true)).expect("spawn");
    let pid = own.pid().unwrap();
    assert_eq!(session_of(pid), i64::from(pid));
    assert_eq!(own.command(&["PING"]).unwrap(), "PONG");
}

#[test]
fn stop_fails_commands_and_restart_keeps_the_port_without_data() {
    let mut server = RedisServer::spawn().expect("spawn");
    let url = server.url();
    let pid = server.pid().expect("pid");
    server.command(&["SET", "k", "v"]).unwrap();

    server.stop().expect("stop");
    server.stop().expect("stop is idempotent");
    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
    let started = Instant::now();
    assert!(matches!(
        server.command(&["PING"]),
        Err(ServerError::Stopped)
    ));
    assert!(started.elapsed() < Duration::from_secs(1));
    // Nothing listens any more.
    let port = server.port().expect("port");
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());

    server.restart().expect("restart");
    assert_eq!(server.url(), url);
    assert_ne!(server.pid(), Some(pid));
    assert_eq!(server.command(&["GET", "k"]).unwrap(), "(nil)");
    // Restarting a running server works too.
    server.restart().expect("restart while running");
    assert_eq!(server.command(&["PING"]).unwrap(), "PONG");
}

#[test]
fn unix_socket_server_restarts() {
    let mut server =
        RedisServer::spawn_with(ServerOptions::new().unix_socket(true)).expect("spawn");
    server.command(&["SET", "k", "v"]).unwrap();
    server.stop().unwrap();
    server.restart().expect("restart");
    assert_eq!(server.command(&["GET", "k"]).unwrap(), "(nil)");
}

#[test]
fn paused_server_times_out_until_resumed() {
    let server = RedisServer::spawn().expect("spawn");
    server.pause().expect("pause");
    assert!(server.is_paused());
    assert!(server.is_running());
    let started = Instant::now();
    let err = server
        .command_timeout(&["PING"], Duration::from_millis(200))
        .expect_err("a paused server cannot answer");
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    server.resume().expect("resume");
    assert!(!server.is_paused());
    assert_eq!(server.command(&["PING"]).unwrap(), "PONG");
}

#[test]
fn paused_server_is_killed_on_drop() {
    let server = RedisServer::spawn().expect("spawn");
    let port = server.port().expect("port");
    let dir = server.dir().to_owned();
    server.pause().expect("pause");
    drop(server);
    assert!(!dir.exists());
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
}

#[test]
fn several_servers_are_independent() {
    let mut servers = RedisServers::spawn(3).expect("spawn");
    assert_eq!(servers.len(), 3);
    assert!(!servers.is_empty());
    let mut urls = servers.urls();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 3);
    servers.get(0).command(&["SET", "k", "0"]).unwrap();
    assert_eq!(servers.get(1).command(&["GET", "k"]).unwrap(), "(nil)");
    servers.get_mut(2).stop().unwrap();
    assert!(servers.get(0).is_running() && servers.get(1).is_running());
    assert!(!servers.get(2).is_running());
}

#[test]
fn missing_binary_is_reported_with_install_hint() {
    let err = find_binary(Some("/nonexistent/redis-server".into()), None).unwrap_err();
    assert!(matches!(err, ServerError::MissingBinary { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("`/nonexistent/redis-server` not found"),
        "{msg}"
    );
    assert!(msg.contains("apt-get install redis-server"), "{msg}");
    assert!(msg.contains("brew install redis"), "{msg}");
    assert!(msg.contains("REDIS_SERVER_BIN"), "{msg}");

    let err = find_binary(None, Some("/nonexistent-dir".into())).unwrap_err();
    assert!(matches!(err, ServerError::MissingBinary { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("`redis-server` not found (not on PATH)"),
        "{msg}"
    );
    assert!(msg.contains("apt-get install redis-server"), "{msg}");
    assert!(matches!(
        find_binary(None, None),
        Err(ServerError::MissingBinary { .. })
    ));
}

#[test]
fn missing_override_binary_is_named_with_its_own_install_hint() {
    let err = find_binary(
        Some("valkey-server".into()),
        Some("/nonexistent-dir".into()),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "`valkey-server` not found (REDIS_SERVER_BIN=valkey-server is not on PATH)"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("`apt-get install -t bookworm-backports valkey-server` on Debian"),
        "{msg}"
    );
    assert!(msg.contains("brew install valkey"), "{msg}");
    assert!(!msg.contains("redis-server"), "{msg}");

    let err = find_binary(Some("/opt/valkey/bin/valkey-server".into()), None).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("`/opt/valkey/bin/valkey-server` not found"),
        "{msg}"
    );
    assert!(msg.contains("bookworm-backports valkey-server"), "{msg}");

    let err = find_binary(Some("keydb-server".into()), None).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("`keydb-server` not found"), "{msg}");
    assert!(msg.contains("install `keydb-server`"), "{msg}");
    assert!(!msg.contains("apt-get"), "{msg}");
}

#[test]
fn binary_is_found_on_path_or_by_override() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("redis-server");
    fs::write(&fake, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths(["/nonexistent-dir".as_ref(), dir.path()]).unwrap();
    assert_eq!(find_binary(None, Some(path.clone())).unwrap(), fake);
    assert_eq!(find_binary(Some(fake.clone().into()), None).unwrap(), fake);
    assert_eq!(
        find_binary(Some("redis-server".into()), Some(path)).unwrap(),
        fake
    );
    // Not executable: skipped.
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(find_binary(Some(fake.into()), None).is_err());
}

#[test]
fn server_that_exits_at_startup_reports_its_log() {
    let err = RedisServer::spawn_with(ServerOptions::new().arg("--no-such-option").arg("1"))
        .expect_err("bad option");
    match &err {
        ServerError::Exited { log_tail, .. } => {
            assert!(log_tail.contains("no-such-option"), "{log_tail}")
        }
        other => panic!("expected Exited, got {other:?}"),
    }
}

#[test]
fn nested_replies_are_rendered() {
    let server = RedisServer::spawn().expect("spawn");
    let script = "return {7, false, {redis.error_reply('ERR x')}}";
    assert_eq!(
        server.command(&["EVAL", script, "0"]).unwrap(),
        "7\n(nil)\n(error) ERR x"
    );
    match server
        .command(&["LPUSH", "l", "a"])
        .and(server.command(&["GET", "l"]))
    {
        Err(ServerError::Reply(msg)) => assert!(msg.starts_with("WRONGTYPE "), "{msg}"),
        other => panic!("expected WRONGTYPE, got {other:?}"),
    }
    assert_eq!(percent_encode("a b/@", false), "a%20b%2F%40");
}

#[test]
fn a_server_in_a_namespace_listens_on_its_address_there_and_goes_with_it() {
    let name = format!("rlunit{}", std::process::id());
    let namespace = std::sync::Arc::new(Namespace::create(&name).expect(
        "network namespaces (this test needs root and iproute2's `ip`, as the partition suite)",
    ));
    namespace
        .ip(&["addr", "add", "10.77.0.1/24", "dev", "lo"])
        .unwrap();
    let address = Ipv4Addr::new(10, 77, 0, 1);
    let server =
        RedisServer::spawn_with(ServerOptions::new().namespace(&namespace, address)).unwrap();
    let port = server.port().unwrap();
    assert_eq!(server.url(), format!("redis://10.77.0.1:{port}"));
    assert_eq!(server.address(), Some(address));
    assert_eq!(server.command(&["SET", "k", "v"]).unwrap(), "OK");
    let reached = namespace
        .run(|| TcpStream::connect((address, port)).is_ok())
        .unwrap();
    assert!(reached, "nothing listens on {address}:{port} in {name}");
    let listed = |name: &str| {
        let out = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|line| line.split_whitespace().next() == Some(name))
    };
    assert!(listed(&name));
    drop(server);
    drop(namespace);
    assert!(!listed(&name), "{name} is still there");
}
