use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "account:<id>", ttl = "3s", ttl = "5s")]
async fn twice(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
