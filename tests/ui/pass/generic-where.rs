use std::fmt::Display;

use redlock::{distributed_lock, LockError};

#[distributed_lock(key = "item:<id>:<label>")]
pub async fn generic<T, E>(id: T, label: impl Display + Send, value: Vec<T>) -> Result<usize, E>
where
    T: Display + Send + 'static,
    E: From<LockError> + From<std::num::ParseIntError>,
{
    let parsed: usize = "3".parse()?;
    Ok(parsed + value.len())
}

#[distributed_lock(key = "pair:<pair.0>:<pair.1>")]
pub async fn with_lifetime<'a>(pair: (&'a str, u8), rest: &'a str) -> Result<&'a str, LockError> {
    Ok(if pair.1 > 0 { pair.0 } else { rest })
}

#[distributed_lock(key = "shown:<id>")]
pub async fn returns_impl_trait(id: u32) -> Result<impl Display, LockError> {
    Ok(id)
}

fn main() {}
