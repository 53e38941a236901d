//! What a call is about: the lock an attempt claims ([`Claim`]) or a holder holds
//! ([`Holding`]), and the keys a script about it touches. Below both the calls and the shared
//! locks' requests, which build on it.

use crate::deploy::{Key, Place};
use crate::lock::token::Token;
use crate::options::LockKind;
use crate::wire::Request;

/// A lock as its holder names it: what release and extend act on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Holding<'a> {
    pub(crate) key: Key<'a>,
    /// What the key is held as.
    pub(crate) kind: LockKind,
    /// The fencing counter's Redis key, which also names the key's line of waiters.
    pub(crate) fence_key: &'a str,
    /// The holder's token.
    pub(crate) token: &'a str,
}

/// One acquisition attempt: which lock, for whom, for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim<'a> {
    pub(crate) key: Key<'a>,
    /// What the key is taken as (the exclusive lock's calls are below; the others' requests
    /// are in `shared`).
    pub(crate) kind: LockKind,
    /// The fencing counter's Redis key (on a cluster, the counter of the key's slot is named
    /// from it).
    pub(crate) fence_key: &'a str,
    /// The holder's token (a fresh one after an attempt that was rolled back).
    pub(crate) token: Token,
    /// The holder's name, recorded with the lock.
    pub(crate) holder: &'a str,
    /// The lease in milliseconds.
    pub(crate) ttl_ms: u64,
    /// For a locked call: the tag that ends the tokens of this task's plain guards, so that a
    /// key held by one of them is reported ([`Attempt::HeldByThisTask`]) instead of waited for.
    pub(crate) caller: Option<&'a str>,
    /// Whether the lock is expected to be free (no holder seen yet): then an exclusive lock's
    /// attempt is a bare `SET NX PX` pipelined with the counter's `INCR`, and the script runs
    /// only if that fails.
    pub(crate) likely_free: bool,
    /// How long the caller keeps its place in the key's line of waiters without attempting
    /// again, in milliseconds; 0: it does not wait in line (a single attempt, or on Redlock).
    pub(crate) grace_ms: u64,
    /// The channel on which the caller's process hears of a hand-off of the key to it, named
    /// in its place in line (`None`: not subscribed; a hand-off is then found by an attempt).
    pub(crate) grants: Option<&'a str>,
}

impl<'a> Claim<'a> {
    /// A call of an acquire `script` with the attempt's keys (and the `companions` a cluster
    /// must be told of besides the line) and its six arguments (token, lease, caller, grace,
    /// publishing command, grant channel), sized for `more` after them.
    pub(crate) fn script<'s>(
        &self,
        script: &'s redis::Script,
        at: Place,
        companions: &[&'static str],
        more: usize,
    ) -> Request<'s> {
        let (key, fence_key) = (self.key.redis, self.fence_key);
        let mut request = with_line_keys(script, at, key, fence_key, companions, 6 + more);
        request
            .arg(self.token.as_str())
            .arg(self.ttl_ms)
            .arg(self.caller.unwrap_or(""))
            .arg(self.grace_ms)
            .arg(at.notice.command())
            .arg(self.grants.unwrap_or(""));
        request
    }

    /// The lock this attempt would hold.
    pub(crate) fn holding(&self) -> Holding<'_> {
        Holding {
            key: self.key,
            kind: self.kind,
            fence_key: self.fence_key,
            token: self.token.as_str(),
        }
    }
}

/// A call of `script` (an acquire or release script) with the keys it touches: the lock, its
/// fencing counter, and on a cluster, which must be told every key, the key's line of waiters
/// and its other `companions` (one server's script names them itself; see
/// `scripts/line.lua`); `args` arguments follow.
pub(crate) fn with_line_keys<'s>(
    script: &'s redis::Script,
    at: Place,
    key: &str,
    fence_key: &str,
    companions: &[&'static str],
    args: usize,
) -> Request<'s> {
    let every_key = at.declares_every_key();
    let keys = if every_key { 4 + companions.len() } else { 2 };
    let mut request = Request::script(script, keys, keys + args, (4 + keys) * key.len() + 200);
    request.arg(key).arg(&*at.companion(fence_key));
    if every_key {
        for kind in ["queue", "waiters"].iter().chain(companions) {
            request.arg(at.companion_of(fence_key, kind, key));
        }
    }
    request
}
