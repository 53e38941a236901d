//! Bounds enforced in the caller's own task: whatever happens to a connection (its runtime gone
//! idle, a server silent), a call ends within its limit with a typed error.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

use crate::error::LockError;

pin_project_lite::pin_project! {
    /// `operation`, bounded by a timer of the caller's task (see [`within`]).
    ///
    /// A future of its own rather than `tokio::time::timeout` in an `async fn` or a mapped
    /// future: those keep the operation twice, or move it out when it completes, and lock calls'
    /// futures are large enough for that to show in every cycle.
    pub(crate) struct Within<'a, F> {
        #[pin]
        operation: F,
        // `None` outside a tokio runtime.
        #[pin]
        timer: Option<Sleep>,
        limit: Duration,
        key: &'a str,
        span: tracing::Span,
    }
}

/// `operation`, or [`LockError::Redis`] ("did not answer within `limit`") once `limit` has
/// passed. Outside a tokio runtime (whose timers and connections every operation needs), a
/// [`LockError::Config`] at once instead of a panic.
pub(crate) fn within<F>(limit: Duration, key: &str, operation: F) -> Within<'_, F> {
    // Inside a task there is a runtime (a thread-local read); only `block_on`'s own future or a
    // foreign executor needs the dearer look-up of the runtime's handle.
    let in_runtime =
        tokio::task::try_id().is_some() || tokio::runtime::Handle::try_current().is_ok();
    Within {
        operation,
        timer: in_runtime.then(|| tokio::time::sleep(limit)),
        limit,
        key,
        span: tracing::Span::none(),
    }
}

impl<F> Within<'_, F> {
    /// Polls the operation inside `span`.
    pub(crate) fn in_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }
}

impl<T, F: Future<Output = Result<T, LockError>>> Future for Within<'_, F> {
    type Output = Result<T, LockError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(timer) = this.timer.as_pin_mut() else {
            return Poll::Ready(Err(outside_runtime(this.key)));
        };
        let _entered = this.span.enter();
        if let Poll::Ready(outcome) = this.operation.poll(cx) {
            return Poll::Ready(outcome);
        }
        match timer.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(LockError::no_answer(this.key, *this.limit))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The error of a call made outside a tokio runtime.
pub(crate) fn outside_runtime(key: &str) -> LockError {
    LockError::Config(format!(
        "lock `{key}`: called outside a tokio runtime; redlock's futures must be awaited inside \
         one (`#[tokio::main]`, `Runtime::block_on`)"
    ))
}
