//! The service example (`examples/service.rs`) over real HTTP against a real `redis-server`.
//!
//! Each test starts its own Redis and serves the example's very router on a free loopback port,
//! then talks to it with a plain hyper client, one connection per request.

#[allow(dead_code)]
#[path = "../examples/service.rs"]
mod service;

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use redlock::testing::RedisServer;
use redlock::{LockManager, LockOptions};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The `wait` of the example's mutating handlers.
const HANDLER_WAIT: Duration = Duration::from_secs(5);
/// Upper bound for anything in these tests; generous, not a performance claim.
const PATIENCE: Duration = Duration::from_secs(30);

/// The example's router served on a free port, over its own Redis.
struct Service {
    server: RedisServer,
    addr: SocketAddr,
    locks: LockManager,
}

impl Service {
    async fn start() -> Service {
        let server = RedisServer::spawn().expect("start redis-server");
        let locks = LockManager::builder(server.url())
            .operation_timeout(Duration::from_millis(500))
            .build()
            .expect("lock manager");
        let state = service::App::connect(locks.clone(), &server.url())
            .await
            .expect("connect to redis");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move { axum::serve(listener, service::app(state)).await });
        Service {
            server,
            addr,
            locks,
        }
    }

    /// Sends one request on a fresh connection; answers the status and the body text.
    async fn call(&self, method: Method, path: &str) -> (StatusCode, String) {
        within(PATIENCE, send(self.addr, method, path)).await
    }

    async fn post(&self, path: &str) -> (StatusCode, String) {
        self.call(Method::POST, path).await
    }

    /// `POST` that must succeed.
    async fn post_ok(&self, path: &str) -> String {
        let (status, body) = self.post(path).await;
        assert_eq!(status, StatusCode::OK, "POST {path}: {body}");
        body
    }

    async fn balance(&self, account: &str) -> i64 {
        let path = format!("/accounts/{account}");
        let (status, body) = self.call(Method::GET, &path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body.trim().parse().expect("a balance")
    }
}

