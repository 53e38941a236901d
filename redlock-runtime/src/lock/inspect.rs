//! Inspection: who holds a key (holder names, fencing tokens, since when, lease left), whether
//! anyone waits, and the administrative forced release. Read from what the lock scripts write
//! (`scripts/queue.lua` for the exclusive lock's value, `scripts/shared.lua` for the holders of
//! read-write locks and semaphores), with one read-only script per server.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;

use crate::deploy::{Call, Place};
use crate::error::LockError;
use crate::options::LockKind;
use crate::scripts;
use crate::wire::{Request, Wire};

/// What a key holds, as a server sees it (for Redlock: the quorum's view, with each master's).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inspection {
    /// The lock key, without the manager's prefix.
    pub key: String,
    /// What the key is in use as (a read-write lock shows as [`LockKind::Read`]); `None` when
    /// nothing holds it.
    pub kind: Option<LockKind>,
    /// Who holds it, the longest lease first.
    pub holders: Vec<Holder>,
    /// How many wait in the key's line (places not yet expired, and some that just did).
    pub waiting: usize,
    /// For Redlock: each master's view, in the order of the masters (`None`: the master did not
    /// answer); empty elsewhere.
    pub masters: Vec<Option<Inspection>>,
}

/// One holder of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// The holder's name ([`LockManagerBuilder::holder_name`](crate::LockManagerBuilder::holder_name)).
    pub name: String,
    /// What it holds: the exclusive lock, a read share or the write side, or a permit.
    pub kind: LockKind,
    /// Its fencing token; `None` for an exclusive lock taken uncontended until its first
    /// renewal writes it (its acquisition learns it only from the reply).
    pub fencing_token: Option<u64>,
    /// When it took the key (the holder's clock for an uncontended exclusive lock, else the
    /// server's).
    pub since: Option<SystemTime>,
    /// How long its lease still runs on the server.
    pub lease_remaining: Duration,
    /// Its token, as it appears in Redis (not a secret: it only names the holder).
    pub token: String,
}

impl Inspection {
    /// Whether anyone holds the key.
    pub fn is_held(&self) -> bool {
        !self.holders.is_empty()
    }

    fn empty(key: &str) -> Self {
        Self {
            key: key.to_owned(),
            kind: None,
            holders: Vec::new(),
            waiting: 0,
            masters: Vec::new(),
        }
    }
}

/// `<since> <fence> <name>`, as the scripts write who holds.
fn about(text: &str) -> (Option<SystemTime>, Option<u64>, String) {
    let mut parts = text.splitn(3, ' ');
    let since = parts
        .next()
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
    let fence = parts.next().and_then(|f| f.parse().ok());
    let name = parts.next().unwrap_or("").to_owned();
    (since, fence, name)
}

/// The key an administrative call is about, and the fencing counter its companions are named
/// from.
pub(crate) struct OnKey<'a> {
    pub(crate) key: crate::deploy::Key<'a>,
    pub(crate) fence_key: &'a str,
}

impl OnKey<'_> {
    /// A call of `script` with the key and its companions of `kinds`, then `args` arguments.
    fn script<'s>(
        &self,
        script: &'s redis::Script,
        at: Place,
        kinds: &[&'static str],
        args: usize,
    ) -> Request<'s> {
        let key = self.key.redis;
        let keys = 1 + kinds.len();
        let mut request = Request::script(script, keys, keys + args, (1 + keys) * key.len() + 100);
        request.arg(key);
        for kind in kinds {
            request.arg(at.companion_of(self.fence_key, kind, key));
        }
        request
    }
}

/// The read-only inspection of one key on the server that owns it.
pub(crate) struct Inspect<'a>(pub(crate) OnKey<'a>);

impl Call for Inspect<'_> {
    type Answer = Inspection;

    /// Bounded by the operation timeout alone (on Redlock too): no lease is at stake.
    fn lease(&self) -> Option<Duration> {
        Some(Duration::MAX)
    }

    async fn run<C: ConnectionLike + Send>(
        &self,
        wire: &mut Wire<'_, C>,
        at: Place,
    ) -> Result<Inspection, LockError> {
        let request = self
            .0
            .script(&scripts::INSPECT, at, &["queue", "holders"], 0);
        let reply: redis::Value = wire.send(&request).await?;
        let name = self.0.key.name();
        read(name, reply).map_err(|e| {
            LockError::redis(
                name,
                redis::RedisError::from((redis::ErrorKind::Parse, "inspection", e.to_string())),
            )
        })
    }
}

