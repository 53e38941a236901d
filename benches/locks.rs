//! Lock cycle benchmark: the library against a raw baseline written with the `redis` crate alone,
//! measured in the same run on the same server.
//!
//! ```sh
//! cargo bench --bench locks                      # a throwaway redis-server, full run
//! BENCH_SECONDS=1 cargo bench --bench locks      # shorter timed workloads
//! BENCH_ONLY=b cargo bench --bench locks         # one workload
//! REDIS_URL=redis://127.0.0.1:6379 cargo bench --bench locks
//! ```
//!
//! Workloads, each on a 1-thread and a 2-thread tokio runtime:
//! - A: 1 task, 1 key, N lock+unlock cycles: cycles/s, p50/p99 per cycle. The variants take
//!   turns cycle by cycle; the ratios are medians over the turns of the ratio of cycle times.
//! - B: 32 tasks on 32 distinct keys for T seconds per variant: cycles/s. The tasks run
//!   throughout and switch variant together every 50 ms, so the variants take turns a hundred
//!   times each; the ratios are of the totals.
//! - C: 16 tasks on one key, empty critical section, wait 10 s, T seconds: cycles/s, p50/p99/max
//!   acquire wait, cycles per task min/max.
//! - R: 16 tasks on one key, 9 reads for every write, a 1 ms critical section, T seconds: the
//!   read-write lock (`read` / `write`) against the exclusive lock doing the same: cycles/s,
//!   acquire wait p50/p99/max (and the writers' longest wait, which a stream of readers must
//!   not stretch), cycles per task min/max.
//! - S: 16 tasks on one key, a 1 ms critical section, T seconds: a semaphore of 4 permits
//!   against the exclusive lock: the same figures.
//! - M: memory of this process (resident set) and of Redis (`used_memory`, keys left) before
//!   and after a million cycles on distinct keys, each waited for by a second task.
//! - X: contention between processes: P processes × T tasks on one key (16 × 1 and 4 × 4),
//!   empty critical section, wait 10 s, T seconds, for the library and for a polling baseline
//!   (`SET NX PX` every 2 ms) run by the same child processes (this benchmark run again):
//!   cycles/s, p50/p99/max acquire wait, cycles per task min/max over every process.
//!
//! Also printed for B: CPU time per cycle of this process and of Redis, which explains the
//! ratios. `BENCH_ONLY=a,b,c,r,s,m,x` picks workloads; `BENCH_MEMORY_CYCLES` sizes M.
//!
//! The raw baseline: `SET key token NX PX ttl`, then `EVALSHA` compare-and-delete, on one
//! multiplexed connection. The last line printed is one JSON object with every figure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redlock::testing::{RedisServer, ServerOptions};
use redlock::{distributed_lock, LockError, LockManager, LockOptions};

#[path = "locks/processes.rs"]
mod processes;

const TTL_MS: u64 = 10_000;
const UNLOCK: &str =
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// The raw baseline: the fewest round trips a correct lock cycle can take.
#[derive(Clone)]
struct Raw {
    conn: redis::aio::MultiplexedConnection,
    unlock: Arc<redis::Script>,
}

impl Raw {
    async fn new(url: &str) -> Self {
        let client = redis::Client::open(url).expect("url");
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        Self {
            conn,
            unlock: Arc::new(redis::Script::new(UNLOCK)),
        }
    }

    async fn cycle(&mut self, key: &str, token: &str) {
        let taken: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(TTL_MS)
            .query_async(&mut self.conn)
            .await
            .expect("SET");
        assert!(taken.is_some(), "raw baseline: key unexpectedly busy");
        let released: i64 = self
            .unlock
            .key(key)
            .arg(token)
            .invoke_async(&mut self.conn)
            .await
            .expect("EVALSHA");
        assert_eq!(released, 1);
    }
}

#[distributed_lock(key = "bench:<key>", ttl = "10s", client = locks)]
async fn attribute_cycle(locks: &LockManager, key: &str) -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock(key = "bench:<key>", ttl = "10s", wait = "10s", client = locks)]
async fn attribute_contended(locks: &LockManager, key: &str) -> Result<(), LockError> {
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Via {
    Raw,
    Manager,
    Attribute,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Raw => "raw",
            Via::Manager => "manager",
            Via::Attribute => "attribute",
        }
    }
}

