//! A bank service over HTTP whose handlers are locked with `#[distributed_lock]`.
//!
//! Balances live in Redis as plain integers. Every mutating handler reads a balance, pauses
//! (a slow fraud check, say) and writes the new balance back: without a lock, two concurrent
//! requests on one account would lose an update. The attribute takes the lock key from the
//! handler's `Path` extractor pattern and the manager from its `State`:
//!
//! ```ignore
//! #[distributed_lock(key = "account:<id>", mode = "write", ttl = "3s", wait = "5s", client = app.locks)]
//! async fn deposit(
//!     State(app): State<App>,
//!     Path((id, amount)): Path<(String, i64)>,
//! ) -> Result<String, ApiError> { ... }
//! ```
//!
//! An account's lock is a read-write lock: the mutating handlers take it with `mode = "write"`,
//! one at a time, and a balance read with `mode = "read"`, so reads run together and never see
//! a balance that a deposit in progress is about to change. A transfer locks both accounts
//! with `keys = [...]`, taken in one canonical order, so the transfers A→B and B→A never
//! deadlock. The export of every balance is a slow job limited to two at a time across every
//! replica of the service, a semaphore: `permits = 2`. A lock still busy after `wait` answers
//! `409 Conflict` (with `Retry-After`); Redis trouble answers `503 Service Unavailable`.
//!
//! ```sh
//! cargo run --example service                        # throwaway redis-server, port 3000
//! REDIS_URL=redis://127.0.0.1:6379 PORT=8080 cargo run --example service
//!
//! curl -X POST localhost:3000/accounts/alice/deposit/100
//! curl -X POST localhost:3000/accounts/alice/withdraw/30
//! curl -X POST localhost:3000/transfer/alice/bob/20
//! curl localhost:3000/accounts/bob
//! curl localhost:3000/export
//! curl localhost:3000/metrics   # Prometheus; the lock manager's with `--features metrics`
//! ```
//!
//! Without `REDIS_URL` the example starts a throwaway `redis-server` (it must be installed);
//! Ctrl+C stops both. `PORT=0` picks a free port. `tests/service.rs` runs this very router
//! against a real Redis and fires concurrent requests at it over HTTP.

use std::net::Ipv4Addr;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use redlock::testing::RedisServer;
use redlock::{distributed_lock, LockError, LockManager};

/// How long a mutating handler "thinks" between reading a balance and writing it back: long
/// enough that concurrent requests really interleave.
pub const PAUSE: Duration = Duration::from_millis(5);

/// How long an export takes at least (a slow job: a report, a file written elsewhere).
pub const EXPORT_PAUSE: Duration = Duration::from_millis(200);

/// How many exports may run at once, across every replica of the service.
pub const EXPORTS: u32 = 2;

/// The shared state of the handlers.
#[derive(Clone)]
pub struct App {
    /// The lock manager the handlers lock with (`client = app.locks`).
    pub locks: LockManager,
    /// Where the balances are kept (reconnects by itself after an outage).
    pub redis: ConnectionManager,
    /// What `GET /metrics` renders: the process's metrics, the lock manager's among them.
    pub metrics: PrometheusHandle,
}

/// The process's Prometheus recorder, installed as the `metrics` recorder on first use. With
/// the `metrics` feature of `redlock` (`cargo run --example service --features metrics`), the
/// lock manager's counters and histograms are in it.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder installed first keeps its place; this one then renders nothing.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

impl App {
    /// Connects to the Redis at `url` for the balances; `locks` may point elsewhere.
    pub async fn connect(locks: LockManager, url: &str) -> Result<App, redis::RedisError> {
        let redis = redis::Client::open(url)?.get_connection_manager().await?;
        Ok(App {
            locks,
            redis,
            metrics: prometheus(),
        })
    }

    /// The balance of `account`; an account never seen holds 0.
    pub async fn balance(&self, account: &str) -> Result<i64, ApiError> {
        let balance: Option<i64> = self.redis.clone().get(balance_key(account)).await?;
        Ok(balance.unwrap_or(0))
    }

