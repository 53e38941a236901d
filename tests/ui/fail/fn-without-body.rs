use redlock::{distributed_lock, LockError};

trait Accounts {
    #[distributed_lock(key = "account:<id>")]
    async fn withdraw(&self, id: u64) -> Result<u64, LockError>;
}

fn main() {}
