//! Several locks held together.

use std::sync::Arc;

use crate::guard::LockGuard;

/// The locks of one multi-key acquisition (`keys = [...]`), in canonical (sorted) key order.
#[derive(Debug, Clone, Default)]
pub struct LockSet {
    guards: Guards,
}

/// One lock needs no list.
#[derive(Debug, Clone)]
enum Guards {
    One(Arc<LockGuard>),
    Many(Vec<Arc<LockGuard>>),
}

impl Default for Guards {
    fn default() -> Self {
        Self::Many(Vec::new())
    }
}

impl LockSet {
    pub(crate) fn one(guard: LockGuard) -> Self {
        Self {
            guards: Guards::One(Arc::new(guard)),
        }
    }

    /// A set of guards, some possibly shared with enclosing locked calls.
    pub(crate) fn from_shared(guards: Vec<Arc<LockGuard>>) -> Self {
        Self {
            guards: Guards::Many(guards),
        }
    }

    /// The guards, shared with enclosing or nested locked calls.
    pub(crate) fn guards(&self) -> &[Arc<LockGuard>] {
        match &self.guards {
            Guards::One(guard) => std::slice::from_ref(guard),
            Guards::Many(guards) => guards,
        }
    }

    /// The shared guard of `key` (without prefix).
    pub(crate) fn find(&self, key: &str) -> Option<&Arc<LockGuard>> {
        self.guards().iter().find(|guard| guard.key() == key)
    }

    /// The guard of `key` (without prefix), if it is part of this set.
    pub fn get(&self, key: &str) -> Option<&LockGuard> {
        self.iter().find(|guard| guard.key() == key)
    }

    /// The guards, in sorted key order.
    pub fn iter(&self) -> impl Iterator<Item = &LockGuard> {
        self.guards().iter().map(|guard| &**guard)
    }

    /// The keys, in sorted order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(LockGuard::key)
    }

    /// How many locks are held.
    pub fn len(&self) -> usize {
        self.guards().len()
    }

    /// Whether the set holds no lock.
    pub fn is_empty(&self) -> bool {
        self.guards().is_empty()
    }
}
