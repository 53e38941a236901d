//! `mode = "read"` / `"write"` (a read-write lock) with the other options.

#![deny(warnings)]

use redlock::{distributed_lock, LockError, LockGuard, LockManager};

pub struct Docs {
    pub locks: LockManager,
}

impl Docs {
    #[distributed_lock(key = "doc:<id>", mode = "read", client = self.locks)]
    pub async fn load(&self, id: u64) -> Result<u64, LockError> {
        Ok(id)
    }

    #[distributed_lock(key = "doc:<id>", mode = "write", ttl = "5s", wait = "2s", client = self.locks, guard = lock)]
    pub async fn save(&mut self, id: u64, body: String) -> Result<u64, LockError> {
        let guard: &LockGuard = lock;
        Ok(guard.fencing_token() + id + body.len() as u64)
    }
}

/// Several keys, each taken as a read share.
#[distributed_lock(keys = ["doc:<a>", "doc:<b>"], mode = "read", on_busy = "skip")]
pub async fn compare(a: u64, b: u64) -> Option<bool> {
    Some(a == b)
}

fn main() {
    let _ = compare(1, 2);
    let _ = |docs: &'static mut Docs| docs.save(1, String::new());
}
