//! Per-lock options (which kind of lock, lease, wait, renewal) and where a setting left out
//! comes from.
//!
//! Every setting is resolved in one place, [`LockOptions::resolve`], in this order: the call's
//! own options (the attribute's, or those passed to `acquire_with` / `with_lock`), then the
//! manager's (its builder's [`ttl`](crate::LockManagerBuilder::ttl),
//! [`wait`](crate::LockManagerBuilder::wait) and [`renew`](crate::LockManagerBuilder::renew)),
//! then the library's: [`DEFAULT_TTL`], [`DEFAULT_WAIT`], [`DEFAULT_RENEW`]. The attribute
//! passes only the options written in it.

use std::time::Duration;

use crate::error::LockError;
pub use crate::kind::LockKind;

/// The longest lease accepted: Redis refuses expiries that overflow its millisecond clock, and no
/// lock should outlive its holder by years anyway.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The longest wait accepted: deadlines are computed as `now + wait`, which must not overflow.
const MAX_WAIT: Duration = MAX_TTL;

/// The library's lease when neither the call nor the manager sets one: 30 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// The library's wait when neither the call nor the manager sets one: none (one attempt).
pub const DEFAULT_WAIT: Duration = Duration::ZERO;

/// The library's renewal setting when neither the call nor the manager sets one: on.
pub const DEFAULT_RENEW: bool = true;

/// How one lock is taken and held; a setting left unset comes from the manager, then from the
/// library's defaults (see [`LockOptions::resolve`]).
///
/// ```
/// use std::time::Duration;
/// use redlock_runtime::LockOptions;
///
/// let options = LockOptions::new(Duration::from_secs(3)).wait(Duration::from_secs(4));
/// assert_eq!(options.ttl_duration(), Some(Duration::from_secs(3)));
/// assert_eq!(options.renews(), None); // the manager's setting, else on
///
/// let manager = LockOptions::inherit().renew(false);
/// let resolved = options.resolve(&manager);
/// assert_eq!(resolved.renews(), Some(false));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct LockOptions {
    kind: LockKind,
    ttl: Option<Duration>,
    wait: Option<Duration>,
    renew: Option<bool>,
}

/// Options with every setting resolved: what an acquisition runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) kind: LockKind,
    pub(crate) ttl: Duration,
    pub(crate) wait: Duration,
    pub(crate) renew: bool,
}

impl Settings {
    pub(crate) fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }
}

impl LockOptions {
    /// Nothing set: every setting comes from the manager, then from the library's defaults.
    pub const fn inherit() -> Self {
        Self {
            kind: LockKind::Exclusive,
            ttl: None,
            wait: None,
            renew: None,
        }
    }

    /// Take the key as `kind` of lock (an exclusive lock unless set; the manager has no say).
    pub const fn kind(mut self, kind: LockKind) -> Self {
        self.kind = kind;
        self
    }

    /// A read share of the key's read-write lock ([`LockKind::Read`]).
    pub const fn read(self) -> Self {
        self.kind(LockKind::Read)
    }

    /// The write side of the key's read-write lock ([`LockKind::Write`]).
    pub const fn write(self) -> Self {
        self.kind(LockKind::Write)
    }

    /// A permit of the key's counting semaphore of `permits` ([`LockKind::Permits`]); at least
    /// 1, else [`validate`](Self::validate) and every acquisition fail with
    /// [`LockError::Config`].
    pub const fn permits(self, permits: u32) -> Self {
        self.kind(LockKind::Permits(permits))
    }

    /// The kind of lock these options take.
    pub const fn lock_kind(&self) -> LockKind {
        self.kind
    }

    /// A lease of `ttl`; wait and renewal come from the manager (by default: one attempt,
    /// renewal on).
    pub const fn new(ttl: Duration) -> Self {
        Self::inherit().ttl(ttl)
    }

