use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "doc:<id>", mode = read)]
async fn unquoted(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "doc:<id>", mode = Write)]
async fn capitalised(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "doc:<id>", mode = 1)]
async fn number(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
