//! Polling, the fallback of release notices: exponential backoff with full jitter.

use std::time::Duration;

/// Exponential backoff with full jitter: the n-th delay is uniform in `[0, min(max, min·2ⁿ)]`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    cap: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self { cap: min, max }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let cap = self.cap;
        self.cap = (self.cap * 2).min(self.max);
        let nanos = cap.as_nanos().min(u64::MAX as u128) as u64;
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_stays_within_it() {
        let mut backoff = Backoff::new(Duration::from_millis(2), Duration::from_millis(50));
        for _ in 0..100 {
            assert!(backoff.next_delay() <= Duration::from_millis(50));
        }
        assert_eq!(backoff.cap, Duration::from_millis(50));
        let first = Backoff::new(Duration::from_millis(2), Duration::from_millis(50)).next_delay();
        assert!(first <= Duration::from_millis(2));
    }
}