/// The orders A and B run the three variants in, one after the other, so that each variant
/// follows each other one equally often.
const ORDERS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [1, 2, 0],
    [2, 0, 1],
    [0, 2, 1],
    [2, 1, 0],
    [1, 0, 2],
];

/// The variants, in the order of the figures.
const VIAS: [Via; 3] = [Via::Raw, Via::Manager, Via::Attribute];

/// What B's tasks run: a variant's index in `VIAS`, or `STOP`.
const STOP: usize = 3;

struct Ctx {
    locks: LockManager,
    raw: Raw,
    /// A connection of its own for `INFO` and `DBSIZE`, so that reading the figures does not
    /// queue behind the raw baseline's requests.
    admin: Raw,
    /// The benchmark's own Redis, whose system calls can be counted (`None` with `REDIS_URL`).
    redis_pid: Option<u32>,
    seconds: f64,
    cycles: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One lock cycle through the manager.
async fn manager_cycle(locks: &LockManager, key: &str, options: &LockOptions) {
    let guard = locks.acquire_with(key, options).await.expect("acquire");
    guard.release().await.expect("release");
}

async fn one_cycle(ctx: &Ctx, raw: &mut Raw, via: Via, key: &str, token: &str) {
    match via {
        Via::Raw => raw.cycle(&format!("bench:{key}"), token).await,
        Via::Manager => {
            let options = LockOptions::new(Duration::from_millis(TTL_MS));
            manager_cycle(&ctx.locks, &format!("bench:{key}"), &options).await;
        }
        Via::Attribute => attribute_cycle(&ctx.locks, key)
            .await
            .expect("attribute cycle"),
    }
}

/// A: one task, one key; raw, manager and attribute take turns cycle by cycle, in each order
/// in turn, so a change of the machine's speed during the run hits all three alike. Per
/// variant: cycles/s, p50, p99, and each cycle's time in turn order (for per-turn ratios).
async fn uncontended(ctx: &Ctx) -> [(f64, Duration, Duration, Vec<Duration>); 3] {
    let mut raw = ctx.raw.clone();
    let token = token(0);
    for via in VIAS {
        for _ in 0..ctx.cycles / 20 {
            one_cycle(ctx, &mut raw, via, "a", &token).await;
        }
    }
    let mut laps: [Vec<Duration>; 3] = Default::default();
    for turn in 0..ctx.cycles {
        for i in ORDERS[turn % ORDERS.len()] {
            let lap = Instant::now();
            one_cycle(ctx, &mut raw, VIAS[i], "a", &token).await;
            laps[i].push(lap.elapsed());
        }
    }
    std::array::from_fn(|i| {
        let total: Duration = laps[i].iter().sum();
        let rate = laps[i].len() as f64 / total.as_secs_f64();
        let turns = laps[i].clone();
        laps[i].sort_unstable();
        (
            rate,
            percentile(&laps[i], 0.5),
            percentile(&laps[i], 0.99),
            turns,
        )
    })
}

/// The median over turns of `a[t] / b[t]`.
fn median_ratio(a: &[Duration], b: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

/// A token unique to this process and task (the raw baseline's lock value).
fn token(task: usize) -> String {
    format!("raw-{}-{task}", std::process::id())
}

/// CPU time this process has used so far (user and system, to the microsecond).
fn process_cpu() -> Duration {
    // SAFETY: `getrusage` only writes the `rusage` it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Read and write system calls (`read`, `write`, `readv`, `writev` ...) process `pid` has made.
fn syscalls(pid: &str) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .filter(|l| l.starts_with("syscr:") || l.starts_with("syscw:"))
        .map(|l| l.split_once(':')?.1.trim().parse::<u64>().ok())
        .sum()
}

/// One section of Redis's `INFO`.
async fn info(raw: &Raw, section: &str) -> String {
    let mut conn = raw.conn.clone();
    redis::cmd("INFO")
        .arg(section)
        .query_async(&mut conn)
        .await
        .expect("INFO")
}

/// CPU time the Redis server has used so far (`INFO cpu`).
async fn redis_cpu(raw: &Raw) -> Duration {
    let info = info(raw, "cpu").await;
    let seconds: f64 = info
        .lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split_once(':')?.1.trim().parse::<f64>().ok())
        .sum();
    Duration::from_secs_f64(seconds)
}

/// How long one slice of B runs one variant.
const SLICE: Duration = Duration::from_millis(50);

/// Counters read at a slice boundary of B.
struct Sample {
    at: Instant,
    cycles: [u64; 3],
    client_cpu: Duration,
    redis_cpu: Duration,
    client_calls: Option<u64>,
    redis_calls: Option<u64>,
}

/// B, per variant: cycles, time, and CPU time and read/write system calls of this process and
/// of Redis over the variant's slices.
#[derive(Clone, Copy, Default)]
struct Throughput {
    cycles: u64,
    time: Duration,
    client_cpu: Duration,
    redis_cpu: Duration,
    /// `None` where they cannot be counted (a Redis given by `REDIS_URL`).
    client_calls: Option<u64>,
    redis_calls: Option<u64>,
}

impl Throughput {
    fn rate(&self) -> f64 {
        self.cycles as f64 / self.time.as_secs_f64()
    }

