use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "doc:<id>", mode = "reed")]
async fn typo(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "doc:<id>", mode = "exclusive")]
async fn exclusive(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "doc:<id>", mode = "shared")]
async fn unknown(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
