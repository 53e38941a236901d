use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "account:<id>")]
fn blocking(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
