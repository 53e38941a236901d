use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "account:<id>", ttl = "0s")]
async fn zero(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
