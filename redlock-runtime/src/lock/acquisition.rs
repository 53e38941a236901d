//! One acquisition under way, as a small state machine: attempts, a place in the key's line,
//! notices, pauses, and leaving the line when it ends without the lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::deploy::Key;
use crate::error::LockError;
use crate::lease::answered_in_time;
use crate::lock::calls::{Attempt, Claim, Holding};
use crate::lock::token::Token;
use crate::notify::{Backoff, Subscription};
use crate::options::{LockKind, Settings};
use crate::shared::Inner;

/// How long a waiter whose subscription failed polls before it tries to subscribe again.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// How long a waiter keeps its place in a key's line without attempting again: three of the
/// longest pauses between its attempts, plus a quarter of the operation timeout for a slow
/// answer. A waiter that stopped (its process killed, say) holds the line up no longer.
fn grace(backoff_max: Duration, op_timeout: Duration) -> Duration {
    backoff_max * 3 + op_timeout / 4
}

/// One acquisition under way: what it has learnt between attempts.
///
/// While the lock is busy the waiter has a place in the key's line on the server (see
/// `scripts/queue.lua`), renewed by each attempt: a release hands the lock to the longest waiter
/// and tells it, so the lock changes hands in the release's round trip and in order of
/// arrival, across processes. The new holder's lease counts from when it sent its last attempt
/// that found the lock busy: that attempt ran before the hand-off, so the lease ends no later
/// than the one the server set.
pub(crate) struct Acquisition<'a> {
    inner: &'a Arc<Inner>,
    claim: Claim<'a>,
    ttl: Duration,
    start: Instant,
    deadline: Instant,
    backoff: Backoff,
    /// Release notices of the key, once subscribed.
    notices: Option<Subscription>,
    /// When to try subscribing (again).
    next_subscribe: Instant,
    attempts: u32,
    /// When the last attempt that found the lock busy (and kept a place in line) was sent.
    in_line_since: Option<Instant>,
    /// Whether the acquisition ended (taken, or its place in line given up).
    ended: bool,
    /// The fencing token of the last lock this acquisition took and gave back (0: none). A
    /// hand-off notice carrying it (or an older one) is void: it may arrive after the lock it
    /// tells of was given back, and the lock gone on to the next waiter.
    given_back: u64,
}

/// A lock taken: its fencing token, when the attempt that took it (or the last one before a
/// hand-off) was sent, and the holder's token it was taken with.
pub(crate) struct Taken {
    pub(crate) fence: u64,
    pub(crate) sent: Instant,
    pub(crate) token: Token,
}

/// What an attempt that did not end the acquisition leaves to wait for.
struct Retry {
    /// How long the holder's lease still runs, when known.
    holder_left: Option<Duration>,
    /// The attempt failed (rather than finding the lock busy) with this error.
    failure: Option<LockError>,
}

impl<'a> Acquisition<'a> {
    pub(crate) fn new(
        inner: &'a Arc<Inner>,
        key: Key<'a>,
        settings: &Settings,
        token: Token,
        caller: Option<&'a str>,
    ) -> Self {
        let start = Instant::now();
        Self {
            inner,
            claim: Claim {
                key,
                kind: settings.kind,
                fence_key: &inner.config.fence_key,
                token,
                holder: &inner.config.holder,
                ttl_ms: settings.ttl_ms(),
                caller,
                // A key this process waited for lately is likely busy again.
                likely_free: !inner
                    .deployment
                    .local_notices()
                    .is_some_and(|notices| notices.contended(key.redis)),
                // No place in line for a single attempt, nor on Redlock, which keeps no line (a
                // Redlock waiter polls with backoff between notices, as no hand-off comes), but
                // for a writer of a read-write lock: its place keeps new readers out.
                grace_ms: match settings.wait.is_zero()
                    || !(inner.deployment.keeps_lines() || settings.kind == LockKind::Write)
                {
                    true => 0,
                    false => {
                        grace(inner.config.backoff_max, inner.config.op_timeout).as_millis() as u64
                    }
                },
                grants: None,
            },
            ttl: settings.ttl,
            start,
            deadline: start + settings.wait,
            backoff: Backoff::new(inner.config.backoff_min, inner.config.backoff_max),
            notices: None,
            next_subscribe: start,
            attempts: 0,
            given_back: 0,
            in_line_since: None,
            ended: false,
        }
    }

