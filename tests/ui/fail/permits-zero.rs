use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "pool:<id>", permits = 0)]
async fn nobody(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
