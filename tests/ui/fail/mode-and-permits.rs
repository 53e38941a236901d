use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "doc:<id>", mode = "read", permits = 3)]
async fn permits_second(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(keys = ["doc:<id>", "log:<id>"], permits = 3, ttl = "5s", mode = "write")]
async fn mode_second(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

// Invalid values are reported too, with the clash.
#[distributed_lock(key = "doc:<id>", mode = "reed", permits = 0)]
async fn both_invalid(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {
    // The functions are still emitted, so their callers see no follow-on errors.
    let _ = (permits_second(1), mode_second(2), both_invalid(3));
}
