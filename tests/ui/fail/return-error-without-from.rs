use redlock::distributed_lock;

#[derive(Debug)]
pub struct AppError;

#[distributed_lock(key = "account:<id>")]
async fn balance(id: u64) -> Result<u64, AppError> {
    Ok(id)
}

fn main() {}
