//! The lost update, and the lock that prevents it.
//!
//! Account A holds $1000 in Redis. "Withdraw $200" and "transfer $300 to B" run at the same
//! time; each reads the balance, pauses 1 s (a slow service call), and writes the new balance
//! back. Without a lock the second write erases the first: A ends with $700. With
//! `#[distributed_lock(key = "account:<user_id>", ...)]` the second waits for the first: $500.
//!
//! ```sh
//! cargo run --example bank_transfer                             # two tasks, one process
//! cargo run --example bank_transfer -- --processes 4 --ops 50   # the same race across processes
//! ```
//!
//! Uses `REDIS_URL` when set, else starts a throwaway `redis-server`. Exits non-zero if the
//! locked result is wrong.

use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redlock::testing::RedisServer;
use redlock::{distributed_lock, LockError, LockManager};

/// What can go wrong in a bank operation.
#[derive(Debug, thiserror::Error)]
enum BankError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("storage: {0}")]
    Storage(#[from] redis::RedisError),
}

/// Balances, kept in Redis as plain integers.
#[derive(Clone)]
struct Bank {
    conn: redis::aio::MultiplexedConnection,
    /// How long an operation "thinks" between reading and writing a balance.
    pause: Duration,
}

/// One operation's story, for the report.
struct Done {
    started_after: Duration,
    fencing_token: Option<u64>,
}

impl Bank {
    async fn balance(&self, account: &str) -> Result<i64, BankError> {
        let balance: Option<i64> = self.conn.clone().get(format!("balance:{account}")).await?;
        Ok(balance.unwrap_or(0))
    }

    async fn set_balance(&self, account: &str, balance: i64) -> Result<(), BankError> {
        let _: () = self
            .conn
            .clone()
            .set(format!("balance:{account}"), balance)
            .await?;
        Ok(())
    }

    /// Read, think, write: correct only if nobody else touches the account meanwhile.
    async fn apply(&self, account: &str, delta: i64) -> Result<(), BankError> {
        let balance = self.balance(account).await?;
        tokio::time::sleep(self.pause).await;
        self.set_balance(account, balance + delta).await
    }
}

// ---- without a lock -------------------------------------------------------------------------

async fn withdraw_unlocked(bank: &Bank, user_id: &str, amount: i64) -> Result<Done, BankError> {
    bank.apply(user_id, -amount).await?;
    Ok(Done {
        started_after: Duration::ZERO,
        fencing_token: None,
    })
}

async fn transfer_unlocked(
    bank: &Bank,
    from: &str,
    to: &str,
    amount: i64,
) -> Result<Done, BankError> {
    bank.apply(from, -amount).await?;
    bank.apply(to, amount).await?;
    Ok(Done {
        started_after: Duration::ZERO,
        fencing_token: None,
    })
}

// ---- with the lock --------------------------------------------------------------------------

#[distributed_lock(key = "account:<user_id>", ttl = "3s", wait = "4s", guard = lock)]
async fn withdraw(
    bank: &Bank,
    user_id: &str,
    amount: i64,
    called: Instant,
) -> Result<Done, BankError> {
    let started_after = called.elapsed();
    bank.apply(user_id, -amount).await?;
    Ok(Done {
        started_after,
        fencing_token: Some(lock.fencing_token()),
    })
}

/// Both accounts are locked, in a canonical order, so a transfer B→A at the same time could not
/// deadlock with this one.
#[distributed_lock(keys = ["account:<from>", "account:<to>"], ttl = "3s", wait = "4s", guard = locks)]
async fn transfer(
    bank: &Bank,
    from: &str,
    to: &str,
    amount: i64,
    called: Instant,
) -> Result<Done, BankError> {
    let started_after = called.elapsed();
    bank.apply(from, -amount).await?;
    bank.apply(to, amount).await?;
    Ok(Done {
        started_after,
        fencing_token: locks
            .get(&format!("account:{from}"))
            .map(|g| g.fencing_token()),
    })
}

// ---- the race -------------------------------------------------------------------------------

async fn race(bank: &Bank, locked: bool) -> Result<(i64, i64), BankError> {
    bank.set_balance("A", 1000).await?;
    bank.set_balance("B", 0).await?;
    let called = Instant::now();
    let withdrawal = async {
        if locked {
            withdraw(bank, "A", 200, called).await
        } else {
            withdraw_unlocked(bank, "A", 200).await
        }
    };
    // The transfer starts a moment later, so the withdrawal always goes first.
    let transfer = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let called = Instant::now();
        if locked {
            transfer(bank, "A", "B", 300, called).await
        } else {
            transfer_unlocked(bank, "A", "B", 300).await
        }
    };
    let (w, t) = tokio::join!(withdrawal, transfer);
    let (w, t) = (w?, t?);
    if locked {
        println!(
            "  withdraw $200          started after {:>6} (fencing token {})",
            ms(w.started_after),
            w.fencing_token.unwrap_or_default()
        );
        println!(
            "  transfer $300 A -> B   started after {:>6} (fencing token {}): it waited for the lock",
            ms(t.started_after),
            t.fencing_token.unwrap_or_default()
        );
    } else {
        println!("  withdraw $200 and transfer $300 A -> B both read A = $1000, then both wrote");
    }
    Ok((bank.balance("A").await?, bank.balance("B").await?))
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