    fn per_cycle_us(&self, cpu: Duration) -> f64 {
        us(cpu) / self.cycles.max(1) as f64
    }

    fn calls_per_cycle(&self, calls: Option<u64>) -> f64 {
        calls.map_or(f64::NAN, |calls| calls as f64 / self.cycles.max(1) as f64)
    }
}

/// Adds the slice between two samples, run by `via`, to the variants' figures. Time, CPU and
/// system calls go to `via`; cycles to the variant that ran them, so the few that a slice's
/// tasks finish after the switch still count for their own variant.
fn add_slice(figures: &mut [Throughput; 3], via: usize, before: &Sample, after: &Sample) {
    // Counted only where both samples could count them.
    let calls = |a: Option<u64>, b: Option<u64>, sum: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(sum.unwrap_or(0) + b.saturating_sub(a)),
        _ => sum,
    };
    for (figure, (a, b)) in figures
        .iter_mut()
        .zip(before.cycles.iter().zip(after.cycles))
    {
        figure.cycles += b - a;
    }
    let figure = &mut figures[via];
    figure.time += after.at - before.at;
    figure.client_cpu += after.client_cpu.saturating_sub(before.client_cpu);
    figure.redis_cpu += after.redis_cpu.saturating_sub(before.redis_cpu);
    figure.client_calls = calls(before.client_calls, after.client_calls, figure.client_calls);
    figure.redis_calls = calls(before.redis_calls, after.redis_calls, figure.redis_calls);
}

