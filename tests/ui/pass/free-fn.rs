use redlock::{distributed_lock, LockError};

#[derive(Debug)]
pub struct Balance(pub i64);

#[derive(Debug)]
pub enum AppError {
    Lock(LockError),
    Insufficient,
}

impl From<LockError> for AppError {
    fn from(error: LockError) -> Self {
        AppError::Lock(error)
    }
}

fn parse(amount: &str) -> Result<i64, AppError> {
    amount.parse().map_err(|_| AppError::Insufficient)
}

/// Doc comments and other attributes are kept.
#[distributed_lock(key = "account:<user_id>", ttl = "3s", wait = "4s")]
#[must_use = "the balance"]
#[inline]
pub async fn withdraw(user_id: &str, amount: &str) -> Result<Balance, AppError> {
    let amount = parse(amount)?;
    if amount > 1000 {
        return Err(AppError::Insufficient);
    }
    Ok(Balance(1000 - amount))
}

#[distributed_lock(key = "daily-report", ttl = "1m 30s", renew = false)]
pub(crate) async fn fixed_key() -> Result<(), LockError> {
    Ok(())
}

#[distributed_lock(key = "{tenant}:<<raw>>:<id>", ttl = "250ms", on_busy = "error")]
async fn hash_tag_and_escapes(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[distributed_lock(key = "items:<tag>")]
async fn mut_param(tag: &str, mut items: Vec<u8>) -> Result<usize, LockError> {
    items.push(1);
    Ok(items.len())
}

fn main() {
    let _ = withdraw("7", "100");
    let _ = fixed_key();
    let _ = hash_tag_and_escapes(1);
    let _ = mut_param("a", Vec::new());
}