// ---- several processes ----------------------------------------------------------------------

/// A worker process: `ops` withdrawals of $1 from account P.
async fn worker(bank: &Bank, locked: bool, ops: u64) -> Result<(), BankError> {
    for _ in 0..ops {
        if locked {
            withdraw(bank, "P", 1, Instant::now()).await?;
        } else {
            withdraw_unlocked(bank, "P", 1).await?;
        }
    }
    Ok(())
}

async fn across_processes(
    bank: &Bank,
    url: &str,
    processes: u64,
    ops: u64,
) -> Result<bool, BankError> {
    let start = 1_000_000;
    let expected = start - (processes * ops) as i64;
    println!(
        "{processes} processes x {ops} withdrawals of $1 from account P (starting at ${start}):"
    );
    let mut correct = true;
    for locked in [false, true] {
        bank.set_balance("P", start).await?;
        let exe = std::env::current_exe().expect("own path");
        let children: Vec<_> = (0..processes)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args([
                        "--worker",
                        if locked { "locked" } else { "unlocked" },
                        "--ops",
                        &ops.to_string(),
                    ])
                    .env("REDIS_URL", url)
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("start a worker process")
            })
            .collect();
        for mut child in children {
            let status = child.wait().expect("worker ran");
            if !status.success() {
                eprintln!("a worker failed: {status}");
                correct = false;
            }
        }
        let balance = bank.balance("P").await?;
        let lost = balance - expected;
        let label = if locked {
            "with the lock"
        } else {
            "without a lock"
        };
        println!("  {label:<15} P = ${balance:<8} expected ${expected}: {lost} lost updates");
        if locked && lost != 0 {
            correct = false;
        }
    }
    Ok(correct)
}

// ---- main -----------------------------------------------------------------------------------

struct Args {
    processes: Option<u64>,
    ops: u64,
    worker: Option<bool>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        processes: None,
        ops: 20,
        worker: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("`{flag}` needs a value"));
        match flag.as_str() {
            "--processes" => {
                args.processes = Some(value()?.parse().map_err(|_| "--processes takes a number")?)
            }
            "--ops" => args.ops = value()?.parse().map_err(|_| "--ops takes a number")?,
            "--worker" => args.worker = Some(value()? == "locked"),
            other => {
                return Err(format!(
                    "unknown argument `{other}`; try --processes N --ops M"
                ))
            }
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    // REDIS_URL, or a throwaway server stopped at exit.
    let (_server, url) = match std::env::var("REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => match RedisServer::spawn() {
            Ok(server) => {
                let url = server.url();
                (Some(server), url)
            }
            Err(e) => {
                eprintln!("no Redis to use: REDIS_URL is not set and a throwaway redis-server could not start:\n  {e}");
                eprintln!("install Redis (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or set REDIS_URL");
                return ExitCode::from(2);
            }
        },
    };
    match run(args, &url).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("is Redis reachable at {url}?");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, url: &str) -> Result<bool, BankError> {
    let manager = LockManager::new(url)?;
    manager.ping().await?;
    redlock::install(manager).expect("installed once");
    let conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;

    if let Some(locked) = args.worker {
        let bank = Bank {
            conn,
            pause: Duration::from_millis(2),
        };
        worker(&bank, locked, args.ops).await?;
        return Ok(true);
    }
    if let Some(processes) = args.processes {
        let bank = Bank {
            conn,
            pause: Duration::from_millis(2),
        };
        return across_processes(&bank, url, processes, args.ops).await;
    }

    let bank = Bank {
        conn,
        pause: Duration::from_secs(1),
    };
    println!(
        "Account A starts with $1000. Withdraw $200 and transfer $300 to B run at the same time;"
    );
    println!("each reads the balance, pauses 1 s, and writes the new balance back.\n");

    println!("Without a lock:");
    let (a, b) = race(&bank, false).await?;
    println!("  A = ${a}, B = ${b}   <- $200 vanished: the transfer overwrote the withdrawal\n");

    println!("With #[distributed_lock(key = \"account:<user_id>\", ttl = \"3s\", wait = \"4s\")]:");
    let (a, b) = race(&bank, true).await?;
    let correct = a == 500 && b == 300;
    let verdict = if correct { "correct" } else { "WRONG" };
    println!("  A = ${a}, B = ${b}   <- {verdict}: expected A = $500, B = $300");
    Ok(correct)
}