/// B: 32 tasks, each on its own key, for `seconds` per variant. The tasks run throughout and
/// switch variant together every `SLICE`: the variants take turns many times, so a change of
/// the machine's speed during the run hits all three alike. Returns each variant's totals, and
/// its figures in each fifth of the run.
async fn distinct_keys(ctx: &Arc<Ctx>, seconds: f64) -> ([Throughput; 3], Vec<[Throughput; 3]>) {
    let phase = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done: Arc<[std::sync::atomic::AtomicU64; 3]> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..32 {
        let (ctx, phase, done) = (ctx.clone(), phase.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut raw = ctx.raw.clone();
            let key = format!("b{t}");
            let token = token(t);
            loop {
                let via = phase.load(Ordering::Relaxed);
                if via == STOP {
                    break;
                }
                one_cycle(&ctx, &mut raw, VIAS[via], &key, &token).await;
                done[via].fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let redis_pid = ctx.redis_pid.map(|pid| pid.to_string());
    // Reads the counters, then switches the tasks to `next`.
    let boundary = async |next: usize| {
        let at = Instant::now();
        let cycles = std::array::from_fn(|i| done[i].load(Ordering::Relaxed));
        let client_cpu = process_cpu();
        let client_calls = syscalls("self");
        let redis_calls = redis_pid.as_deref().and_then(syscalls);
        phase.store(next, Ordering::Relaxed);
        Sample {
            at,
            cycles,
            client_cpu,
            client_calls,
            redis_calls,
            // A round trip: read once the switch is made, and so a little late.
            redis_cpu: redis_cpu(&ctx.admin).await,
        }
    };
    // Warm-up: each variant once, not counted.
    for via in 0..3 {
        phase.store(via, Ordering::Relaxed);
        tokio::time::sleep(SLICE * 4).await;
    }
    let blocks = (seconds / SLICE.as_secs_f64()).ceil().max(1.0) as usize;
    let turns: Vec<usize> = (0..blocks)
        .flat_map(|block| ORDERS[block % ORDERS.len()])
        .collect();
    let mut total = [Throughput::default(); 3];
    let parts = 5.min(blocks);
    let mut part = vec![[Throughput::default(); 3]; parts];
    let mut before = boundary(turns[0]).await;
    for (turn, &via) in turns.iter().enumerate() {
        tokio::time::sleep(SLICE).await;
        let after = boundary(turns.get(turn + 1).copied().unwrap_or(STOP)).await;
        add_slice(&mut total, via, &before, &after);
        add_slice(&mut part[turn * parts / turns.len()], via, &before, &after);
        before = after;
    }
    for task in tasks {
        task.await.expect("task");
    }
    (total, part)
}

/// What a workload on one contended key measured (C, R, S, and X over every process).
pub struct Contention {
    rate: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    min_cycles: u64,
    max_cycles: u64,
}

impl Contention {
    /// The figures of `waits` (every acquisition's), made in `elapsed`, by tasks that made
    /// `min_cycles` to `max_cycles` each.
    fn of(mut waits: Vec<Duration>, elapsed: Duration, min_cycles: u64, max_cycles: u64) -> Self {
        waits.sort_unstable();
        Contention {
            rate: waits.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(&waits, 0.5),
            p99: percentile(&waits, 0.99),
            max: waits.last().copied().unwrap_or_default(),
            min_cycles,
            max_cycles,
        }
    }
    /// Prints one line for `name` (with `more` after it) and adds the figures under `at`.
    fn report(&self, name: &str, more: &str, at: &str, figures: &mut Vec<(String, f64)>) {
        println!(
            "   {:<10} {:>9.0} cycles/s   wait p50 {:>7.1}us p99 {:>8.1}us max {:>8.1}us   cycles/task {}..{}{more}",
            name,
            self.rate,
            us(self.p50),
            us(self.p99),
            us(self.max),
            self.min_cycles,
            self.max_cycles
        );
        figures.push((format!("{at}_cycles_per_s"), self.rate));
        figures.push((format!("{at}_wait_p50_us"), us(self.p50)));
        figures.push((format!("{at}_wait_p99_us"), us(self.p99)));
        figures.push((format!("{at}_wait_max_us"), us(self.max)));
        figures.push((format!("{at}_cycles_per_task_min"), self.min_cycles as f64));
        figures.push((format!("{at}_cycles_per_task_max"), self.max_cycles as f64));
    }
}

/// C: 16 tasks on one key.
async fn one_key(ctx: &Arc<Ctx>, via: Via) -> Contention {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let ctx = ctx.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let options =
                LockOptions::new(Duration::from_millis(TTL_MS)).wait(Duration::from_secs(10));
            let mut waits = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let asked = Instant::now();
                match via {
                    Via::Attribute => {
                        // Measured up to the return, so this includes the release.
                        attribute_contended(&ctx.locks, "c")
                            .await
                            .expect("attribute");
                        waits.push(asked.elapsed());
                    }
                    _ => {
                        let guard = ctx
                            .locks
                            .acquire_with("bench:c", &options)
                            .await
                            .expect("acquire");
                        waits.push(asked.elapsed());
                        guard.release().await.expect("release");
                    }
                }
            }
            waits
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(ctx.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let (mut min_cycles, mut max_cycles) = (u64::MAX, 0);
    for task in tasks {
        let waits = task.await.expect("task");
        min_cycles = min_cycles.min(waits.len() as u64);
        max_cycles = max_cycles.max(waits.len() as u64);
        all.extend(waits);
    }
    Contention::of(all, start.elapsed(), min_cycles, max_cycles)
}

/// What R and S take their key as.
#[derive(Clone, Copy, PartialEq)]
enum Family {
    /// The exclusive lock, every cycle.
    Exclusive,
    /// The read-write lock: a write every tenth cycle of each task, else a read.
    ReadWrite,
    /// A semaphore of 4 permits.
    Permits,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Exclusive => "exclusive",
            Family::ReadWrite => "rwlock",
            Family::Permits => "permits4",
        }
    }
}

/// A critical section of R and S: long enough that sharing the key pays.
const SECTION: Duration = Duration::from_millis(1);

/// R and S: 16 tasks on one key, each cycle a `SECTION` under the lock taken as `family` (a
/// write every tenth cycle for the read-write lock); also the writers' longest wait.
async fn one_key_family(ctx: &Arc<Ctx>, key: &str, family: Family) -> (Contention, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for task in 0..16usize {
        let (ctx, stop, key) = (ctx.clone(), stop.clone(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            let base =
                LockOptions::new(Duration::from_millis(TTL_MS)).wait(Duration::from_secs(10));
            let (read, write, permits) = (
                base.clone().read(),
                base.clone().write(),
                base.clone().permits(4),
            );
            let (mut waits, mut writer_max) = (Vec::new(), Duration::ZERO);
            let mut cycle = task;
            while !stop.load(Ordering::Relaxed) {
                let writes = family == Family::ReadWrite && cycle % 10 == 0;
                let options = match family {
                    Family::Exclusive => &base,
                    Family::ReadWrite if writes => &write,
                    Family::ReadWrite => &read,
                    Family::Permits => &permits,
                };
                let asked = Instant::now();
                let guard = ctx
                    .locks
                    .acquire_with(&key, options)
                    .await
                    .expect("acquire");
                let waited = asked.elapsed();
                waits.push(waited);
                if writes || family == Family::Exclusive && cycle % 10 == 0 {
                    writer_max = writer_max.max(waited);
                }
                tokio::time::sleep(SECTION).await;
                guard.release().await.expect("release");
                cycle += 1;
            }
            (waits, writer_max)
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(ctx.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let (mut min_cycles, mut max_cycles, mut writer_max) = (u64::MAX, 0, Duration::ZERO);
    for task in tasks {
        let (waits, writer) = task.await.expect("task");
        min_cycles = min_cycles.min(waits.len() as u64);
        max_cycles = max_cycles.max(waits.len() as u64);
        writer_max = writer_max.max(writer);
        all.extend(waits);
    }
    let contention = Contention::of(all, start.elapsed(), min_cycles, max_cycles);
    (contention, writer_max)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4)
}

/// What M measured: cycles run, this process's resident set and Redis's memory before and
/// after, and the keys left in Redis.
struct Memory {
    cycles: u64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    redis_before_kib: u64,
    redis_after_kib: u64,
    redis_keys_after: u64,
}

/// Redis's `used_memory` in KiB, and its number of keys.
async fn redis_memory(raw: &Raw) -> (u64, u64) {
    let used = info(raw, "memory")
        .await
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let keys: u64 = redis::cmd("DBSIZE")
        .query_async(&mut raw.conn.clone())
        .await
        .expect("DBSIZE");
    (used / 1024, keys)
}

/// Locks keys `m:{from}` .. `m:{to}`, each one by two tasks at once (so every key is waited for
/// and its release notices subscribed to), 16 pairs of tasks in parallel.
async fn memory_phase(ctx: &Arc<Ctx>, from: usize, to: usize) -> u64 {
    const PAIRS: usize = 16;
    let mut tasks = Vec::new();
    for task in 0..2 * PAIRS {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let options =
                LockOptions::new(Duration::from_millis(TTL_MS)).wait(Duration::from_secs(10));
            let mut n = 0;
            for i in (from + task / 2..to).step_by(PAIRS) {
                manager_cycle(&ctx.locks, &format!("m:{i}"), &options).await;
                n += 1;
            }
            n
        }));
    }
    let mut cycles = 0;
    for task in tasks {
        cycles += task.await.expect("task");
    }
    cycles
}

/// M: memory over many cycles on distinct keys, each contended by two tasks, so the
/// release-notice table is exercised too. A tenth as many cycles on other keys warm up first.
async fn memory(ctx: &Arc<Ctx>, cycles: usize) -> Memory {
    let (warm, keys) = (cycles / 20, cycles / 2);
    memory_phase(ctx, 0, warm).await;
    let rss_before_kib = rss_kib();
    let (redis_before_kib, _) = redis_memory(&ctx.admin).await;
    let cycles = memory_phase(ctx, warm, warm + keys).await;
    let rss_after_kib = rss_kib();
    let (redis_after_kib, redis_keys_after) = redis_memory(&ctx.admin).await;
    Memory {
        cycles,
        rss_before_kib,
        rss_after_kib,
        redis_before_kib,
        redis_after_kib,
        redis_keys_after,
    }
}

struct Row {
    runtime: &'static str,
    figures: Vec<(String, f64)>,
}

async fn run_all(ctx: Arc<Ctx>, runtime: &'static str) -> Row {
    let mut figures = Vec::new();
    println!("\n== {runtime} runtime ==");
    // C is compared with the raw baseline's uncontended rate, so it needs A.
    let raw_uncontended = if selected("a") || selected("c") {
        report_a(&ctx, &mut figures).await
    } else {
        0.0
    };
    if selected("b") {
        report_b(&ctx, &mut figures).await;
    }
    if selected("c") {
        report_c(&ctx, &mut figures, raw_uncontended).await;
    }
    if selected("r") {
        report_family(&ctx, &mut figures, "r", Family::ReadWrite).await;
    }
    if selected("s") {
        report_family(&ctx, &mut figures, "s", Family::Permits).await;
    }
    Row { runtime, figures }
}

/// Runs A and reports it; returns the raw baseline's cycles/s.
async fn report_a(ctx: &Ctx, figures: &mut Vec<(String, f64)>) -> f64 {
    println!("A) 1 task, 1 key, {} cycles", ctx.cycles);
    let a = uncontended(ctx).await;
    let mut a_rate = [0.0; 3];
    for (i, via) in [Via::Raw, Via::Manager, Via::Attribute]
        .into_iter()
        .enumerate()
    {
        let (rate, p50, p99, _) = &a[i];
        a_rate[i] = *rate;
        println!(
            "   {:<10} {:>9.0} cycles/s   p50 {:>7.1}us   p99 {:>7.1}us",
            via.name(),
            rate,
            us(*p50),
            us(*p99)
        );
        figures.push((format!("a_{}_cycles_per_s", via.name()), *rate));
        figures.push((format!("a_{}_p50_us", via.name()), us(*p50)));
        figures.push((format!("a_{}_p99_us", via.name()), us(*p99)));
    }
    let a_ratio = median_ratio(&a[1].3, &a[0].3);
    let attr_ratio = median_ratio(&a[2].3, &a[1].3);
    println!(
        "   time per cycle (median over {} turns of one cycle each): manager/raw {a_ratio:.3}x, attribute/manager {attr_ratio:.3}x",
        ctx.cycles
    );
    figures.push(("a_ratio_manager_over_raw".into(), a_ratio));
    figures.push(("a_ratio_attribute_over_manager".into(), attr_ratio));
    a_rate[0]
}

/// Runs B and reports it.
async fn report_b(ctx: &Arc<Ctx>, figures: &mut Vec<(String, f64)>) {
    println!(
        "B) 32 tasks, 32 keys, {:.0}s per variant, in turns of {} ms",
        ctx.seconds,
        SLICE.as_millis()
    );
    let (total, fifths) = distinct_keys(ctx, ctx.seconds).await;
    for (via, b) in VIAS.into_iter().zip(&total) {
        let (client, redis) = (b.per_cycle_us(b.client_cpu), b.per_cycle_us(b.redis_cpu));
        let (client_calls, redis_calls) = (
            b.calls_per_cycle(b.client_calls),
            b.calls_per_cycle(b.redis_calls),
        );
        println!(
            "   {:<10} {:>9.0} cycles/s   CPU per cycle: client {client:>5.1}us, redis {redis:>5.1}us   \
             read/write calls per cycle: client {client_calls:>4.2}, redis {redis_calls:>4.2}",
            via.name(),
            b.rate()
        );
        figures.push((format!("b_{}_cycles_per_s", via.name()), b.rate()));
        figures.push((format!("b_{}_client_cpu_us", via.name()), client));
        figures.push((format!("b_{}_redis_cpu_us", via.name()), redis));
        for (side, calls) in [("client", client_calls), ("redis", redis_calls)] {
            if calls.is_finite() {
                figures.push((format!("b_{}_{side}_syscalls", via.name()), calls));
            }
        }
    }
    // Time per cycle of `a` over `b` over the whole run, and its range over the run's fifths
    // (a burst of load on the machine during part of the run shows there).
    let ratio = |t: &[Throughput; 3], a: usize, b: usize| t[b].rate() / t[a].rate();
    let spread = |a: usize, b: usize| {
        let each = fifths.iter().map(|t| ratio(t, a, b));
        let (lo, hi) = each.fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(r), hi.max(r)));
        format!("{lo:.3}..{hi:.3}")
    };
    let b_ratio = ratio(&total, 1, 0);
    let b_attr_ratio = ratio(&total, 2, 1);
    println!(
        "   time per cycle: manager/raw {b_ratio:.3}x ({} in each fifth of the run), \
         attribute/manager {b_attr_ratio:.3}x ({})",
        spread(1, 0),
        spread(2, 1)
    );
    figures.push(("b_ratio_manager_over_raw".into(), b_ratio));
    figures.push(("b_ratio_attribute_over_manager".into(), b_attr_ratio));
}

