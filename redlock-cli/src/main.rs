//! `redlock`: who holds which lock, since when, with which fencing token, and the
//! administrative forced release, for operators of services locked with redlock-attr.
//!
//! ```text
//! redlock [--url URL]... [--cluster] [--prefix PREFIX] <COMMAND>
//!   list [PATTERN] [--json]     one line per holder of every held lock
//!   show KEY [--json]           everything known about one key
//!   release --force KEY         remove its holders and wake its waiters
//!   watch KEY [--interval 1s]   show the key again and again until interrupted
//! ```
//!
//! Keys are written as the application names them; the prefix (`lock:` by default) is added.
//! Exit codes: 0 found (or released), 1 not found or nothing held, 2 usage or connection error.

/// Prints a line on standard output (see [`say`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::say(format_args!($($arg)*))
    };
}

mod cli;
mod show;

/// Writes `line` to standard output; a reader that went away (`redlock list | head`) ends the
/// program quietly instead of with a panic, and any other failure to write is exit code 2.
pub(crate) fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("redlock: cannot write the output: {e}");
        std::process::exit(2);
    }
}

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("redlock: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(found) if found => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(message) => {
            eprintln!("redlock: {message}");
            ExitCode::from(2)
        }
    }
}
