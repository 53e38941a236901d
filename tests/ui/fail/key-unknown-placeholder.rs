use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "account:<user_idd>")]
async fn withdraw(user_id: &str, amount: i64) -> Result<i64, LockError> {
    let _ = user_id;
    Ok(amount)
}

pub struct Path<T>(pub T);

#[distributed_lock(key = "order:<order>")]
async fn handler(Path(order_id): Path<u64>) -> Result<u64, LockError> {
    Ok(order_id)
}

#[distributed_lock(key = "job:<id>")]
async fn no_parameters() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
