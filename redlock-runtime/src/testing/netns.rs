//! Network namespaces: hosts of their own on one Linux machine, for tests that need real
//! networks between servers and clients ([`Namespace`]).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

use super::ServerError;

/// A Linux network namespace made by this process (`ip netns add`), removed on drop
/// (`ip netns del`, which also removes every device and firewall rule inside it).
///
/// A fresh namespace has only its own loopback device, brought up here: a server started in it
/// ([`ServerOptions::namespace`](super::ServerOptions::namespace)) is unreachable from anywhere
/// else until the test links the namespace to others (veth pairs, `ip -n NAME ...`).
/// [`run`](Self::run) runs a closure on a thread inside the namespace: sockets it opens, and
/// threads it starts (a [`Proxy`](super::Proxy), say), belong to the namespace.
/// [`command`](Self::command) builds a process that starts inside it.
///
/// Needs Linux, root (`CAP_SYS_ADMIN`) and iproute2's `ip`; where any is missing,
/// [`create`](Self::create) fails with [`ServerError::Namespace`] saying so.
///
/// ```no_run
/// use redlock_runtime::testing::Namespace;
///
/// let host = Namespace::create("redlock-doc-a")?;
/// host.ip(&["addr", "add", "10.77.0.1/32", "dev", "lo"])?;
/// let up = host.run(|| std::net::TcpListener::bind("10.77.0.1:0").is_ok())?;
/// assert!(up);
/// # Ok::<(), redlock_runtime::testing::ServerError>(())
/// ```
#[derive(Debug)]
pub struct Namespace {
    name: String,
    /// `/run/netns/NAME`, kept open to enter the namespace.
    handle: File,
}

impl Namespace {
    /// Makes the namespace `name` and brings its loopback device up. Fails if a namespace of
    /// that name exists already.
    pub fn create(name: &str) -> Result<Namespace, ServerError> {
        ip(&["netns", "add", name]).map_err(|detail| ServerError::Namespace {
            detail: format!(
                "`ip netns add {name}` failed: {detail} (network namespaces need root and \
                 iproute2's `ip`)"
            ),
        })?;
        let path = format!("/run/netns/{name}");
        let handle = match File::open(&path) {
            Ok(handle) => handle,
            Err(e) => {
                let _ = ip(&["netns", "del", name]);
                return Err(ServerError::io(format!("opening {path}"), e));
            }
        };
        let namespace = Namespace {
            name: name.to_owned(),
            handle,
        };
        namespace.ip(&["link", "set", "lo", "up"])?;
        Ok(namespace)
    }

    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS...`; its standard error is the error's detail.
    pub fn ip(&self, args: &[&str]) -> Result<(), ServerError> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all).map_err(|detail| ServerError::Namespace {
            detail: format!("`ip {}` failed: {detail}", all.join(" ")),
        })
    }

    /// Runs `program ARGS...` inside the namespace (`iptables`, say) and returns its standard
    /// output; a failure's standard error is the error's detail.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, ServerError> {
        let shown = format!("{program} {}", args.join(" "));
        let output = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| ServerError::io(format!("running `{shown}` in {}", self.name), e))?;
        checked(output).map_err(|detail| ServerError::Namespace {
            detail: format!("`{shown}` in {} failed: {detail}", self.name),
        })
    }

    /// A command whose process starts inside the namespace (it enters it between fork and
    /// exec), with everything else inherited as usual.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        self.enter_on_exec(&mut command);
        command
    }

    /// Makes `command` start its process inside the namespace.
    pub fn enter_on_exec(&self, command: &mut Command) {
        let fd = self.handle.as_raw_fd();
        // SAFETY: between fork and exec the child only calls `setns`, which is
        // async-signal-safe, on a descriptor the parent keeps open while it spawns.
        unsafe {
            command.pre_exec(move || enter(fd));
        }
    }

    /// Runs `f` on a new thread inside the namespace and returns what it returned. Sockets
    /// opened and threads started by `f` belong to the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, ServerError> {
        let fd = self.handle.as_raw_fd();
        std::thread::scope(|scope| {
            scope
                .spawn(move || enter(fd).map(|()| f()))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
        .map_err(|e| ServerError::io(format!("entering network namespace {}", self.name), e))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Err(detail) = ip(&["netns", "del", &self.name]) {
            tracing::warn!(namespace = %self.name, %detail, "network namespace not removed");
        }
    }
}

/// Moves the calling thread into the namespace behind `fd`.
#[cfg(target_os = "linux")]
fn enter(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor owned by a live `Namespace`; it changes only the
    // calling thread's network namespace.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Network namespaces are Linux's: elsewhere (where `ip netns add` fails first anyway) entering
/// one is an error.
#[cfg(not(target_os = "linux"))]
fn enter(_fd: RawFd) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "network namespaces need Linux",
    ))
}

/// Runs `ip ARGS...`; `Err` carries why it failed.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    checked(output).map(drop)
}

/// The standard output of a successful run; otherwise its standard error (or exit status).
fn checked(output: Output) -> Result<String, String> {
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    Err(if stderr.is_empty() {
        output.status.to_string()
    } else {
        stderr
    })
}
