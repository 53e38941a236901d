//! Per-lock options: lease, wait, renewal.

use std::time::Duration;

use crate::error::LockError;

/// The longest lease accepted: Redis refuses expiries that overflow its millisecond clock, and no
/// lock should outlive its holder by years anyway.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The longest wait accepted: deadlines are computed as `now + wait`, which must not overflow.
const MAX_WAIT: Duration = MAX_TTL;

/// How one lock is taken and held.
///
/// ```
/// use std::time::Duration;
/// use redlock_runtime::LockOptions;
///
/// let options = LockOptions::new(Duration::from_secs(3)).wait(Duration::from_secs(4));
/// assert_eq!(options.ttl_duration(), Duration::from_secs(3));
/// assert!(options.renews());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct LockOptions {
    ttl: Duration,
    wait: Duration,
    renew: bool,
}

impl Default for LockOptions {
    /// A 30 s lease, no waiting, renewal on.
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

impl LockOptions {
    /// A lease of `ttl`, one attempt (no waiting), renewal on.
    pub const fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            wait: Duration::ZERO,
            renew: true,
        }
    }

    /// The lease: how long Redis keeps the lock if the holder vanishes.
    pub const fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long to wait for a busy lock; zero means one attempt. At most a year (as
    /// [`MAX_TTL`]): a longer wait is a configuration error rather than an overflow.
    pub const fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Whether a body run under the lock renews its lease every ttl/3.
    pub const fn renew(mut self, renew: bool) -> Self {
        self.renew = renew;
        self
    }

    /// The lease.
    pub const fn ttl_duration(&self) -> Duration {
        self.ttl
    }

    /// The wait.
    pub const fn wait_duration(&self) -> Duration {
        self.wait
    }

    /// Whether renewal is on.
    pub const fn renews(&self) -> bool {
        self.renew
    }

    pub(crate) fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    /// Rejects leases Redis cannot hold (under 1 ms, not whole milliseconds, or above
    /// [`MAX_TTL`]) and waits too long to compute a deadline for (above a year, as
    /// `Duration::MAX`).
    pub fn validate(&self) -> Result<(), LockError> {
        if self.ttl < Duration::from_millis(1) {
            return Err(LockError::Config(format!(
                "ttl must be at least 1ms, got {:?}",
                self.ttl
            )));
        }
        if self.ttl.subsec_nanos() % 1_000_000 != 0 {
            return Err(LockError::Config(format!(
                "ttl must be whole milliseconds, got {:?}",
                self.ttl
            )));
        }
        if self.ttl > MAX_TTL {
            return Err(LockError::Config(format!(
                "ttl must be at most {} days, got {:?}",
                MAX_TTL.as_secs() / 86_400,
                self.ttl
            )));
        }
        if self.wait > MAX_WAIT {
            return Err(LockError::Config(format!(
                "wait must be at most {} days, got {:?}",
                MAX_WAIT.as_secs() / 86_400,
                self.wait
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_redis_cannot_hold_are_rejected() {
        assert!(LockOptions::new(Duration::ZERO).validate().is_err());
        assert!(LockOptions::new(Duration::from_micros(1500))
            .validate()
            .is_err());
        assert!(LockOptions::new(MAX_TTL + Duration::from_secs(1))
            .validate()
            .is_err());
        assert!(LockOptions::new(Duration::from_millis(1))
            .validate()
            .is_ok());
        assert!(LockOptions::new(MAX_TTL).validate().is_ok());
    }

    #[test]
    fn waits_too_long_for_a_deadline_are_rejected() {
        let options = LockOptions::new(Duration::from_secs(1));
        let err = options.clone().wait(Duration::MAX).validate().unwrap_err();
        assert!(
            err.to_string().contains("wait must be at most 365 days"),
            "{err}"
        );
        assert!(options.wait(MAX_WAIT).validate().is_ok());
    }
}
