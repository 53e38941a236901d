//! Support for the fault and soak suites: child processes that re-run this test binary, and a
//! clock shared by processes.
//!
//! A suite declares `#[test] fn child_process_entry()`, which does nothing unless
//! `REDLOCK_FAULT_CHILD` names a role; [`ChildProcess::spawn`] runs the test binary again with
//! only that test selected and the role set, so the child is a real OS process that can be
//! killed (`SIGKILL`) or frozen (`SIGSTOP`). The child reports on stdout with [`emit`] (one line
//! per event, found by a marker so libtest's own output is ignored) and reads commands from its
//! stdin with [`commands`]; the parent reads the reports with [`ChildProcess::expect`].

#![allow(dead_code)] // each suite uses part of the support

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// Environment variable naming the role of a child process.
pub const ROLE_ENV: &str = "REDLOCK_FAULT_CHILD";

/// Marks the lines a child means for its parent.
const MARK: &str = "@@redlock-child@@ ";

/// The role this process was started for, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

/// A setting passed by the parent; panics if it is missing or does not parse.
pub fn setting<T: std::str::FromStr>(name: &str) -> T {
    let raw = std::env::var(name).unwrap_or_else(|_| panic!("child needs {name}"));
    raw.parse()
        .unwrap_or_else(|_| panic!("child setting {name}={raw:?} does not parse"))
}

/// Runs `child` with the role this process was started for, on a runtime of two worker
/// threads; does nothing in a normal test run (no role).
pub fn run_child<F: std::future::Future<Output = ()>>(child: impl FnOnce(String) -> F) {
    let Some(role) = role() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("child runtime");
    runtime.block_on(child(role));
}

/// Reports one event to the parent (child side).
pub fn emit(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{MARK}{line}");
    let _ = out.flush();
}

/// The parent's commands, one per stdin line, until stdin closes (child side).
pub fn commands() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Nanoseconds on `CLOCK_MONOTONIC`: one clock for every process on this machine, so
/// timestamps taken by different processes can be compared.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A child process running one role of this test binary; killed and reaped on drop.
pub struct ChildProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    reaped: Option<ExitStatus>,
}

impl ChildProcess {
    /// Runs `child_process_entry` of this test binary as `role`, with extra environment.
    pub fn spawn(role: &str, env: &[(&str, String)]) -> Self {
        Self::spawn_command(Command::new(Self::exe()), role, env)
    }

    /// Like [`spawn`](Self::spawn), the process starting inside the network namespace
    /// `namespace` (a host of the partition suite's network).
    pub fn spawn_in(
        namespace: &redlock::testing::Namespace,
        role: &str,
        env: &[(&str, String)],
    ) -> Self {
        Self::spawn_command(namespace.command(Self::exe()), role, env)
    }

    fn exe() -> std::path::PathBuf {
        std::env::current_exe().expect("path of the test binary")
    }

    fn spawn_command(mut command: Command, role: &str, env: &[(&str, String)]) -> Self {
        command
            .args([
                "--exact",
                "child_process_entry",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(ROLE_ENV, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start a child process");
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(at) = line.find(MARK) {
                    if tx.send(line[at + MARK.len()..].to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
            reaped: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next report, or `None` once the child's stdout is closed; panics after `limit`.
    pub async fn next(&mut self, limit: Duration) -> Option<String> {
        match tokio::time::timeout(limit, self.lines.recv()).await {
            Ok(line) => line,
            Err(_) => panic!(
                "child {} sent nothing for {limit:?} (is it alive?)",
                self.pid()
            ),
        }
    }

    /// Waits for a report whose first word is `word` and returns its other words; reports
    /// before it are skipped. Panics after `limit` or if the child exits first.
    pub async fn expect(&mut self, word: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!("child {} exited before reporting `{word}`", self.pid()),
                Err(_) => panic!(
                    "child {} did not report `{word}` within {limit:?}",
                    self.pid()
                ),
            };
            let mut words = line.split_whitespace().map(str::to_owned);
            if words.next().as_deref() == Some(word) {
                return words.collect();
            }
        }
    }

    /// Every report until the child's stdout closes (it exited), within `limit`.
    pub async fn rest(&mut self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(line)) => lines.push(line),
                Ok(None) => return lines,
                Err(_) => panic!("child {} still talking after {limit:?}", self.pid()),
            }
        }
    }

    /// Reports received so far, without waiting.
    pub fn received(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            lines.push(line);
        }
        lines
    }

    /// Sends one command line to the child's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("write to the child's stdin");
        stdin.flush().expect("flush the child's stdin");
    }

    /// Closes the child's stdin (its [`commands`] end).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Freezes the child (`SIGSTOP`).
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a frozen child continue (`SIGCONT`).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// `SIGKILL`s the child and reaps it: when this returns, the process no longer exists.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.reaped {
            return status;
        }
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGKILL);
        let status = self.child.wait().expect("reap the child");
        self.reaped = Some(status);
        status
    }

    /// Waits for the child to exit by itself, up to `limit`.
    pub async fn exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                self.reaped = Some(status);
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "child {} did not exit within {limit:?}",
                self.pid()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn signal(&self, signal: libc::c_int) {
        if self.reaped.is_some() {
            return;
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: plain syscall; the pid is our own child, not reaped yet (reaping goes through
        // `self.child`, recorded in `self.reaped`), so it cannot name another process.
        unsafe { libc::kill(pid, signal) };
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
