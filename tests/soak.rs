//! Soak: 4 worker processes × 16 tasks contend for 2 keys through `#[distributed_lock]`, while
//! holder processes are killed at random and replaced. Every critical section is recorded as
//! (key, fencing token, enter, exit) on a clock shared by all processes; an interval checker
//! then demands that no two sections of one key overlap and that tokens strictly increase per
//! key in the order the sections were entered.
//!
//! Short form (CI): 20 s. Long form: `REDLOCK_SOAK_SECONDS=300 cargo test --test soak -- --nocapture`.

mod fault_support;
mod history;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fault_support::{emit, now_ns, setting, ChildProcess};
use history::{check, Section};
use redlock::testing::RedisServer;
use redlock::{distributed_lock, LockError, LockManager};

const PROCESSES: usize = 4;
const TASKS: usize = 16;
const KEYS: usize = 2;
/// Lease of the soak locks; a killed holder blocks its key for at most this long.
const TTL_MS: u64 = 1_000;

// ---------------------------------------------------------------------------------------------
// The interval checker (`tests/history`), on hand-made histories.

fn section(key: &str, token: u64, enter: u64, exit: u64) -> Section {
    Section {
        key: key.into(),
        token,
        enter,
        exit,
        lease_end: u64::MAX,
        pid: 1,
    }
}

#[test]
fn checker_accepts_disjoint_sections_with_increasing_tokens() {
    let verdict = check(&[
        section("a", 1, 0, 10),
        section("b", 2, 5, 15),
        section("a", 3, 10, 20),
        section("b", 4, 15, 16),
        section("a", 5, 30, 40),
    ]);
    assert_eq!(verdict.sections, 5);
    assert!(verdict.overlaps.is_empty(), "{verdict:?}");
    assert!(verdict.token_regressions.is_empty(), "{verdict:?}");
}

#[test]
fn checker_counts_a_section_only_while_its_lease_protected_it() {
    // Cut off from Redis, `1` worked on past the end of its lease at 40.
    let mut cut_off = section("a", 1, 0, 100);
    cut_off.lease_end = 40;
    let verdict = check(&[cut_off.clone(), section("a", 2, 50, 60)]);
    assert!(verdict.overlaps.is_empty(), "{verdict:?}");
    let verdict = check(&[cut_off, section("a", 2, 30, 60)]);
    assert_eq!(verdict.overlaps.len(), 1, "{verdict:?}");
}

#[test]
fn checker_finds_an_overlap_even_behind_a_short_section() {
    // `1` is still inside when `3` enters, although `2` (nested in `1`) has left.
    let verdict = check(&[
        section("a", 1, 0, 100),
        section("a", 2, 10, 20),
        section("a", 3, 50, 60),
    ]);
    assert_eq!(verdict.overlaps.len(), 2, "{verdict:?}");
    assert_eq!(verdict.overlaps[1].1.token, 3);
}

#[test]
fn checker_finds_tokens_that_do_not_increase() {
    let verdict = check(&[
        section("a", 5, 0, 10),
        section("a", 5, 20, 30),
        section("a", 4, 40, 50),
    ]);
    assert!(verdict.overlaps.is_empty());
    assert_eq!(verdict.token_regressions.len(), 2, "{verdict:?}");
}

// ---------------------------------------------------------------------------------------------
// Worker processes.

/// The entry point of child processes; does nothing in a normal test run.
#[test]
fn child_process_entry() {
    let Some(role) = fault_support::role() else {
        return;
    };
    assert_eq!(role, "soak-worker", "unknown child role");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("child runtime")
        .block_on(worker());
}

/// Reports `ENTER <key> <token> <ns>` when entered and `EXIT <key> <token> <ns>` when left
/// (also when the body is dropped because the lock was lost).
struct Inside {
    key: usize,
    token: u64,
}

impl Inside {
    fn enter(key: usize, token: u64) -> Self {
        emit(format!("ENTER {key} {token} {}", now_ns()));
        Self { key, token }
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        emit(format!("EXIT {} {} {}", self.key, self.token, now_ns()));
    }
}

