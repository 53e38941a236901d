//! Several locks held together.

use std::sync::Arc;

use crate::guard::LockGuard;

/// The locks of one multi-key acquisition (`keys = [...]`), in canonical (sorted) key order.
#[derive(Debug, Clone, Default)]
pub struct LockSet {
    guards: Vec<Arc<LockGuard>>,
}

impl LockSet {
    pub(crate) fn new(guards: Vec<Arc<LockGuard>>) -> Self {
        Self { guards }
    }

    /// The guard of `key` (without prefix), if it is part of this set.
    pub fn get(&self, key: &str) -> Option<&LockGuard> {
        self.iter().find(|guard| guard.key() == key)
    }

    /// The guards, in sorted key order.
    pub fn iter(&self) -> impl Iterator<Item = &LockGuard> {
        self.guards.iter().map(|guard| &**guard)
    }

    /// The keys, in sorted order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(LockGuard::key)
    }

    /// How many locks are held.
    pub fn len(&self) -> usize {
        self.guards.len()
    }

    /// Whether the set holds no lock.
    pub fn is_empty(&self) -> bool {
        self.guards.is_empty()
    }
}
