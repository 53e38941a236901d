//! Lease arithmetic: the clock-drift allowance, the local end of a lease, and whether an answer
//! came while its lease surely still ran. Every holder counts its lease on its own monotonic
//! clock from the moment its acquire or renewal was sent.

use std::time::{Duration, Instant};

/// Allowance for clock drift between this process and Redis: 1% of the lease plus 2 ms, as in
/// the Redlock algorithm.
pub(crate) fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// The local, conservative end of a lease of `ttl` whose acquire or renewal was sent at `sent`.
pub(crate) fn lease_end(sent: Instant, ttl: Duration) -> Instant {
    sent + ttl.saturating_sub(drift(ttl))
}

/// `duration` in whole nanoseconds (saturating: 584 years).
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Whether an answer to an attempt sent at `sent` came while its lease surely still ran: within
/// the ttl less 1% for the clocks of this machine and Redis running at different rates.
pub(crate) fn answered_in_time(sent: Instant, ttl: Duration) -> bool {
    sent.elapsed() < ttl - ttl / 100
}
