//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! Install any `metrics` recorder (Prometheus exporter, StatsD, ...) and the manager reports:
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `redlock_acquire_total` | counter | `outcome` = `acquired`, `busy`, `error`; `kind` = `exclusive`, `read`, `write`, `permit` | acquisitions asked for, by how they ended (`busy`: the wait ran out) and what they asked for |
//! | `redlock_acquire_wait_seconds` | histogram | | from asking to holding, for acquired locks |
//! | `redlock_hold_seconds` | histogram | | from acquiring to a confirmed release |
//! | `redlock_release_total` | counter | `outcome` = `released`, `lost`, `error`; `kind` as above | releases, by outcome (`lost`: the lock had expired or was taken over) |
//! | `redlock_renew_total` | counter | `outcome` = `renewed`, `lost`, `error` | lease renewals, by outcome |
//! | `redlock_lost_total` | counter | | locks found lost while held (token gone, or lease ran out unconfirmed) |
//!
//! Lock keys are not labels: a service locking a million distinct keys must not create a
//! million time series. Without the feature every call here compiles to nothing.

use std::time::Instant;

use crate::error::LockError;
use crate::options::LockKind;

/// The `kind` label of a lock.
#[cfg(feature = "metrics")]
fn kind_label(kind: LockKind) -> &'static str {
    match kind {
        LockKind::Read => "read",
        LockKind::Write => "write",
        LockKind::Permits(_) => "permit",
        _ => "exclusive",
    }
}

/// The `outcome` label of a finished operation.
#[cfg(feature = "metrics")]
fn outcome<T>(result: &Result<T, LockError>, ok: &'static str) -> &'static str {
    match result {
        Ok(_) => ok,
        Err(LockError::Timeout { .. }) => "busy",
        Err(LockError::Lost { .. }) => "lost",
        Err(_) => "error",
    }
}

/// When an acquisition was asked for (nothing at all without the feature).
pub(crate) struct Asked(#[cfg(feature = "metrics")] Instant);

impl Asked {
    pub(crate) fn now() -> Self {
        Self(
            #[cfg(feature = "metrics")]
            Instant::now(),
        )
    }

    /// The acquisition of a lock of `kind` ended with `result`.
    pub(crate) fn ended<T>(self, kind: LockKind, result: &Result<T, LockError>) {
        #[cfg(feature = "metrics")]
        {
            ::metrics::counter!(
                "redlock_acquire_total",
                "outcome" => outcome(result, "acquired"),
                "kind" => kind_label(kind)
            )
            .increment(1);
            if result.is_ok() {
                ::metrics::histogram!("redlock_acquire_wait_seconds").record(self.0.elapsed());
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (kind, result);
    }
}

/// A release of a lock of `kind` acquired at `taken` ended with `result`.
pub(crate) fn release<T>(kind: LockKind, result: &Result<T, LockError>, taken: Instant) {
    #[cfg(feature = "metrics")]
    {
        ::metrics::counter!(
            "redlock_release_total",
            "outcome" => outcome(result, "released"),
            "kind" => kind_label(kind)
        )
        .increment(1);
        if result.is_ok() {
            ::metrics::histogram!("redlock_hold_seconds").record(taken.elapsed());
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, result, taken);
}

/// A renewal ended with `result`.
pub(crate) fn renew<T>(result: &Result<T, LockError>) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!("redlock_renew_total", "outcome" => outcome(result, "renewed"))
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = result;
}

/// A held lock was found lost.
pub(crate) fn lost() {
    #[cfg(feature = "metrics")]
    ::metrics::counter!("redlock_lost_total").increment(1);
}