    /// The lease: how long Redis keeps the lock if the holder vanishes.
    pub const fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How long to wait for a busy lock; zero means one attempt. At most a year (as
    /// [`MAX_TTL`]): a longer wait is a configuration error rather than an overflow.
    pub const fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// Whether a body run under the lock (`with_lock`, the attribute) renews its lease every
    /// ttl/3 and is stopped with [`LockError::Lost`] when the lock is lost.
    ///
    /// With `false` the body runs to its end whatever happens to the lease: the call returns
    /// the body's result (`Ok` included) even if the lease ran out meanwhile. That moment is
    /// not hidden: a `warn` event "lease ran out while the body still runs" is logged with the
    /// key, `redlock_lost_total` is counted (feature `metrics`), and the guard's
    /// [`remaining`](crate::LockGuard::remaining) reads zero from then on; the release at the
    /// end then finds the lock gone (or someone else's) and logs that too. Check
    /// `guard.is_held()` or use fencing tokens where it matters.
    pub const fn renew(mut self, renew: bool) -> Self {
        self.renew = Some(renew);
        self
    }

    /// The lease, if set here.
    pub const fn ttl_duration(&self) -> Option<Duration> {
        self.ttl
    }

    /// The wait, if set here.
    pub const fn wait_duration(&self) -> Option<Duration> {
        self.wait
    }

    /// Whether renewal is on, if set here.
    pub const fn renews(&self) -> Option<bool> {
        self.renew
    }

    /// These options with every unset setting taken from `fallback` (usually the manager's
    /// [`default_options`](crate::LockManager::default_options)), then from the library's
    /// defaults: every setting of the result is set.
    pub fn resolve(&self, fallback: &LockOptions) -> LockOptions {
        let settings = self.settings(fallback);
        Self {
            kind: settings.kind,
            ttl: Some(settings.ttl),
            wait: Some(settings.wait),
            renew: Some(settings.renew),
        }
    }

    /// The one place where settings are resolved: these options, then `fallback`, then the
    /// library's defaults.
    pub(crate) fn settings(&self, fallback: &LockOptions) -> Settings {
        Settings {
            kind: self.kind,
            ttl: self.ttl.or(fallback.ttl).unwrap_or(DEFAULT_TTL),
            wait: self.wait.or(fallback.wait).unwrap_or(DEFAULT_WAIT),
            renew: self.renew.or(fallback.renew).unwrap_or(DEFAULT_RENEW),
        }
    }

    /// [`Self::settings`], checked.
    pub(crate) fn checked(&self, fallback: &LockOptions) -> Result<Settings, LockError> {
        let settings = self.settings(fallback);
        check_kind(settings.kind)?;
        check_ttl(settings.ttl)?;
        check_wait(settings.wait)?;
        Ok(settings)
    }

    /// Rejects the settings made here that no lock could use: a semaphore of no permits, leases Redis cannot hold (under
    /// 1 ms, not whole milliseconds, or above [`MAX_TTL`]) and waits too long to compute a
    /// deadline for (above a year, as `Duration::MAX`).
    pub fn validate(&self) -> Result<(), LockError> {
        check_kind(self.kind)?;
        if let Some(ttl) = self.ttl {
            check_ttl(ttl)?;
        }
        if let Some(wait) = self.wait {
            check_wait(wait)?;
        }
        Ok(())
    }
}

fn check_kind(kind: LockKind) -> Result<(), LockError> {
    if kind == LockKind::Permits(0) {
        return Err(LockError::Config(
            "a semaphore needs at least 1 permit, got `permits(0)`".to_owned(),
        ));
    }
    Ok(())
}

fn check_ttl(ttl: Duration) -> Result<(), LockError> {
    if ttl < Duration::from_millis(1) {
        return Err(LockError::Config(format!(
            "ttl must be at least 1ms, got {ttl:?}"
        )));
    }
    if !ttl.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(LockError::Config(format!(
            "ttl must be whole milliseconds, got {ttl:?}"
        )));
    }
    if ttl > MAX_TTL {
        return Err(LockError::Config(format!(
            "ttl must be at most {} days, got {ttl:?}",
            MAX_TTL.as_secs() / 86_400,
        )));
    }
    Ok(())
}

fn check_wait(wait: Duration) -> Result<(), LockError> {
    if wait > MAX_WAIT {
        return Err(LockError::Config(format!(
            "wait must be at most {} days, got {wait:?}",
            MAX_WAIT.as_secs() / 86_400,
        )));
    }
    Ok(())
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

    #[test]
    fn a_setting_comes_from_the_call_then_the_manager_then_the_library() {
        let manager = LockOptions::inherit()
            .ttl(Duration::from_secs(5))
            .wait(Duration::from_secs(2));
        let call = LockOptions::inherit().wait(Duration::from_millis(100));
        assert_eq!(
            call.settings(&manager),
            Settings {
                kind: LockKind::Exclusive,
                ttl: Duration::from_secs(5),
                wait: Duration::from_millis(100),
                renew: DEFAULT_RENEW,
            }
        );
        assert_eq!(
            LockOptions::inherit().settings(&LockOptions::inherit()),
            Settings {
                kind: LockKind::Exclusive,
                ttl: DEFAULT_TTL,
                wait: DEFAULT_WAIT,
                renew: DEFAULT_RENEW,
            }
        );
        let resolved = call.resolve(&manager);
        assert_eq!(resolved.ttl_duration(), Some(Duration::from_secs(5)));
        assert_eq!(resolved.renews(), Some(true));
    }

    #[test]
    fn a_semaphore_of_no_permits_is_rejected() {
        let err = LockOptions::inherit().permits(0).validate().unwrap_err();
        assert!(err.to_string().contains("at least 1 permit"), "{err}");
        assert!(LockOptions::inherit().permits(1).validate().is_ok());
        let resolved = LockOptions::inherit()
            .read()
            .resolve(&LockOptions::inherit());
        assert_eq!(resolved.lock_kind(), LockKind::Read);
    }

    #[test]
    fn resolved_settings_are_checked() {
        let manager = LockOptions::inherit().ttl(Duration::from_micros(1500));
        assert!(LockOptions::inherit().checked(&manager).is_err());
        assert!(LockOptions::new(Duration::from_secs(1))
            .checked(&manager)
            .is_ok());
    }
}
