use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "account:<acount>", ttl = "0s", wait = "soon", tll = "3s", on_busy = "drop")]
fn withdraw(account: u64) -> Result<u64, LockError> {
    Ok(account)
}

fn main() {
    // The function is still emitted, so its callers see no follow-on errors.
    let _ = withdraw(1);
}