/// Runs C and reports it against the raw baseline's uncontended rate.
async fn report_c(ctx: &Arc<Ctx>, figures: &mut Vec<(String, f64)>, raw_uncontended: f64) {
    println!("C) 16 tasks, 1 key, wait 10s, {:.0}s", ctx.seconds);
    for via in [Via::Manager, Via::Attribute] {
        let c = one_key(ctx, via).await;
        let of_a = c.rate / raw_uncontended;
        println!(
            "   {:<10} {:>9.0} cycles/s ({:.2}x raw uncontended)   wait p50 {:>7.1}us p99 {:>8.1}us max {:>8.1}us   cycles/task {}..{}",
            via.name(),
            c.rate,
            of_a,
            us(c.p50),
            us(c.p99),
            us(c.max),
            c.min_cycles,
            c.max_cycles
        );
        let v = via.name();
        figures.push((format!("c_{v}_cycles_per_s"), c.rate));
        figures.push((format!("c_{v}_ratio_over_raw_uncontended"), of_a));
        figures.push((format!("c_{v}_wait_p50_us"), us(c.p50)));
        figures.push((format!("c_{v}_wait_p99_us"), us(c.p99)));
        figures.push((format!("c_{v}_wait_max_us"), us(c.max)));
        figures.push((format!("c_{v}_cycles_per_task_min"), c.min_cycles as f64));
        figures.push((format!("c_{v}_cycles_per_task_max"), c.max_cycles as f64));
    }
}

