use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "account:<id>", tll = "3s")]
async fn typo(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "account:<id>", timeout = "3s")]
async fn unknown(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