#[distributed_lock(key = "soak:<key>", ttl = "1s", wait = "30s", client = locks, guard = lock)]
async fn critical_section(
    locks: &LockManager,
    key: usize,
    hold: Duration,
) -> Result<(), LockError> {
    let _inside = Inside::enter(key, lock.fencing_token());
    tokio::time::sleep(hold).await;
    Ok(())
}

/// A small xorshift generator: enough randomness for hold times and key choice.
struct Rng(u64);

impl Rng {
    fn seeded(salt: u64) -> Self {
        Self(
            (now_ns()
                ^ (u64::from(std::process::id()) << 32)
                ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                | 1,
        )
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs `REDLOCK_TASKS` tasks locking random keys until stdin closes; reports `LOST`/`ERROR`
/// for failed calls and `DONE <sections>` at the end.
async fn worker() {
    let locks = LockManager::new(&setting::<String>("REDLOCK_URL")).expect("lock manager");
    let tasks: usize = setting("REDLOCK_TASKS");
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut commands = fault_support::commands();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            while commands.recv().await.is_some() {}
            stop.store(true, Ordering::SeqCst);
        });
    }
    let mut handles = Vec::new();
    for task in 0..tasks {
        let (locks, stop, done) = (locks.clone(), stop.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            let mut rng = Rng::seeded(task as u64);
            while !stop.load(Ordering::SeqCst) {
                let key = rng.below(KEYS as u64) as usize;
                // Mostly short sections; now and then one longer than the lease (renewed).
                let hold = if rng.below(1_000) == 0 {
                    Duration::from_millis(TTL_MS * 6 / 5)
                } else {
                    Duration::from_micros(rng.below(2_000))
                };
                match critical_section(&locks, key, hold).await {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(LockError::Lost { key }) => emit(format!("LOST {key}")),
                    Err(other) => emit(format!("ERROR {other}")),
                }
            }
        }));
    }
    for handle in handles {
        handle.await.expect("worker task");
    }
    emit(format!("DONE {}", done.load(Ordering::SeqCst)));
}

// ---------------------------------------------------------------------------------------------
// The soak.

/// A worker process and what it reported so far.
struct Worker {
    process: ChildProcess,
    /// Sections entered and not yet left: (key, token) → enter.
    open: HashMap<(String, u64), u64>,
}

#[derive(Default)]
struct Tally {
    sections: Vec<Section>,
    lost: usize,
    errors: Vec<String>,
    unmatched: Vec<String>,
}

impl Tally {
    /// Takes in a worker's reports; `death` closes the sections it held when it was killed.
    fn absorb(&mut self, worker: &mut Worker, lines: Vec<String>) {
        let pid = worker.process.pid();
        for line in lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["ENTER", key, token, at] => {
                    worker.open.insert(
                        (key.to_string(), token.parse().unwrap()),
                        at.parse().unwrap(),
                    );
                }
                ["EXIT", key, token, at] => {
                    let token: u64 = token.parse().unwrap();
                    match worker.open.remove(&(key.to_string(), token)) {
                        Some(enter) => self.sections.push(Section {
                            key: key.to_string(),
                            token,
                            enter,
                            exit: at.parse().unwrap(),
                            lease_end: u64::MAX,
                            pid,
                        }),
                        None => self.unmatched.push(line.clone()),
                    }
                }
                ["LOST", ..] => self.lost += 1,
                ["ERROR", ..] => self.errors.push(line.clone()),
                ["DONE", ..] => {}
                _ => self.unmatched.push(line.clone()),
            }
        }
    }

    /// Closes the sections a killed worker was inside at `death`.
    fn bury(&mut self, worker: &mut Worker, death: u64) -> usize {
        let held = worker.open.len();
        for ((key, token), enter) in worker.open.drain() {
            self.sections.push(Section {
                key,
                token,
                enter,
                exit: death,
                lease_end: u64::MAX,
                pid: worker.process.pid(),
            });
        }
        held
    }
}

