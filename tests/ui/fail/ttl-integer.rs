use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "account:<id>", ttl = 3)]
async fn seconds(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "account:<id>", wait = 250ms)]
async fn suffixed(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
