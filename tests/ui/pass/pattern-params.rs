//! Axum-like extractor patterns: `<user_id>` names a binding inside a pattern.

use std::sync::Arc;

use redlock::{distributed_lock, LockError, LockManager};

pub struct Path<T>(pub T);
pub struct State<T>(pub T);
pub struct Json<T>(pub T);

#[derive(Clone)]
pub struct App {
    pub locks: Arc<LockManager>,
}

pub struct Order {
    pub id: u64,
    pub customer: Customer,
}

pub struct Customer {
    pub id: String,
}

#[distributed_lock(key = "user:<user_id>", client = state.locks)]
pub async fn get_user(
    State(state): State<App>,
    Path(user_id): Path<u64>,
) -> Result<String, LockError> {
    Ok(format!("user {user_id}"))
}

#[distributed_lock(key = "order:<order.customer.id>:<order.id>", client = state.locks)]
pub async fn place(State(state): State<App>, Json(order): Json<Order>) -> Result<u64, LockError> {
    Ok(order.id)
}

#[distributed_lock(keys = ["a:<from>", "b:<to>"], client = app.locks)]
pub async fn tuple((from, to): (u64, u64), app: &App) -> Result<u64, LockError> {
    Ok(from + to)
}

#[distributed_lock(key = "r:<first>:<id>")]
pub async fn nested(Path((first, _)): Path<(u8, u8)>, &id: &u32) -> Result<u32, LockError> {
    Ok(u32::from(first) + id)
}

fn main() {}
