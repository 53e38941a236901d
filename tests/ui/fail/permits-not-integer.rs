use redlock::{distributed_lock, LockError};

const POOL: u32 = 4;

#[distributed_lock(key = "pool:<id>", permits = "3")]
async fn quoted(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "pool:<id>", permits = 2.5)]
async fn fraction(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "pool:<id>", permits = true)]
async fn flag(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "pool:<id>", permits = POOL)]
async fn constant(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "pool:<id>", permits = 2 * 2)]
async fn expression(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "pool:<id>", permits = 4u8)]
async fn suffixed(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "pool:<id>", permits = -1)]
async fn negative(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {
    let _ = POOL;
}
