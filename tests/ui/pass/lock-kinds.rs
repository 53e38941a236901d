//! `mode = "read"` / `"write"` (a read-write lock) and `permits = N` (a semaphore) with the
//! other options.

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

#[distributed_lock(key = "pool:<name>", permits = 4, wait = "1s", guard = permit)]
pub async fn render(name: &str) -> Result<String, LockError> {
    Ok(format!("{name} {}", permit.key()))
}

/// Several keys, each a semaphore of its own; a suffixed literal and a single permit.
#[distributed_lock(keys = ["gpu:<a>", "gpu:<b>"], permits = 2u32, on_busy = "skip")]
pub async fn pair(a: u8, b: u8) {
    let _ = (a, b);
}

#[distributed_lock(key = "one", permits = 1, renew = false)]
pub async fn single() -> Result<(), LockError> {
    Ok(())
}

fn main() {
    let _ = compare(1, 2);
    let _ = render("a");
    let _ = pair(1, 2);
    let _ = single();
    let _ = |docs: &'static mut Docs| docs.save(1, String::new());
}