    /// Overwrites balances: correct only while the caller holds the accounts' locks.
    async fn set_balances(&self, balances: &[(&str, i64)]) -> Result<(), ApiError> {
        let items: Vec<(String, i64)> = balances
            .iter()
            .map(|&(account, balance)| (balance_key(account), balance))
            .collect();
        let () = self.redis.clone().mset(&items).await?;
        Ok(())
    }

    /// Every account and its balance, sorted by account, found with `SCAN` in batches.
    async fn balances(&self) -> Result<Vec<(String, i64)>, ApiError> {
        let mut redis = self.redis.clone();
        let mut keys: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("balance:*")
                .arg("COUNT")
                .arg(100)
                .query_async(&mut redis)
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<i64>> = redis.mget(&keys).await?;
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(key, value)| (key["balance:".len()..].to_owned(), value.unwrap_or(0)))
            .collect())
    }
}

fn balance_key(account: &str) -> String {
    format!("balance:{account}")
}

/// What a request can fail with, and the HTTP status it answers.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The lock was busy for the whole wait (409), or the lock service failed (503).
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The balance store failed (503).
    #[error("balance store unavailable: {0}")]
    Storage(#[from] redis::RedisError),
    /// The amount is zero or negative (400).
    #[error("amount must be positive, got {0}")]
    InvalidAmount(i64),
    /// A transfer from an account to itself (400).
    #[error("cannot transfer from `{0}` to itself")]
    SameAccount(String),
    /// A withdrawal or transfer larger than the balance (422).
    #[error("insufficient funds in `{account}`: balance {balance}, requested {amount}")]
    InsufficientFunds {
        /// The account.
        account: String,
        /// Its balance.
        balance: i64,
        /// What was asked for.
        amount: i64,
    },
    /// The new balance would not fit in an `i64` (422).
    #[error("balance of `{0}` would overflow")]
    Overflow(String),
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Lock(LockError::Timeout { .. }) => StatusCode::CONFLICT,
            ApiError::Lock(LockError::Config(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Lock(_) | ApiError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InvalidAmount(_) | ApiError::SameAccount(_) => StatusCode::BAD_REQUEST,
            ApiError::InsufficientFunds { .. } | ApiError::Overflow(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = format!("{self}\n");
        if status == StatusCode::CONFLICT {
            // The account is busy, not broken: the client may simply try again.
            (status, [(header::RETRY_AFTER, "1")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}

/// The router: the handlers below on their routes, sharing `state`.
pub fn app(state: App) -> Router {
    Router::new()
        .route("/accounts/{id}", get(balance))
        .route("/accounts/{id}/deposit/{amount}", post(deposit))
        .route("/accounts/{id}/withdraw/{amount}", post(withdraw))
        .route("/transfer/{from}/{to}/{amount}", post(transfer))
        .route("/export", get(export))
        .route("/metrics", get(scrape))
        .with_state(state)
}

/// `GET /metrics`: the Prometheus text exposition of the process's metrics.
async fn scrape(State(app): State<App>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}

/// `GET /accounts/{id}`: the balance, as a number. Reads share the account's lock: they run
/// together, and wait only for a deposit, withdrawal or transfer in progress.
#[distributed_lock(key = "account:<id>", mode = "read", ttl = "3s", wait = "5s", client = app.locks)]
async fn balance(State(app): State<App>, Path(id): Path<String>) -> Result<String, ApiError> {
    Ok(format!("{}\n", app.balance(&id).await?))
}

/// `GET /export`: every account and its balance, one `account,balance` line each, sorted. At
/// most [`EXPORTS`] run at once across the service's replicas; the next waits for a permit.
#[distributed_lock(key = "export", permits = 2, ttl = "10s", wait = "10s", client = app.locks)]
async fn export(State(app): State<App>) -> Result<String, ApiError> {
    let balances = app.balances().await?;
    tokio::time::sleep(EXPORT_PAUSE).await;
    let mut csv = String::from("account,balance\n");
    for (account, balance) in balances {
        csv.push_str(&format!("{account},{balance}\n"));
    }
    Ok(csv)
}

/// `POST /accounts/{id}/deposit/{amount}`: the new balance.
#[distributed_lock(key = "account:<id>", mode = "write", ttl = "3s", wait = "5s", client = app.locks)]
async fn deposit(
    State(app): State<App>,
    Path((id, amount)): Path<(String, i64)>,
) -> Result<String, ApiError> {
    let amount = positive(amount)?;
    let balance = app.balance(&id).await?;
    tokio::time::sleep(PAUSE).await;
    let balance = balance
        .checked_add(amount)
        .ok_or_else(|| ApiError::Overflow(id.clone()))?;
    app.set_balances(&[(&id, balance)]).await?;
    Ok(format!("{balance}\n"))
}

/// `POST /accounts/{id}/withdraw/{amount}`: the new balance, or 422 when it is too low.
#[distributed_lock(key = "account:<id>", mode = "write", ttl = "3s", wait = "5s", client = app.locks)]
async fn withdraw(
    State(app): State<App>,
    Path((id, amount)): Path<(String, i64)>,
) -> Result<String, ApiError> {
    let amount = positive(amount)?;
    let balance = app.balance(&id).await?;
    tokio::time::sleep(PAUSE).await;
    let balance = debit(&id, balance, amount)?;
    app.set_balances(&[(&id, balance)]).await?;
    Ok(format!("{balance}\n"))
}

/// `POST /transfer/{from}/{to}/{amount}`: both new balances, `from` first.
#[distributed_lock(
    keys = ["account:<from>", "account:<to>"],
    mode = "write",
    ttl = "3s",
    wait = "5s",
    client = app.locks
)]
async fn transfer(
    State(app): State<App>,
    Path((from, to, amount)): Path<(String, String, i64)>,
) -> Result<String, ApiError> {
    let amount = positive(amount)?;
    if from == to {
        return Err(ApiError::SameAccount(from));
    }
    let (from_balance, to_balance) = (app.balance(&from).await?, app.balance(&to).await?);
    tokio::time::sleep(PAUSE).await;
    let from_balance = debit(&from, from_balance, amount)?;
    let to_balance = to_balance
        .checked_add(amount)
        .ok_or_else(|| ApiError::Overflow(to.clone()))?;
    // One MSET: both balances change together, or neither does.
    app.set_balances(&[(&from, from_balance), (&to, to_balance)])
        .await?;
    Ok(format!("{from_balance} {to_balance}\n"))
}

fn positive(amount: i64) -> Result<i64, ApiError> {
    if amount > 0 {
        Ok(amount)
    } else {
        Err(ApiError::InvalidAmount(amount))
    }
}

fn debit(account: &str, balance: i64, amount: i64) -> Result<i64, ApiError> {
    if balance < amount {
        return Err(ApiError::InsufficientFunds {
            account: account.to_owned(),
            balance,
            amount,
        });
    }
    Ok(balance - amount)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Kept alive until the end of `main`: dropping it stops the throwaway server.
    let (url, _server) = match std::env::var("REDIS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let server = RedisServer::spawn()?;
            println!("started a throwaway redis-server at {}", server.url());
            (server.url(), Some(server))
        }
    };
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().map_err(|e| format!("PORT={port:?}: {e}"))?,
        Err(_) => 3000,
    };

    let locks = LockManager::new(&url)?;
    locks.ping().await?;
    let state = App::connect(locks, &url).await?;
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
    let base = format!("http://{}", listener.local_addr()?);

    println!("bank service listening on {base} (Redis: {url}); try:");
    println!("  curl -X POST {base}/accounts/alice/deposit/100");
    println!("  curl -X POST {base}/accounts/alice/withdraw/30");
    println!("  curl -X POST {base}/transfer/alice/bob/20");
    println!("  curl {base}/accounts/bob");
    println!("  curl {base}/export");
    println!("  curl {base}/metrics");
    println!("Ctrl+C stops the service (and the throwaway redis-server).");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