    /// The lock, or why not.
    pub(crate) async fn run(mut self) -> Result<Taken, LockError> {
        if !self.claim.likely_free {
            // Contended lately: notices likely flow already (a lingering subscription), so
            // subscribing first costs nothing and hears every release after the first attempt.
            self.subscribe_if_due().await;
        }
        loop {
            let retry = match self.attempt().await {
                Ok(taken) => {
                    self.ended = taken.is_ok();
                    return taken;
                }
                Err(retry) => retry,
            };
            if Instant::now() >= self.deadline {
                self.leave_line().await;
                return Err(self.given_up(retry.failure));
            }
            let failed = retry.failure.is_some();
            if let Some(e) = retry.failure {
                tracing::debug!(error = %e, "acquire attempt failed; retrying within the wait");
            }
            // Notices are worth a round trip once a holder is seen, not while the servers do
            // not answer (the subscription would most likely fail the same way).
            if !failed && self.subscribe_if_due().await {
                // A release between the failed attempt and the subscription would not be
                // heard: look again now that notices arrive.
                continue;
            }
            if Instant::now() >= self.deadline {
                continue; // the next attempt is the last one
            }
            self.pause(retry.holder_left).await;
            if let Some(taken) = self.handed_over() {
                self.ended = true;
                return Ok(taken);
            }
        }
    }

    /// The lock, when a release handed it to this waiter and the lease it can count on is long
    /// enough to be worth it (half the ttl); otherwise the next attempt confirms it (the
    /// server knows this waiter's token as the holder's) with a lease from that attempt.
    ///
    /// A hand-off this acquisition gave back is void. With replica acknowledgement, every
    /// hand-off is confirmed by the next attempt: the release that wrote it waited for no
    /// replica, and only an acknowledged attempt makes a lock safe to hand out.
    fn handed_over(&self) -> Option<Taken> {
        let fence = self.notices.as_ref()?.granted()?;
        if fence <= self.given_back || self.inner.config.replica_acks {
            return None;
        }
        let since = self.in_line_since?;
        let lease_end = crate::lease::lease_end(since, self.ttl);
        if lease_end.saturating_duration_since(Instant::now()) < self.ttl / 2 {
            return None;
        }
        tracing::debug!(attempts = self.attempts, fence, "handed over");
        Some(Taken {
            fence,
            sent: since,
            token: self.claim.token,
        })
    }

