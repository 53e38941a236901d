use redlock::{distributed_lock, LockError};

pub struct App {
    pub redis_url: String,
}

#[distributed_lock(key = "account:<id>", client = app.redis_url)]
async fn withdraw(app: &App, id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
