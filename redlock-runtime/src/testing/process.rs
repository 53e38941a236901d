//! Processes, ports and logs: finding the server binary, a free port, signals, log tails, and
//! rendering replies.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use redis::Value;

use super::{ServerError, BIN_ENV, BIN_NAME, LOG_TAIL_LINES};

/// Find the `redis-server` binary: `override_bin` (the value of `REDIS_SERVER_BIN`) if set,
/// else `redis-server` in `path_var` (the value of `PATH`).
pub(super) fn find_binary(
    override_bin: Option<OsString>,
    path_var: Option<OsString>,
) -> Result<PathBuf, ServerError> {
    if let Some(bin) = override_bin.filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        let missing = |detail: String| ServerError::MissingBinary {
            binary: bin.display().to_string(),
            detail,
        };
        if bin.components().count() > 1 {
            return if is_executable_file(&bin) {
                Ok(bin)
            } else {
                Err(missing(format!(
                    "{BIN_ENV}={} is not an executable file",
                    bin.display()
                )))
            };
        }
        return search_path(&bin, path_var.as_ref())
            .ok_or_else(|| missing(format!("{BIN_ENV}={} is not on PATH", bin.display())));
    }
    search_path(Path::new(BIN_NAME), path_var.as_ref()).ok_or_else(|| ServerError::MissingBinary {
        binary: BIN_NAME.into(),
        detail: "not on PATH".into(),
    })
}

/// How to install `binary` (a name or a path), told by its file name: the Redis and Valkey
/// packages of Debian and Homebrew; for any other server, only that it must be installed.
pub(super) fn install_hint(binary: &str) -> String {
    let name = Path::new(binary)
        .file_name()
        .map_or_else(|| binary.into(), |n| n.to_string_lossy());
    if name.starts_with("valkey") {
        "install it with `apt-get install -t bookworm-backports valkey-server` on Debian \
         (the bookworm-backports suite) or `brew install valkey` on macOS"
            .into()
    } else if name.starts_with("redis") {
        "install it with `apt-get install redis-server` on Debian/Ubuntu or \
         `brew install redis` on macOS"
            .into()
    } else {
        format!("install `{name}`")
    }
}

pub(super) fn search_path(name: &Path, path_var: Option<&OsString>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable_file(candidate))
}

pub(super) fn is_executable_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A port that was free a moment ago on `127.0.0.1`.
pub(super) fn free_port() -> Result<u16, ServerError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| ServerError::io("binding 127.0.0.1:0 to find a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| ServerError::io("reading the free port", e))?
        .port();
    Ok(port)
}

/// The child if it has not exited; reaps (and forgets) it if it has.
pub(super) fn live_child(slot: &mut Option<Child>) -> Option<&mut Child> {
    let exited = match slot.as_mut() {
        None => return None,
        Some(child) => !matches!(child.try_wait(), Ok(None)),
    };
    if exited {
        *slot = None;
    }
    slot.as_mut()
}

pub(super) fn send_signal(child: &Child, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(child.id())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: `kill` has no memory-safety preconditions. The pid is that of our own child,
    // which has not been reaped (callers hold it and only reap through `Child`), so it cannot
    // refer to an unrelated process.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `SIGCONT` (if paused) and `SIGKILL` the child unless it already exited, then reap it.
pub(super) fn kill_and_reap(child: &mut Child, paused: bool) -> Result<(), ServerError> {
    let reap = |e| ServerError::io("reaping redis-server", e);
    if child.try_wait().map_err(reap)?.is_none() {
        if paused {
            let _ = send_signal(child, libc::SIGCONT);
        }
        send_signal(child, libc::SIGKILL)
            .map_err(|e| ServerError::io("sending SIGKILL to redis-server", e))?;
        child.wait().map_err(reap)?;
    }
    Ok(())
}

pub(super) fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The last lines written to `path` since `offset` (empty if none or unreadable).
pub(super) fn log_tail(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    let read = fs::File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_end(&mut bytes)
    });
    if read.is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Percent-encode everything but RFC 3986 unreserved characters (and `/` if `keep_slash`).
pub(super) fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The message of an error reply as Redis sent it, e.g. `WRONGTYPE Operation against ...`.
pub(super) fn error_message(err: &redis::ServerError) -> String {
    match err.details() {
        Some(details) => format!("{} {details}", err.code()),
        None => err.code().to_owned(),
    }
}

/// A reply as text; nested error replies read `(error) MESSAGE`.
pub(super) fn render(value: &Value) -> String {
    let join =
        |items: &mut dyn Iterator<Item = &Value>| items.map(render).collect::<Vec<_>>().join("\n");
    match value {
        Value::Nil => "(nil)".into(),
        Value::Int(n) => n.to_string(),
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => s.clone(),
        Value::Okay => "OK".into(),
        Value::Double(d) => d.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Array(items) | Value::Set(items) | Value::Push { data: items, .. } => {
            join(&mut items.iter())
        }
        Value::Map(pairs) => join(&mut pairs.iter().flat_map(|(k, v)| [k, v])),
        Value::Attribute { data, .. } => render(data),
        Value::ServerError(err) => format!("(error) {}", error_message(err)),
        other => format!("{other:?}"),
    }
}

/// Polls `condition` every 20 ms until it holds or `limit` passes; `log_tail` adds the servers'
/// logs to the error.
pub(crate) fn wait_until(
    what: &str,
    limit: Duration,
    mut condition: impl FnMut() -> Result<bool, ServerError>,
    log_tail: impl FnOnce() -> String,
) -> Result<(), ServerError> {
    let started = Instant::now();
    let mut last_error = String::new();
    loop {
        match condition() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = e.to_string(),
        }
        if started.elapsed() > limit {
            return Err(ServerError::NotReady {
                waited: started.elapsed(),
                last_error: format!("waiting for {what}: {last_error}"),
                log_tail: log_tail(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
