#![deny(warnings, unused, clippy::all)]

use redlock::{distributed_lock, LockError, LockManager};

pub struct Ledger {
    locks: LockManager,
    id: u64,
    total: i64,
}

impl Ledger {
    #[distributed_lock(key = "ledger:<self.id>:<entry>", client = self.locks, guard = lock)]
    pub async fn add(&mut self, entry: i64) -> Result<u64, LockError> {
        self.total += entry;
        Ok(lock.fencing_token())
    }
}

#[distributed_lock(key = "fixed")]
pub async fn fixed() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock(keys = ["a:<a>", "b:<b>"], on_busy = "skip")]
pub async fn skip(a: u8, b: u8) {
    let _ = (a, b);
}

#[distributed_lock(key = "never:<id>")]
pub async fn diverges(id: u64) -> Result<u64, LockError> {
    panic!("{id}")
}

#[distributed_lock(key = "early:<id>")]
pub async fn early_return(id: u64) -> Result<u64, LockError> {
    return Ok(id);
}

fn main() {
    let _ = (fixed, skip, diverges, early_return);
    let _ = |ledger: &'static mut Ledger| ledger.add(1);
}
