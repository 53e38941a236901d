use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "account:<id")]
async fn unclosed(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
