use redlock::{distributed_lock, LockError};

pub struct UserId(pub u64);

pub struct Request {
    pub user: UserId,
}

#[distributed_lock(key = "account:<request.user>")]
async fn withdraw(request: Request) -> Result<u64, LockError> {
    Ok(request.user.0)
}

fn main() {}
