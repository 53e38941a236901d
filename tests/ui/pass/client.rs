use std::sync::Arc;

use redlock::{distributed_lock, LockError, LockManager};

#[distributed_lock(key = "a:<id>", client = locks)]
pub async fn by_reference(locks: &LockManager, id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "a:<id>", client = locks)]
pub async fn by_arc(locks: Arc<LockManager>, id: u64) -> Result<u64, LockError> {
    drop(locks);
    Ok(id)
}

#[distributed_lock(key = "a:<id>", client = locks)]
pub async fn by_value(locks: LockManager, id: u64) -> Result<LockManager, LockError> {
    let _ = id;
    Ok(locks)
}

fn manager() -> &'static LockManager {
    redlock::global().expect("a manager")
}

#[distributed_lock(key = "a:<id>", client = manager())]
pub async fn by_call(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
