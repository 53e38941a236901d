use redlock::{distributed_lock, LockError, LockGuard, LockSet};

#[distributed_lock(keys = ["account:<from>", "account:<to>"], ttl = "5s", wait = "5s")]
pub async fn transfer(from: u64, to: u64, amount: u64) -> Result<u64, LockError> {
    Ok(amount + from - to)
}

#[distributed_lock(key = "account:<id>", guard = lock)]
pub async fn fenced(id: u64) -> Result<u64, LockError> {
    let guard: &LockGuard = lock;
    assert_eq!(guard.key(), format!("account:{id}"));
    Ok(guard.fencing_token())
}

#[distributed_lock(keys = ["a:<x>", "b:<x>"], guard = locks)]
pub async fn fenced_set(x: u64) -> Result<usize, LockError> {
    let set: &LockSet = locks;
    Ok(set.len())
}

fn main() {}
