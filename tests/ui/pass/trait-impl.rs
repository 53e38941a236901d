use redlock::{distributed_lock, LockError, LockManager};

trait Store {
    fn save(&self, id: u64) -> impl std::future::Future<Output = Result<u64, LockError>> + Send;

    async fn load(&self, id: u64) -> Result<u64, LockError>;

    #[distributed_lock(key = "default:<id>")]
    async fn provided(&self, id: u64) -> Result<u64, LockError> {
        Ok(id)
    }
}

pub struct Redis {
    pub locks: LockManager,
}

impl Store for Redis {
    #[distributed_lock(key = "save:<id>", client = self.locks)]
    async fn save(&self, id: u64) -> Result<u64, LockError> {
        Ok(id)
    }

    #[distributed_lock(key = "load:<id>", client = self.locks)]
    async fn load(&self, id: u64) -> Result<u64, LockError> {
        Ok(id + 1)
    }
}

fn main() {
    let _ = |store: &'static Redis| (store.save(1), store.load(2), store.provided(3));
}
