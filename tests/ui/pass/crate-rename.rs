extern crate redlock as locks;

use locks::{distributed_lock, LockError};

#[distributed_lock(key = "renamed:<id>", crate = "locks")]
pub async fn renamed(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "renamed:<id>", crate = "::locks", on_busy = "skip", guard = g)]
pub async fn renamed_absolute(id: u64) -> Option<u64> {
    Some(g.fencing_token() + id)
}

fn main() {}
