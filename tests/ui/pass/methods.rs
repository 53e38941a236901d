use std::sync::Arc;

use redlock::{distributed_lock, LockError, LockManager};

pub struct Account {
    pub id: u64,
    pub owner: Owner,
    pub balance: i64,
    pub locks: LockManager,
}

pub struct Owner {
    pub name: String,
}

impl Account {
    #[distributed_lock(key = "account:<self.id>", client = self.locks)]
    pub async fn balance(&self) -> Result<i64, LockError> {
        Ok(self.balance)
    }

    /// `&mut self`: the client is resolved before the body borrows `self` mutably.
    #[distributed_lock(key = "account:<self.id>", client = self.locks)]
    pub async fn deposit(&mut self, amount: i64) -> Result<i64, LockError> {
        self.balance += amount;
        Ok(self.balance)
    }

    #[distributed_lock(key = "owner:<self.owner.name>:<amount>", client = &self.locks)]
    pub async fn owned(self: Arc<Self>, amount: i64) -> Result<i64, LockError> {
        Ok(self.balance + amount)
    }

    #[distributed_lock(key = "account:<self.id>", client = self.locks)]
    pub async fn borrowed_result(&self) -> Result<&str, LockError> {
        Ok(&self.owner.name)
    }

    #[distributed_lock(key = "account:<self.id>", client = self.locks)]
    pub async fn into_owner(self) -> Result<Owner, LockError> {
        Ok(self.owner)
    }
}

fn main() {}