    /// One attempt: `Ok` ends the acquisition (taken, or an error no retry can mend).
    async fn attempt(&mut self) -> Result<Result<Taken, LockError>, Retry> {
        self.attempts += 1;
        if let Some(sub) = self.notices.as_mut() {
            sub.arm();
        }
        let sent = Instant::now();
        let claim = Claim {
            grants: self.notices.as_ref().and_then(Subscription::grants),
            ..self.claim
        };
        let outcome = crate::lock::attempt(&self.inner.deployment, claim, sent).await;
        if self.inner.deployment.rolls_back_failed_attempts()
            && self.claim.grace_ms == 0
            && !matches!(outcome, Ok(Attempt::Acquired(_)))
        {
            // Rolled back: like a lock given back (a waiting writer's token names its place).
            self.fresh_token();
        }
        self.claim.likely_free = !matches!(outcome, Ok(Attempt::Busy(_) | Attempt::HeldByThisTask));
        let key = self.claim.key.name();
        let retry = |holder_left, failure| {
            Err(Retry {
                holder_left,
                failure,
            })
        };
        match outcome {
            Ok(Attempt::Acquired(fence)) if !answered_in_time(sent, self.ttl) => {
                // The lease may have run out before the answer came: this token's place in the
                // fencing order is not assured, so it is given back, not handed out.
                tracing::debug!("acquired after the lease could have run out; retrying");
                self.give_back(fence).await;
                retry(None, None)
            }
            Ok(Attempt::Acquired(fence)) => {
                let waited = self.start.elapsed();
                tracing::debug!(
                    attempts = self.attempts,
                    waited_ms = waited.as_millis() as u64,
                    fence,
                    "acquired"
                );
                Ok(Ok(Taken {
                    fence,
                    sent,
                    token: self.claim.token,
                }))
            }
            Ok(Attempt::WrongType(found)) => {
                Ok(Err(match crate::lock::shared::kind_found(&found) {
                    Some(found) => LockError::OtherKind {
                        key: key.to_owned(),
                        found,
                        asked: self.claim.kind,
                    },
                    None => LockError::WrongType {
                        key: key.to_owned(),
                        found,
                    },
                }))
            }
            Ok(Attempt::HeldByThisTask) => Ok(Err(LockError::HeldByThisTask {
                key: key.to_owned(),
            })),
            Ok(Attempt::NotReplicated {
                fence,
                acked,
                required,
            }) => {
                // Not safe to hand out (a failover could lose it): given back, retried.
                tracing::debug!(acked, required, "too few replicas acknowledged; retrying");
                self.give_back(fence).await;
                let failure = LockError::NotReplicated {
                    key: key.to_owned(),
                    acknowledged: acked,
                    required,
                };
                retry(None, Some(failure))
            }
            Ok(Attempt::Busy(pttl)) => {
                if self.claim.grace_ms > 0 {
                    self.in_line_since = Some(sent);
                }
                retry(pttl.map(Duration::from_millis), None)
            }
            Err(e) if retryable(&e) => retry(None, Some(e)),
            Err(e) => Ok(Err(e)),
        }
    }

    /// Gives the place in line up (and, if a release handed this waiter the lock meanwhile,
    /// hands it on), within the operation timeout; else the place expires after its grace.
    async fn leave_line(&mut self) {
        if self.in_line_since.is_none() {
            return;
        }
        let limit = self.inner.config.op_timeout;
        let leave = crate::lock::release(&self.inner.deployment, self.claim.holding());
        match crate::deadline::within(limit, self.claim.key.name(), leave).await {
            Ok(_) => self.in_line_since = None,
            Err(e) => tracing::debug!(error = %e, "leaving the line failed"),
        }
    }

    /// Releases a lock taken (with `fence`) but not to be handed out, and goes on with a fresh
    /// token.
    async fn give_back(&mut self, fence: u64) {
        self.given_back = self.given_back.max(fence);
        let _ = crate::lock::release(&self.inner.deployment, self.claim.holding()).await;
        self.fresh_token();
    }

    /// Takes a new token for the next attempts, after one whose lock was given back or rolled
    /// back: that release, sent on a connection that is then given up, may still reach the
    /// server after the next attempt did (over a new connection), and must not undo it. A
    /// token that names a place in the key's line is kept, as long as the place is (on Redlock,
    /// a waiting writer's).
    fn fresh_token(&mut self) {
        self.claim.token = self.claim.token.fresh();
        if let Some(sub) = self.notices.as_mut() {
            sub.expect_grant(self.claim.token.as_str());
        }
    }

    /// The error of an acquisition whose wait is over: the last attempt's failure, or busy.
    fn given_up(&self, failure: Option<LockError>) -> LockError {
        if let Some(e) = failure {
            return e;
        }
        let waited = self.start.elapsed();
        tracing::debug!(
            attempts = self.attempts,
            waited_ms = waited.as_millis() as u64,
            "busy"
        );
        LockError::Timeout {
            key: self.claim.key.name().to_owned(),
            waited,
        }
    }

