//! The Lua scripts of every primitive, each making one operation one atomic round trip; what
//! their answers mean is the primitive's (the exclusive lock's: `lock::calls`).
//!
//! They live in a leaf module, below the connections, so that a new connection can load the
//! scripts of every lock cycle in one round trip ([`load_all`]) without the connection layer
//! knowing any primitive: no lock operation pays for a `NOSCRIPT` reply on a fresh server. The
//! scripts are sent with `EVALSHA`; after a restart or `SCRIPT FLUSH`, a request loads a missing
//! script again by itself (`wire::Request`).

use std::sync::LazyLock;

use redis::Script;

/// The line of waiters of a key: helpers of every script that waits in it or hands over.
const LINE_LUA: &str = include_str!("scripts/line.lua");

/// The exclusive lock's use of its line (the `+` mark, the hand-off).
const QUEUE_LUA: &str = include_str!("scripts/queue.lua");

/// A shared lock's holders (read-write locks, semaphores): admission and hand-offs.
const SHARED_LUA: &str = include_str!("scripts/shared.lua");

/// `SET NX PX` plus the fencing counter; when busy, a place in line and the remaining lease.
pub(crate) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(&ACQUIRE_LUA));
static ACQUIRE_LUA: LazyLock<String> =
    LazyLock::new(|| with_queue(include_str!("scripts/acquire.lua")));

/// Compare-and-delete that hands the lock to the longest waiter, or publishes a release notice
/// (as the deployment says).
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(&RELEASE_LUA));
static RELEASE_LUA: LazyLock<String> =
    LazyLock::new(|| with_queue(include_str!("scripts/release.lua")));

/// `script` with the line's helpers in place of its `--[[queue]]` line (after the fast path of
/// a release, so that a release with nobody in line does not even define them).
fn with_queue(script: &str) -> String {
    compact(&script.replacen("--[[queue]]\n", &[LINE_LUA, QUEUE_LUA].concat(), 1))
}

/// `script` with the line's and the shared lock's helpers in place of its `--[[line]]` and
/// `--[[shared]]` lines.
fn with_shared(script: &str) -> String {
    compact(
        &script
            .replacen("--[[line]]\n", LINE_LUA, 1)
            .replacen("--[[shared]]\n", SHARED_LUA, 1),
    )
}

/// `script` without its comments and indentation: every new connection sends it, so it is kept
/// short.
fn compact(script: &str) -> String {
    let mut code = String::with_capacity(script.len());
    for line in script.lines().map(str::trim) {
        if !line.is_empty() && !line.starts_with("--") {
            code.push_str(line);
            code.push('\n');
        }
    }
    code
}

/// Undo of a failed Redlock attempt on one master: compare-and-delete without a notice.
pub(crate) static ROLLBACK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/rollback.lua")));

/// Redlock fencing: raise a master's counter to the token handed out.
pub(crate) static RAISE_FENCE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/raise_fence.lua")));

/// A share of a read-write lock or a semaphore's permit, or a place in line.
pub(crate) static SHARED_ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&SHARED_ACQUIRE_LUA));
static SHARED_ACQUIRE_LUA: LazyLock<String> =
    LazyLock::new(|| with_shared(include_str!("scripts/shared_acquire.lua")));

/// Gives a share or permit back and hands the key to the waiters it now admits.
pub(crate) static SHARED_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&SHARED_RELEASE_LUA));
static SHARED_RELEASE_LUA: LazyLock<String> =
    LazyLock::new(|| with_shared(include_str!("scripts/shared_release.lua")));

/// Renews one holder's lease of a shared lock.
pub(crate) static SHARED_EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(SHARED_EXTEND_LUA));
const SHARED_EXTEND_LUA: &str = include_str!("scripts/shared_extend.lua");

/// Undo of a failed Redlock attempt on a read-write lock on one master.
pub(crate) static SHARED_ROLLBACK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/shared_rollback.lua")));

/// What a key holds, read only (inspection).
pub(crate) static INSPECT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/inspect.lua")));

/// The administrative release of a key, whoever holds it.
pub(crate) static FORCE_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/force_release.lua")));

/// Compare-and-pexpire.
pub(crate) static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(EXTEND_LUA));
const EXTEND_LUA: &str = include_str!("scripts/extend.lua");

/// `SCRIPT LOAD`s every script in one pipeline.
///
/// A server that refuses (an ACL user without `SCRIPT LOAD`, say) is left to the per-script
/// fallback; a server that does not answer is an error, so the first operation on an
/// unreachable server fails within one operation timeout, not two.
pub(crate) async fn load_all<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    limit: std::time::Duration,
) -> Result<(), crate::error::LockError> {
    let mut pipe = redis::pipe();
    let shared = [SHARED_ACQUIRE_LUA.as_str(), SHARED_RELEASE_LUA.as_str()];
    for code in [ACQUIRE_LUA.as_str(), RELEASE_LUA.as_str(), EXTEND_LUA]
        .into_iter()
        .chain(shared)
        .chain([SHARED_EXTEND_LUA])
    {
        pipe.cmd("SCRIPT").arg("LOAD").arg(code).ignore();
    }
    let load = async {
        match pipe.query_async::<()>(conn).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_io_error() || e.is_timeout() || e.is_unrecoverable_error() => {
                Err(crate::error::LockError::redis(key, e))
            }
            Err(e) => {
                tracing::debug!(error = %e, "loading the scripts was refused");
                Ok(())
            }
        }
    };
    crate::deadline::within(limit, key, load).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composed_scripts_keep_their_code_and_drop_their_comments() {
        for code in [ACQUIRE_LUA.as_str(), RELEASE_LUA.as_str()] {
            assert!(code.contains("local function hand_off(publish)"), "{code}");
            assert!(code.contains("local function first_waiter()"), "{code}");
            assert!(!code.contains("--"), "{code}");
            assert!(!code.contains("[[queue]]"), "{code}");
        }
        for code in [SHARED_ACQUIRE_LUA.as_str(), SHARED_RELEASE_LUA.as_str()] {
            assert!(
                code.contains("local function grant(publish, now, granted)"),
                "{code}"
            );
            assert!(code.contains("local function first_waiter()"), "{code}");
            assert!(!code.contains("--"), "{code}");
            assert!(
                !code.contains("[[line]]") && !code.contains("[[shared]]"),
                "{code}"
            );
        }
        assert!(RELEASE_LUA.find("'released'") < RELEASE_LUA.find("local function leave"));
    }
}
