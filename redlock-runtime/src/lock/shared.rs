//! Read-write locks and semaphores on the server that owns a key: the requests of their
//! acquisition attempts, releases and renewals. Both are *shared* locks, one implementation:
//! the key holds its holders, each with a lease of its own, and admits a new one by kind (a
//! reader when no writer holds, a writer when nobody holds, a permit while fewer than the
//! permits hold); see `scripts/shared.lua`. Their answers read as the exclusive lock's
//! (`calls`), so the acquisition loop, the guard, renewal and Redlock's quorum are the same.

use std::borrow::Cow;

use crate::deploy::Place;
use crate::lock::claim::{with_line_keys, Claim, Holding};
use crate::options::LockKind;
use crate::scripts;
use crate::wire::Request;

/// How a shared lock's kind is written in its key (`#rw`, `#<permits>`): the member that tells
/// a read-write lock from a semaphore, and semaphores of different permits apart.
fn kind_member(kind: LockKind) -> Cow<'static, str> {
    match kind {
        LockKind::Permits(permits) => Cow::Owned(format!("#{permits}")),
        _ => Cow::Borrowed("#rw"),
    }
}

/// The mode a holder of `kind` holds in: `w` for a writer, `r` for a reader or a permit.
fn mode(kind: LockKind) -> &'static str {
    match kind {
        LockKind::Write => "w",
        _ => "r",
    }
}

/// The holder's member in the key: its token, after a `w` for a writer.
fn member<'a>(lock: &Holding<'a>) -> Cow<'a, str> {
    match lock.kind {
        LockKind::Write => Cow::Owned(format!("w{}", lock.token)),
        _ => Cow::Borrowed(lock.token),
    }
}

/// The companion a cluster must be told of besides the line: who holds the key.
const HOLDERS: &[&str] = &["holders"];

fn flag(on: bool) -> &'static str {
    if on {
        "1"
    } else {
        "0"
    }
}

/// What a key found in use as another kind of lock is, as the scripts answer it (`#rw`,
/// `#<permits>`, `lock`); `None` for a Redis type that is no lock of ours.
pub(crate) fn kind_found(found: &str) -> Option<LockKind> {
    match found {
        "lock" => Some(LockKind::Exclusive),
        "#rw" => Some(LockKind::Read),
        _ => found.strip_prefix('#')?.parse().ok().map(LockKind::Permits),
    }
}

/// An acquisition attempt.
pub(crate) fn attempt<'s>(claim: &Claim<'_>, at: Place) -> Request<'s> {
    let mut script = claim.script(&scripts::SHARED_ACQUIRE, at, HOLDERS, 4);
    script
        .arg(&*kind_member(claim.kind))
        .arg(mode(claim.kind))
        .arg(flag(at.hand_offs))
        .arg(claim.holder);
    script
}

/// A release (or a waiter leaving the line); `notify: false` is the silent rollback of a failed
/// Redlock attempt.
pub(crate) fn release<'s>(lock: &Holding<'_>, notify: bool, at: Place) -> Request<'s> {
    let key = lock.key.redis;
    if !notify {
        let member = member(lock);
        let mut rollback = Request::script(&scripts::SHARED_ROLLBACK, 2, 4, 2 * key.len() + 120);
        rollback
            .arg(key)
            .arg(at.companion_of(lock.fence_key, "holders", key))
            .arg(&*member)
            .arg(lock.token);
        return rollback;
    }
    let mut release = with_line_keys(
        &scripts::SHARED_RELEASE,
        at,
        key,
        lock.fence_key,
        HOLDERS,
        6,
    );
    release
        .arg(lock.token)
        .arg(&*kind_member(lock.kind))
        .arg(mode(lock.kind))
        .arg(at.notice.command())
        .arg(flag(at.hand_offs))
        .arg(flag(at.notice == crate::deploy::Notice::PublishAlways));
    release
}

/// A renewal of the holder's lease.
pub(crate) fn extend<'s>(lock: &Holding<'_>, ttl_ms: u64) -> Request<'s> {
    let key = lock.key.redis;
    let mut request = Request::script(&scripts::SHARED_EXTEND, 1, 3, key.len() + 64);
    request.arg(key).arg(&*member(lock)).arg(ttl_ms);
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_a_key_is_in_use_as_reads_back() {
        for kind in [LockKind::Read, LockKind::Permits(1), LockKind::Permits(40)] {
            assert_eq!(kind_found(&kind_member(kind)), Some(kind));
        }
        assert_eq!(kind_found("lock"), Some(LockKind::Exclusive));
        assert_eq!(kind_found("list"), None);
        assert_eq!(kind_found("#x"), None);
    }
}
