use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "account:<id>", ttl = "3 sekunden")]
async fn words(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "account:<id>", wait = "1500us")]
async fn sub_millisecond(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
