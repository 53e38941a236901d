//! How a request on a watched connection is bounded without a timer of its own: requests are
//! numbered as they are sent and answers counted as they come (a [`Watch`], read by the link's
//! watchdog), and a request fails with "no answer" when the watchdog closed its connection
//! under it ([`Bound`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::RedisResult;
use tokio::sync::Notify;

use crate::error::LockError;

/// What the watchdog reads: requests numbered as they are sent, the highest-numbered one
/// answered, and connections it closed.
///
/// Answers on one connection come in the order of the requests, so everything numbered up to
/// the highest answer has its answer too, including requests whose caller stopped waiting
/// (their answer comes all the same, unheard); requests are waiting exactly while the last
/// number sent is above it.
pub(crate) struct Watch {
    pub(super) sent: AtomicU64,
    pub(super) answered: AtomicU64,
    pub(super) closed: AtomicU64,
    op_timeout: Duration,
    pub(super) dormant: AtomicBool,
    pub(super) wake: Arc<Notify>,
}

impl Watch {
    pub(super) fn new(op_timeout: Duration) -> Self {
        Self {
            sent: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            op_timeout,
            dormant: AtomicBool::new(false),
            wake: Arc::default(),
        }
    }

    /// Numbers a request about to be sent; returns its number and the closings so far.
    fn begin(&self) -> (u64, u64) {
        let number = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
        if self.dormant.load(Ordering::SeqCst) {
            self.dormant.store(false, Ordering::SeqCst);
            self.wake.notify_one();
        }
        (number, self.closed.load(Ordering::SeqCst))
    }
}

/// How long a request may wait for its answer.
#[derive(Clone, Copy)]
pub(crate) enum Bound<'a> {
    /// A timer per request (a Redis Cluster's connections).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    Timer(Duration),
    /// A watched link.
    Watched(&'a Watch),
}

impl Bound<'_> {
    /// Awaits `request`, bounded.
    pub(crate) async fn run<T>(
        self,
        key: &str,
        request: impl std::future::Future<Output = RedisResult<T>>,
    ) -> Result<T, LockError> {
        match self {
            Bound::Timer(limit) => {
                let request = async { request.await.map_err(|e| LockError::redis(key, e)) };
                crate::deadline::within(limit, key, request).await
            }
            Bound::Watched(watch) => {
                let (number, closed) = watch.begin();
                let result = request.await;
                watch.answered.fetch_max(number, Ordering::SeqCst);
                result.map_err(|e| {
                    if watch.closed.load(Ordering::SeqCst) != closed {
                        LockError::no_answer(key, watch.op_timeout)
                    } else {
                        LockError::redis(key, e)
                    }
                })
            }
        }
    }
}
