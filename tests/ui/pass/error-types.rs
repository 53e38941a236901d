//! Any `Result<T, E>` with `E: From<LockError>`: anyhow, thiserror enums, aliases.

use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "anyhow:<id>")]
pub async fn with_anyhow(id: &str) -> anyhow::Result<u64> {
    let parsed: u64 = id.parse()?;
    Ok(parsed)
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("bad input")]
    Input(#[from] std::num::ParseIntError),
}

pub type AppResult<T> = Result<T, AppError>;

#[distributed_lock(key = "alias:<id>")]
pub async fn with_alias(id: &str) -> AppResult<u64> {
    Ok(id.parse::<u64>()?)
}

#[distributed_lock(key = "boxed:<id>")]
pub async fn with_box(id: &str) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    Ok(id.parse::<u64>()?)
}

fn main() {}
