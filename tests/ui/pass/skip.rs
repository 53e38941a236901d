use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "job:nightly", on_busy = "skip")]
pub async fn nightly() {
    println!("ran");
}

#[distributed_lock(key = "job:<id>", on_busy = "skip", wait = "100ms")]
pub async fn maybe(id: u32) -> Option<u32> {
    Some(id)
}

#[derive(Debug)]
pub struct JobError;

impl From<LockError> for JobError {
    fn from(_: LockError) -> Self {
        JobError
    }
}

#[distributed_lock(key = "job:<id>", on_busy = "skip")]
pub async fn fallible(id: u32) -> Result<Option<u32>, JobError> {
    if id == 0 {
        return Err(JobError);
    }
    Ok(Some(id))
}

fn main() {
    let _ = nightly();
    let _ = maybe(1);
    let _ = fallible(1);
}