async fn send(addr: SocketAddr, method: Method, path: &str) -> (StatusCode, String) {
    let stream = TcpStream::connect(addr).await.expect("connect to service");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http handshake");
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("no answer within {limit:?}"))
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Deposit(&'static str, i64),
    Withdraw(&'static str, i64),
    Transfer(&'static str, &'static str, i64),
}

impl Op {
    fn path(self) -> String {
        match self {
            Op::Deposit(id, amount) => format!("/accounts/{id}/deposit/{amount}"),
            Op::Withdraw(id, amount) => format!("/accounts/{id}/withdraw/{amount}"),
            Op::Transfer(from, to, amount) => format!("/transfer/{from}/{to}/{amount}"),
        }
    }

    fn apply(self, ledger: &mut HashMap<&'static str, i64>) {
        let mut add = |id, delta| *ledger.entry(id).or_default() += delta;
        match self {
            Op::Deposit(id, amount) => add(id, amount),
            Op::Withdraw(id, amount) => add(id, -amount),
            Op::Transfer(from, to, amount) => {
                add(from, -amount);
                add(to, amount);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_keep_every_balance_exact() {
    let service = Service::start().await;
    let accounts = ["alice", "bob", "carol"];
    let mut expected = HashMap::new();
    for id in accounts {
        service
            .post_ok(&format!("/accounts/{id}/deposit/1000"))
            .await;
        expected.insert(id, 1000);
    }

    // Transfers in both directions between every pair, mixed with deposits and withdrawals;
    // no account can run dry, so every request must succeed.
    let pattern = [
        Op::Deposit("alice", 7),
        Op::Withdraw("alice", 5),
        Op::Transfer("alice", "bob", 11),
        Op::Transfer("bob", "alice", 13),
        Op::Deposit("bob", 3),
        Op::Withdraw("carol", 2),
        Op::Transfer("carol", "alice", 17),
        Op::Transfer("bob", "carol", 19),
        Op::Deposit("carol", 23),
        Op::Transfer("alice", "carol", 29),
    ];
    let ops: Vec<Op> = pattern.iter().copied().cycle().take(100).collect();
    let mut requests = JoinSet::new();
    for op in &ops {
        let (addr, path) = (service.addr, op.path());
        requests.spawn(async move {
            let (status, body) = send(addr, Method::POST, &path).await;
            (path, status, body)
        });
    }
    for op in &ops {
        op.apply(&mut expected);
    }
    let answers = within(PATIENCE, requests.join_all()).await;
    let failed: Vec<_> = answers
        .iter()
        .filter(|(_, status, _)| *status != StatusCode::OK)
        .collect();
    assert!(failed.is_empty(), "failed requests: {failed:#?}");

    let mut total = 0;
    for id in accounts {
        let balance = service.balance(id).await;
        assert_eq!(balance, expected[id], "balance of {id}");
        total += balance;
    }
    let deposited: i64 = ops
        .iter()
        .map(|op| match *op {
            Op::Deposit(_, amount) => amount,
            Op::Withdraw(_, amount) => -amount,
            Op::Transfer(..) => 0,
        })
        .sum();
    assert_eq!(total, 3000 + deposited, "transfers create or destroy money");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_the_new_balances_and_business_errors() {
    let service = Service::start().await;
    assert_eq!(
        service.balance("dave").await,
        0,
        "an unknown account is empty"
    );
    assert_eq!(service.post_ok("/accounts/dave/deposit/100").await, "100\n");
    assert_eq!(service.post_ok("/accounts/dave/withdraw/30").await, "70\n");
    assert_eq!(service.post_ok("/transfer/dave/erin/20").await, "50 20\n");

    let (status, body) = service.post("/accounts/dave/withdraw/51").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("insufficient funds in `dave`"), "{body}");
    let (status, body) = service.post("/transfer/erin/dave/21").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (status, body) = service.post("/accounts/dave/deposit/0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = service.post("/transfer/dave/dave/1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = service.post("/accounts/dave/deposit/lots").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    assert_eq!(
        service.balance("dave").await,
        50,
        "failed requests changed nothing"
    );
    assert_eq!(service.balance("erin").await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_account_answers_409_after_the_wait() {
    let service = Service::start().await;
    service.post_ok("/accounts/frank/deposit/100").await;

    // Someone else (another instance of the service, a batch job) holds the account.
    let held = service
        .locks
        .acquire_with(
            "account:frank",
            &LockOptions::new(Duration::from_secs(60)).write(),
        )
        .await
        .expect("hold the account's lock");
    let started = Instant::now();
    let (withdrawal, transfer, read) = tokio::join!(
        service.post("/accounts/frank/withdraw/10"),
        service.post("/transfer/grace/frank/10"),
        service.call(Method::GET, "/accounts/frank"),
    );
    for (status, body) in [withdrawal, transfer, read] {
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body.contains("`account:frank` is busy"), "{body}");
    }
    assert!(
        started.elapsed() >= HANDLER_WAIT - Duration::from_millis(100),
        "answered after {:?}, before the handler's wait",
        started.elapsed()
    );

    // Once the holder is done, the same request goes through.
    held.release().await.expect("release");
    assert_eq!(service.post_ok("/accounts/frank/withdraw/10").await, "90\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_answers_503_and_the_service_recovers() {
    let mut service = Service::start().await;
    service.post_ok("/accounts/heidi/deposit/100").await;

    service.server.stop().expect("stop redis-server");
    let started = Instant::now();
    let (status, body) = service.post("/accounts/heidi/withdraw/10").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("account:heidi"), "{body}");
    // Connection trouble is retried within the handler's wait, then reported.
    let bound = HANDLER_WAIT + Duration::from_secs(5);
    assert!(started.elapsed() < bound, "took {:?}", started.elapsed());
    let (status, body) = service.call(Method::GET, "/accounts/heidi").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    // Redis is back (empty: no persistence): the same state reconnects by itself.
    service.server.restart().expect("restart redis-server");
    within(PATIENCE, async {
        loop {
            match service.post("/accounts/heidi/deposit/5").await {
                (StatusCode::OK, body) => break assert_eq!(body, "5\n"),
                (StatusCode::SERVICE_UNAVAILABLE, _) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                (status, body) => panic!("unexpected {status}: {body}"),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_reads_share_the_account_and_exports_run_two_at_a_time() {
    let service = Service::start().await;
    for (account, amount) in [("ivan", 30), ("judy", 40), ("kim", 50)] {
        service
            .post_ok(&format!("/accounts/{account}/deposit/{amount}"))
            .await;
    }

    // A read held elsewhere does not hold up the service's reads.
    let reading = service
        .locks
        .acquire_with(
            "account:ivan",
            &LockOptions::new(Duration::from_secs(60)).read(),
        )
        .await
        .expect("a read share of the account");
    let started = Instant::now();
    assert_eq!(service.balance("ivan").await, 30);
    assert!(
        started.elapsed() < HANDLER_WAIT,
        "a read waited for another read"
    );
    reading.release().await.expect("release the read share");

    // Six exports at once: two permits, so three rounds, the holders counted in Redis.
    let mut redis = redis::Client::open(service.server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let started = Instant::now();
    let mut exports = JoinSet::new();
    for _ in 0..6 {
        let addr = service.addr;
        exports.spawn(async move { send(addr, Method::GET, "/export").await });
    }
    let mut most = 0;
    while !exports.is_empty() {
        let holders: i64 = redis::cmd("ZCARD")
            .arg("lock:export")
            .query_async(&mut redis)
            .await
            .expect("ZCARD");
        // The semaphore's key holds its holders and one member naming its kind.
        most = most.max((holders - 1).max(0));
        while let Some(done) = exports.try_join_next() {
            let (status, body) = done.expect("export task");
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body, "account,balance\nivan,30\njudy,40\nkim,50\n");
        }
        assert!(started.elapsed() < PATIENCE, "exports never finished");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        most <= i64::from(service::EXPORTS),
        "{most} exports at once"
    );
    assert_eq!(most, 2, "both permits were used");
    assert!(
        started.elapsed() >= service::EXPORT_PAUSE * 3,
        "six exports of {:?} each took {:?} with two at a time",
        service::EXPORT_PAUSE,
        started.elapsed()
    );
}

#[cfg(feature = "metrics")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_in_the_prometheus_format_after_locked_requests() {
    let service = Service::start().await;
    for _ in 0..3 {
        service.post_ok("/accounts/liam/deposit/10").await;
    }
    assert_eq!(service.balance("liam").await, 30);
    let (status, body) = service.call(Method::GET, "/metrics").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Other tests of this binary lock too (one recorder per process): at least these requests.
    let acquired: f64 = body
        .lines()
        .filter(|line| {
            line.starts_with("redlock_acquire_total{")
                && line.contains("outcome=\"acquired\"")
                && line.contains("kind=\"write\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        acquired >= 3.0,
        "three deposits took the account's write lock: {body}"
    );
    assert!(
        body.contains("kind=\"read\""),
        "the balance read took a read share: {body}"
    );
    assert!(
        body.contains("# TYPE redlock_acquire_wait_seconds"),
        "{body}"
    );
    assert!(body.contains("redlock_release_total{"), "{body}");
    assert!(!body.contains("liam"), "no key in any label: {body}");
}