/// An inspection script's reply.
fn read(name: &str, reply: redis::Value) -> Result<Inspection, redis::ParsingError> {
    let items: Vec<redis::Value> = redis::from_redis_value(reply)?;
    let mut items = items.into_iter();
    let mut next = || items.next().unwrap_or(redis::Value::Nil);
    let what: String = redis::from_redis_value(next())?;
    let waiting: usize = redis::from_redis_value(next())?;
    let mut inspection = Inspection {
        waiting,
        ..Inspection::empty(name)
    };
    match what.as_str() {
        "lock" => {
            let pttl: i64 = redis::from_redis_value(next())?;
            let value: String = redis::from_redis_value(next())?;
            let (head, rest) = value.split_once('|').unwrap_or((&value, ""));
            let token = head.trim_end_matches('+').to_owned();
            let (since, fencing_token, name) = about(rest);
            inspection.kind = Some(LockKind::Exclusive);
            inspection.holders.push(Holder {
                name,
                kind: LockKind::Exclusive,
                fencing_token,
                since,
                lease_remaining: Duration::from_millis(u64::try_from(pttl).unwrap_or(0)),
                token,
            });
        }
        "shared" => {
            let now: u64 = redis::from_redis_value(next())?;
            let members: Vec<(String, String)> = redis::from_redis_value(next())?;
            let abouts: Vec<(String, String)> = redis::from_redis_value(next())?;
            let kind = members
                .iter()
                .find_map(|(member, _)| crate::lock::shared::kind_found(member));
            inspection.kind = kind;
            for (member, end) in &members {
                if member.starts_with('#') {
                    continue;
                }
                let Ok(end) = end.parse::<f64>() else {
                    continue;
                };
                if end < now as f64 {
                    continue; // its lease ran out: it holds no longer
                }
                let (token, held) = match member.strip_prefix('w') {
                    Some(token) => (token, LockKind::Write),
                    None => (member.as_str(), kind.unwrap_or(LockKind::Read)),
                };
                let (since, fencing_token, name) = abouts
                    .iter()
                    .find(|(t, _)| t == token)
                    .map_or((None, None, String::new()), |(_, text)| about(text));
                inspection.holders.push(Holder {
                    name,
                    kind: held,
                    fencing_token,
                    since,
                    lease_remaining: Duration::from_millis(end as u64 - now),
                    token: token.to_owned(),
                });
            }
            longest_first(&mut inspection.holders);
        }
        _ => {}
    }
    Ok(inspection)
}

fn longest_first(holders: &mut [Holder]) {
    holders.sort_by_key(|holder| std::cmp::Reverse(holder.lease_remaining));
}

/// The quorum's view of a Redlock key from each master's (`None`: no answer): the holders
/// a majority of masters show, each with the shortest lease and the highest token seen.
pub(crate) fn quorum(name: &str, masters: Vec<Option<Inspection>>, needed: usize) -> Inspection {
    let mut view = Inspection::empty(name);
    let seen: Vec<&Inspection> = masters.iter().flatten().collect();
    let mut tokens: Vec<&str> = seen
        .iter()
        .flat_map(|m| m.holders.iter().map(|h| h.token.as_str()))
        .collect();
    tokens.sort_unstable();
    tokens.dedup();
    for token in tokens {
        let copies: Vec<&Holder> = seen
            .iter()
            .filter_map(|m| m.holders.iter().find(|h| h.token == token))
            .collect();
        if copies.len() < needed {
            continue;
        }
        let mut holder = copies[0].clone();
        holder.lease_remaining = copies
            .iter()
            .map(|h| h.lease_remaining)
            .min()
            .unwrap_or_default();
        holder.fencing_token = copies.iter().filter_map(|h| h.fencing_token).max();
        view.holders.push(holder);
    }
    view.kind = seen.iter().find_map(|m| m.kind);
    view.waiting = seen.iter().map(|m| m.waiting).max().unwrap_or(0);
    longest_first(&mut view.holders);
    view.masters = masters;
    view
}

/// The administrative release of one key on the server that owns it; `true` when it removed a
/// holder.
pub(crate) struct ForceRelease<'a>(pub(crate) OnKey<'a>);

impl Call for ForceRelease<'_> {
    type Answer = bool;

    /// Bounded by the operation timeout alone (on Redlock too): no lease is at stake.
    fn lease(&self) -> Option<Duration> {
        Some(Duration::MAX)
    }

    async fn run<C: ConnectionLike + Send>(
        &self,
        wire: &mut Wire<'_, C>,
        at: Place,
    ) -> Result<bool, LockError> {
        let mut request = self.0.script(&scripts::FORCE_RELEASE, at, &["holders"], 1);
        request.arg(at.notice.command());
        let removed: i64 = wire.send(&request).await?;
        Ok(removed == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_holds_reads_back_from_what_the_scripts_write() {
        let (since, fence, name) = about("1700000000123 42 host:7");
        assert_eq!(
            since,
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123))
        );
        assert_eq!(fence, Some(42));
        assert_eq!(name, "host:7");
        let (_, fence, name) = about("1700000000123 - host:7");
        assert_eq!((fence, name.as_str()), (None, "host:7"));
    }
}
