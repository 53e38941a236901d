//! The expansion adds no `Send` bound and removes none: a locked future is `Send` exactly when
//! the body's is.

use std::rc::Rc;
use std::sync::Arc;

use redlock::{distributed_lock, LockError, LockManager};

fn assert_send<T: Send>(_: T) {}

pub struct Service {
    pub locks: Arc<LockManager>,
    pub id: u64,
}

impl Service {
    #[distributed_lock(key = "s:<self.id>", client = self.locks, guard = lock)]
    pub async fn work(&self, amount: u64) -> Result<u64, LockError> {
        tokio::task::yield_now().await;
        Ok(lock.fencing_token() + amount)
    }

    #[distributed_lock(keys = ["s:<self.id>", "t:<other>"], client = self.locks, on_busy = "skip")]
    pub async fn skip(&mut self, other: String) -> Option<String> {
        tokio::task::yield_now().await;
        Some(other)
    }
}

#[distributed_lock(key = "local:<id>")]
pub async fn not_send(id: u64) -> Result<u64, LockError> {
    let local = Rc::new(id);
    tokio::task::yield_now().await;
    Ok(*local)
}

fn main() {
    let service = Service {
        locks: Arc::new(LockManager::new("redis://127.0.0.1:6379").unwrap()),
        id: 1,
    };
    assert_send(service.work(2));
    let mut service = service;
    assert_send(service.skip(String::new()));
    // Still usable on a current-thread runtime or a `LocalSet`.
    let _ = not_send(3);
}
