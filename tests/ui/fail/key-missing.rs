use redlock::{distributed_lock, LockError};

#[distributed_lock(ttl = "3s")]
async fn withdraw(user_id: &str, amount: i64) -> Result<i64, LockError> {
    let _ = user_id;
    Ok(amount)
}

fn main() {}