fn spawn_worker(server: &RedisServer) -> Worker {
    Worker {
        process: ChildProcess::spawn(
            "soak-worker",
            &[
                ("REDLOCK_URL", server.url()),
                ("REDLOCK_TASKS", TASKS.to_string()),
            ],
        ),
        open: HashMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_keeps_mutual_exclusion_and_token_order_through_holder_kills() {
    let seconds: u64 = std::env::var("REDLOCK_SOAK_SECONDS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("REDLOCK_SOAK_SECONDS is a number of seconds")
        })
        .unwrap_or(20);
    let server = RedisServer::spawn().expect("start redis-server");
    let mut workers: Vec<Worker> = (0..PROCESSES).map(|_| spawn_worker(&server)).collect();
    let mut tally = Tally::default();
    let mut rng = Rng::seeded(0);
    let (mut kills, mut holders_killed) = (0usize, 0usize);
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut next_kill = start + Duration::from_millis(1_000 + rng.below(1_000));
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
        for worker in &mut workers {
            let lines = worker.process.received();
            tally.absorb(worker, lines);
        }
        if Instant::now() < next_kill {
            continue;
        }
        // Kill a process inside a critical section when there is one.
        let offset = rng.below(PROCESSES as u64) as usize;
        let victim = (0..PROCESSES)
            .map(|i| (offset + i) % PROCESSES)
            .find(|&i| !workers[i].open.is_empty())
            .unwrap_or(offset);
        let mut worker = std::mem::replace(&mut workers[victim], spawn_worker(&server));
        worker.process.kill();
        let death = now_ns();
        let lines = worker.process.rest(Duration::from_secs(10)).await;
        tally.absorb(&mut worker, lines);
        kills += 1;
        if tally.bury(&mut worker, death) > 0 {
            holders_killed += 1;
        }
        next_kill = Instant::now() + Duration::from_millis(1_000 + rng.below(1_500));
    }
    for worker in &mut workers {
        worker.process.close_stdin();
    }
    for worker in &mut workers {
        let lines = worker.process.rest(Duration::from_secs(30)).await;
        tally.absorb(worker, lines);
        let status = worker.process.exit(Duration::from_secs(10)).await;
        assert!(
            status.success(),
            "worker {} failed: {status}",
            worker.process.pid()
        );
        assert!(
            worker.open.is_empty(),
            "a worker that exited normally left sections open: {:?}",
            worker.open
        );
    }

    let verdict = check(&tally.sections);
    let per_key: BTreeMap<&str, usize> =
        tally
            .sections
            .iter()
            .fold(BTreeMap::new(), |mut counts, s| {
                *counts.entry(s.key.as_str()).or_default() += 1;
                counts
            });
    eprintln!(
        "soak: {PROCESSES} processes x {TASKS} tasks x {KEYS} keys for {:?}: \
         {} critical sections {per_key:?}, {kills} kills survived ({holders_killed} inside a \
         section), {} locks lost, overlaps = {}, token regressions = {}",
        start.elapsed(),
        verdict.sections,
        tally.lost,
        verdict.overlaps.len(),
        verdict.token_regressions.len(),
    );
    assert!(
        verdict.overlaps.is_empty(),
        "two holders were inside at once: {:?}",
        &verdict.overlaps[..verdict.overlaps.len().min(5)]
    );
    assert!(
        verdict.token_regressions.is_empty(),
        "fencing tokens did not increase: {:?}",
        &verdict.token_regressions[..verdict.token_regressions.len().min(5)]
    );
    assert!(tally.errors.is_empty(), "failed calls: {:?}", tally.errors);
    assert!(
        tally.unmatched.is_empty(),
        "garbled reports: {:?}",
        tally.unmatched
    );
    assert!(
        verdict.sections >= 20 * seconds as usize,
        "only {} critical sections in {seconds} s",
        verdict.sections
    );
    assert!(kills as u64 >= seconds / 3, "only {kills} kills");
    assert_eq!(per_key.len(), KEYS);
}
