//! The command line, and what each command does.

use std::time::Duration;

use clap::{Parser, Subcommand};
use redlock_runtime::{LockError, LockManager};

use crate::show;

/// Who holds which lock, since when, with which fencing token; and the forced release.
#[derive(Parser, Debug)]
#[command(name = "redlock", version, about)]
pub(crate) struct Args {
    /// Redis URL; give it several times for Redlock masters (or cluster seeds with --cluster).
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        global = true
    )]
    url: Vec<String>,
    /// The URLs are seeds of a Redis Cluster.
    #[arg(long, global = true)]
    cluster: bool,
    /// The prefix the application's manager puts before every lock key.
    #[arg(long, default_value = redlock_runtime::DEFAULT_PREFIX, global = true)]
    prefix: String,
    /// How long one request to Redis may take.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, global = true)]
    timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One line per holder of every held lock whose key matches PATTERN (a glob; all by default).
    List {
        /// Which keys, as the application names them (`account:*`).
        #[arg(default_value = "*")]
        pattern: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Everything known about one key: its kind, each holder, who waits.
    Show {
        /// The key, as the application names it.
        key: String,
        /// One JSON object per line, one per holder.
        #[arg(long)]
        json: bool,
    },
    /// Remove every holder of KEY and wake its waiters. Breaks mutual exclusion for the holders
    /// removed: they run on until their next renewal finds the lock gone.
    Release {
        /// Required: this is an administrative action, not a normal release.
        #[arg(long, required = true)]
        force: bool,
        /// The key, as the application names it.
        key: String,
    },
    /// Show KEY again every INTERVAL until interrupted (Ctrl+C).
    Watch {
        /// The key, as the application names it.
        key: String,
        /// How often to look.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Stop after this many looks (never, by default).
        #[arg(long)]
        count: Option<u64>,
    },
}

/// Runs the command: `Ok(true)` when something was found (or released), `Ok(false)` when not,
/// `Err` with a message for a usage or connection error. (The manager's futures are boxed:
/// nested whole, their layout overflows rustc's query depth.)
pub(crate) async fn run(args: Args) -> Result<bool, String> {
    let locks = connect(&args).await?;
    match args.command {
        Command::List { pattern, json } => {
            let held = Box::pin(locks.list(&pattern)).await.map_err(explain)?;
            for inspection in &held {
                show::lines(inspection, json);
            }
            if held.is_empty() && !json {
                out!("no lock held matches `{pattern}`");
            }
            Ok(!held.is_empty())
        }
        Command::Show { key, json } => {
            let inspection = Box::pin(locks.inspect(&key)).await.map_err(explain)?;
            show::key(&inspection, json);
            Ok(inspection.is_held())
        }
        Command::Release { force: _, key } => {
            let removed = Box::pin(locks.force_release(&key)).await.map_err(explain)?;
            if removed {
                out!("released `{key}`: its holders were removed and its waiters woken");
            } else {
                out!("`{key}` was not held");
            }
            Ok(removed)
        }
        Command::Watch {
            key,
            interval,
            count,
        } => {
            let mut looks = 0u64;
            let mut found = false;
            loop {
                let inspection = Box::pin(locks.inspect(&key)).await.map_err(explain)?;
                found |= inspection.is_held();
                out!(
                    "-- {}",
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                );
                show::key(&inspection, false);
                looks += 1;
                if count.is_some_and(|count| looks >= count) {
                    return Ok(found);
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(found),
                }
            }
        }
    }
}

/// The manager the arguments name, checked to answer.
async fn connect(args: &Args) -> Result<LockManager, String> {
    let builder = match (args.cluster, args.url.as_slice()) {
        (true, urls) => LockManager::builder_cluster(urls),
        (false, [url]) => LockManager::builder(url.as_str()),
        (false, urls) => LockManager::builder_redlock(urls),
    };
    let locks = builder
        .prefix(args.prefix.as_str())
        .operation_timeout(args.timeout)
        .build()
        .map_err(explain)?;
    if let Err(error) = Box::pin(locks.ping()).await {
        let servers: Vec<String> = args.url.iter().map(|url| hidden(url)).collect();
        let why = match error {
            LockError::Redis { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        return Err(format!("no answer from {}: {why}", servers.join(", ")));
    }
    Ok(locks)
}

/// `url` with its password (and user) replaced by `***`, for messages.
fn hidden(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// A lock error as the tool tells it.
fn explain(error: LockError) -> String {
    match error {
        LockError::Config(message) => message,
        other => format!("{other}"),
    }
}