/// Runs R (`family` the read-write lock) or S (the semaphore) against the exclusive lock doing
/// the same, and reports them.
async fn report_family(
    ctx: &Arc<Ctx>,
    figures: &mut Vec<(String, f64)>,
    workload: &str,
    family: Family,
) {
    let what = match family {
        Family::ReadWrite => "9 reads per write",
        _ => "a semaphore of 4 permits",
    };
    println!(
        "{}) 16 tasks, 1 key, {what}, {} ms critical section, wait 10s, {:.0}s",
        workload.to_uppercase(),
        SECTION.as_millis(),
        ctx.seconds
    );
    let mut rates = [0.0; 2];
    for (i, variant) in [Family::Exclusive, family].into_iter().enumerate() {
        let key = format!("bench:{workload}:{}", variant.name());
        let (c, writer_max) = one_key_family(ctx, &key, variant).await;
        rates[i] = c.rate;
        let writers = match family {
            Family::ReadWrite => {
                format!("   every 10th cycle's max wait {:>8.1}us", us(writer_max))
            }
            _ => String::new(),
        };
        let at = format!("{workload}_{}", variant.name());
        c.report(variant.name(), &writers, &at, figures);
        if family == Family::ReadWrite {
            figures.push((format!("{at}_write_wait_max_us"), us(writer_max)));
        }
    }
    let ratio = rates[1] / rates[0];
    println!("   cycles/s {}/exclusive {ratio:.2}x", family.name());
    figures.push((
        format!("{workload}_ratio_{}_over_exclusive", family.name()),
        ratio,
    ));
}

