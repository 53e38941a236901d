//! Workload X: contention between processes. P processes × T tasks on one key, empty critical
//! section, for the library and for a polling baseline (`SET NX PX` every 2 ms, released with
//! `EVALSHA`) run by the same processes.
//!
//! The benchmark runs itself again as each child process (`BENCH_X_CHILD` set): a child
//! connects, says `ready`, waits for `go` on its standard input, runs its tasks for the given
//! time, and prints each task's cycle count and every acquire wait it measured.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redlock::{LockManager, LockOptions};

use super::Contention;

/// The setups measured: (processes, tasks per process).
pub const SETUPS: [(usize, usize); 2] = [(16, 1), (4, 4)];

const KEY: &str = "bench:x";
const TTL: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(2);
const UNLOCK: &str =
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// Who takes the lock in a run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    Library,
    Polling,
}

impl Contender {
    pub const ALL: [Contender; 2] = [Contender::Library, Contender::Polling];

    pub fn name(self) -> &'static str {
        match self {
            Self::Library => "library",
            Self::Polling => "polling",
        }
    }

    fn parse(name: &str) -> Self {
        match name {
            "library" => Self::Library,
            "polling" => Self::Polling,
            other => panic!("unknown contender `{other}`"),
        }
    }
}

/// Runs `processes` × `tasks` of `contender` for `seconds` against `url`: what it measured,
/// over every process.
pub fn run(
    url: &str,
    contender: Contender,
    processes: usize,
    tasks: usize,
    seconds: f64,
) -> Contention {
    let exe = std::env::current_exe().expect("own executable");
    let mut children: Vec<Child> = (0..processes)
        .map(|_| {
            Command::new(&exe)
                .env("BENCH_X_CHILD", contender.name())
                .env("BENCH_X_TASKS", tasks.to_string())
                .env("BENCH_X_SECONDS", seconds.to_string())
                .env("REDIS_URL", url)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a child process")
        })
        .collect();
    let mut outputs: Vec<BufReader<_>> = children
        .iter_mut()
        .map(|child| BufReader::new(child.stdout.take().expect("child stdout")))
        .collect();
    for output in &mut outputs {
        let mut line = String::new();
        output.read_line(&mut line).expect("child ready");
        assert_eq!(line.trim(), "ready", "a child did not start");
    }
    let start = Instant::now();
    for child in &mut children {
        let stdin = child.stdin.as_mut().expect("child stdin");
        stdin.write_all(b"go\n").expect("tell a child to go");
        stdin.flush().expect("flush");
    }
    let mut waits = Vec::new();
    let mut cycles = Vec::new();
    for output in &mut outputs {
        for line in output.lines() {
            let line = line.expect("child output");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("cycles") => cycles.extend(words.map(|w| w.parse::<u64>().expect("count"))),
                Some("waits") => waits
                    .extend(words.map(|w| Duration::from_nanos(w.parse().expect("a wait in ns")))),
                _ => {}
            }
        }
    }
    let elapsed = start.elapsed();
    for mut child in children {
        assert!(
            child.wait().expect("child exit").success(),
            "a child failed"
        );
    }
    waits.sort_unstable();
    let at = |p: f64| waits[((waits.len() - 1) as f64 * p) as usize];
    Contention {
        rate: cycles.iter().sum::<u64>() as f64 / elapsed.as_secs_f64(),
        p50: at(0.5),
        p99: at(0.99),
        max: waits.last().copied().unwrap_or_default(),
        min_cycles: cycles.iter().copied().min().unwrap_or(0),
        max_cycles: cycles.iter().copied().max().unwrap_or(0),
    }
}

/// The child side, when this process is one (`BENCH_X_CHILD` names the contender); `false`
/// when it is not.
pub fn child() -> bool {
    let Ok(contender) = std::env::var("BENCH_X_CHILD") else {
        return false;
    };
    let contender = Contender::parse(&contender);
    let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<f64>().ok());
    let tasks = number("BENCH_X_TASKS").expect("BENCH_X_TASKS") as usize;
    let seconds = number("BENCH_X_SECONDS").expect("BENCH_X_SECONDS");
    let url = std::env::var("REDIS_URL").expect("REDIS_URL");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let locks = LockManager::connect(&url).await.expect("manager");
        let client = redis::Client::open(url.as_str()).expect("url");
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        println!("ready");
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).expect("go");
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let script = redis::Script::new(UNLOCK);
        let tasks: Vec<_> = (0..tasks)
            .map(|task| {
                let locks = locks.clone();
                let mut conn = conn.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let token = format!("{}-{task}", std::process::id());
                    let mut waits = Vec::new();
                    while Instant::now() < until {
                        let asked = Instant::now();
                        match contender {
                            Contender::Library => {
                                let options = LockOptions::new(TTL).wait(WAIT);
                                let guard = locks.acquire_with(KEY, &options).await.expect("lock");
                                waits.push(asked.elapsed());
                                guard.release().await.expect("release");
                            }
                            Contender::Polling => {
                                poll(&mut conn, &token).await;
                                waits.push(asked.elapsed());
                                let released: i64 = script
                                    .key(format!("lock:{KEY}"))
                                    .arg(&token)
                                    .invoke_async(&mut conn)
                                    .await
                                    .expect("release");
                                assert_eq!(released, 1, "polling baseline lost its lock");
                            }
                        }
                    }
                    waits
                })
            })
            .collect();
        let mut cycles = String::from("cycles");
        let mut waits = String::from("waits");
        for task in tasks {
            let task_waits = task.await.expect("task");
            cycles.push_str(&format!(" {}", task_waits.len()));
            for wait in task_waits {
                waits.push_str(&format!(" {}", wait.as_nanos()));
            }
        }
        println!("{cycles}");
        println!("{waits}");
    });
    true
}

/// `SET NX PX` every 2 ms until it succeeds.
async fn poll(conn: &mut redis::aio::MultiplexedConnection, token: &str) {
    loop {
        let taken: Option<String> = redis::cmd("SET")
            .arg(format!("lock:{KEY}"))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(TTL.as_millis() as u64)
            .query_async(conn)
            .await
            .expect("SET");
        if taken.is_some() {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}
