//! Several locks held together.

use std::sync::Arc;

use crate::lock::guard::LockGuard;

/// The locks of one locked call (`keys = [...]`, [`LockManager::with_locks`]), in canonical
/// (sorted) key order. A nested locked call's set holds the guards of the calls around it for
/// the keys they already held, and its own for the rest.
///
/// [`LockManager::with_locks`]: crate::LockManager::with_locks
#[derive(Debug, Default, Clone)]
pub struct LockSet {
    guards: Guards,
}

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
    pub(crate) fn one(guard: Arc<LockGuard>) -> Self {
        Self {
            guards: Guards::One(guard),
        }
    }

    pub(crate) fn many(guards: Vec<Arc<LockGuard>>) -> Self {
        Self {
            guards: Guards::Many(guards),
        }
    }

    /// The guards, as shared.
    pub(crate) fn shared(&self) -> &[Arc<LockGuard>] {
        match &self.guards {
            Guards::One(guard) => std::slice::from_ref(guard),
            Guards::Many(guards) => guards,
        }
    }

    /// The guard of `key` (without prefix), shared, if it is part of this set.
    pub(crate) fn find(&self, key: &str) -> Option<&Arc<LockGuard>> {
        self.shared().iter().find(|guard| guard.key() == key)
    }

    /// The guard of `key` (without prefix), if it is part of this set.
    pub fn get(&self, key: &str) -> Option<&LockGuard> {
        self.find(key).map(|guard| &**guard)
    }

    /// The guards, in sorted key order.
    pub fn iter(&self) -> impl Iterator<Item = &LockGuard> {
        self.shared().iter().map(|guard| &**guard)
    }

    /// The keys, in sorted order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(LockGuard::key)
    }

    /// How many locks are held.
    pub fn len(&self) -> usize {
        self.shared().len()
    }

    /// Whether the set holds no lock.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
