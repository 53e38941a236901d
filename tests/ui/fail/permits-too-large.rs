use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "pool:<id>", permits = 5_000_000_000)]
async fn too_many(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