/// Runs X and reports it.
fn report_x(url: &str, seconds: f64, figures: &mut Vec<(String, f64)>) {
    println!(
        "\nX) 1 key across processes, empty critical section, wait 10s, {seconds:.0}s per run"
    );
    for (processes, tasks) in processes::SETUPS {
        println!("   {processes} processes x {tasks} tasks");
        for contender in processes::Contender::ALL {
            let x = processes::run(url, contender, processes, tasks, seconds);
            let at = format!("x_{processes}x{tasks}_{}", contender.name());
            x.report(contender.name(), "", &at, figures);
        }
    }
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether workload `name` ("a", "b", "c", "r", "s", "m", "x") is selected by `BENCH_ONLY` (all by default).
fn selected(name: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|w| w.trim() == name))
}

fn main() {
    if processes::child() {
        return;
    }
    let seconds = env_f64("BENCH_SECONDS", 5.0);
    let cycles = env_f64("BENCH_CYCLES", 20_000.0) as usize;
    let memory_cycles = env_f64("BENCH_MEMORY_CYCLES", 1_000_000.0) as usize;
    let (server, url) = match std::env::var("REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            // In a session of its own, so the kernel schedules it as the separate service a
            // real Redis is, not as one more thread of this benchmark.
            let server = RedisServer::spawn_with(ServerOptions::new().own_session(true))
                .expect("start redis-server (or set REDIS_URL)");
            let url = server.url();
            (Some(server), url)
        }
    };
    println!("redlock lock-cycle benchmark on {url}");
    let mut rows = Vec::new();
    let mut memory_figures = None;
    for (name, threads) in [("1-thread", 1usize), ("2-thread", 2)] {
        let rt = if threads == 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
        }
        .expect("runtime");
        let row = rt.block_on(async {
            let ctx = Arc::new(Ctx {
                locks: match std::env::var("BENCH_CONNECTIONS") {
                    Ok(n) => LockManager::builder(url.as_str())
                        .connections(n.parse().expect("BENCH_CONNECTIONS: a number"))
                        .build(),
                    Err(_) => LockManager::new(&url),
                }
                .expect("manager"),
                raw: Raw::new(&url).await,
                admin: Raw::new(&url).await,
                redis_pid: server.as_ref().and_then(RedisServer::pid),
                seconds,
                cycles,
            });
            let row = run_all(ctx.clone(), name).await;
            if threads == 2 && selected("m") {
                let m = memory(&ctx, memory_cycles).await;
                println!(
                    "\nM) {} cycles on {} distinct keys, each waited for by a second task:\n   \
                     this process resident {} KiB -> {} KiB; Redis used_memory {} KiB -> {} KiB, {} keys left",
                    m.cycles,
                    m.cycles / 2,
                    m.rss_before_kib,
                    m.rss_after_kib,
                    m.redis_before_kib,
                    m.redis_after_kib,
                    m.redis_keys_after
                );
                memory_figures = Some(m);
            }
            row
        });
        rows.push(row);
    }
    let mut x_figures = Vec::new();
    if selected("x") {
        report_x(&url, seconds, &mut x_figures);
    }
    let mut json = String::from("{");
    for row in &rows {
        for (name, value) in &row.figures {
            json.push_str(&format!(
                "\"{}_{}\":{:.3},",
                row.runtime.replace('-', "_"),
                name,
                value
            ));
        }
    }
    if let Some(m) = memory_figures {
        json.push_str(&format!(
            "\"m_cycles\":{},\"m_rss_before_kib\":{},\"m_rss_after_kib\":{},\
             \"m_redis_before_kib\":{},\"m_redis_after_kib\":{},\"m_redis_keys_after\":{},",
            m.cycles,
            m.rss_before_kib,
            m.rss_after_kib,
            m.redis_before_kib,
            m.redis_after_kib,
            m.redis_keys_after
        ));
    }
    for (name, value) in &x_figures {
        json.push_str(&format!("\"{name}\":{value:.3},"));
    }
    json.pop();
    json.push('}');
    println!("{json}");
}
