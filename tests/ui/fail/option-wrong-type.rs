use redlock::{distributed_lock, LockError};

#[distributed_lock(keys = "account:<id>", renew = "false", guard = "lock", crate = "red lock")]
async fn kinds(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
