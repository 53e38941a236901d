use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "job:<id>", on_busy = "skp")]
async fn typo(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "job:<id>", on_busy = "wait")]
async fn unknown(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