    /// Subscribes to the key's release notices when not subscribed and it is time to try;
    /// whether it just subscribed.
    async fn subscribe_if_due(&mut self) -> bool {
        let now = Instant::now();
        if self.notices.is_some() || now < self.next_subscribe {
            return false;
        }
        // Bounded by the wait: a server that stops answering must not stretch it.
        let left = self.deadline.saturating_duration_since(now);
        let subscribing = self.inner.deployment.subscribe(self.claim.key.redis);
        let subscribed = tokio::time::timeout(left, subscribing)
            .await
            .unwrap_or_else(|_| {
                Some(Err(crate::error::timed_out(
                    "subscribing outlasted the wait",
                )))
            });
        match subscribed {
            Some(Ok(mut sub)) => {
                sub.expect_grant(self.claim.token.as_str());
                self.notices = Some(sub);
                return true;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "no release notices; polling");
                self.next_subscribe = Instant::now() + RESUBSCRIBE_AFTER;
            }
            None => self.next_subscribe = self.deadline,
        }
        false
    }

    /// Waits for a release notice, the next backoff step, the holder's lease or the deadline,
    /// whichever comes first.
    ///
    /// A waiter in line that hears notices has no need to poll: the release hands it the lock
    /// and tells it. It attempts again only to keep its place (a third of its grace), when the
    /// holder's lease runs out (a holder that vanished releases nothing), or at the deadline;
    /// an attempt also finds a hand-off whose notice was missed.
    async fn pause(&mut self, holder_left: Option<Duration>) {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let handed_over = self.inner.deployment.keeps_lines();
        let step = match (&self.notices, self.in_line_since) {
            (Some(_), Some(_)) if handed_over => Duration::from_millis(self.claim.grace_ms / 3),
            _ => self.backoff.next_delay(),
        };
        let mut delay = step.min(left);
        if let Some(holder_left) = holder_left {
            delay = delay.min(holder_left + Duration::from_millis(1));
        }
        match self.notices.as_mut() {
            Some(sub) => sub.wait(delay).await,
            None => tokio::time::sleep(delay).await,
        }
    }
}

impl Drop for Acquisition<'_> {
    /// An acquisition that ends without the lock (its wait over, an error, or its future
    /// dropped) gives its place in line up, in the background: a release may have handed it
    /// the lock meanwhile, which then goes on to the next waiter at once, not after a lease.
    fn drop(&mut self) {
        if self.ended || self.in_line_since.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // the place expires after its grace
        };
        let inner = self.inner.clone();
        let redis_key = self.claim.key.redis.to_owned();
        let name_at = self.claim.key.name_at;
        let token = self.claim.token.as_str().to_owned();
        let kind = self.claim.kind;
        runtime.spawn(async move {
            let lock = Holding {
                key: Key {
                    redis: &redis_key,
                    name_at,
                },
                kind,
                fence_key: &inner.config.fence_key,
                token: &token,
            };
            let limit = inner.config.op_timeout;
            let left = crate::deadline::within(
                limit,
                lock.key.name(),
                crate::lock::release(&inner.deployment, lock),
            );
            if let Err(e) = left.await {
                tracing::debug!(error = %e, "leaving the line failed; the place expires");
            }
        });
    }
}

/// Whether a failed attempt may succeed later, within the wait: connection trouble, a quorum not
/// reached, or a cluster or replica in transition (`TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`,
/// `LOADING`, `READONLY`), or sentinels that name no reachable master (during a failover).
fn retryable(error: &LockError) -> bool {
    use redis::ServerErrorKind as Kind;
    match error {
        LockError::QuorumNotReached { .. } | LockError::NotReplicated { .. } => true,
        LockError::Redis { source, .. } => {
            error.is_transient()
                || matches!(
                    source.kind(),
                    redis::ErrorKind::Server(
                        Kind::TryAgain
                            | Kind::ClusterDown
                            | Kind::MasterDown
                            | Kind::BusyLoading
                            | Kind::ReadOnly
                    )
                )
                || source.kind() == redis::ErrorKind::MasterNameNotFoundBySentinel
        }
        _ => false,
    }
}
