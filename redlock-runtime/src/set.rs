//! Several locks held together.

use std::sync::Arc;

use crate::guard::LockGuard;

/// The locks of one multi-key acquisition (`keys = [...]`), in canonical (sorted) key order.
#[derive(Debug, Default)]
pub struct LockSet {
    guards: Guards,
}

/// The guards themselves when the call took them all; else where each one is held.
#[derive(Debug)]
enum Guards {
    One(LockGuard),
    Many(Vec<LockGuard>),
    /// A nested locked call's view: guards held by the calls around it, or by its own set
    /// of fresh locks.
    Held(Vec<(Arc<LockSet>, usize)>),
}

impl Default for Guards {
    fn default() -> Self {
        Self::Many(Vec::new())
    }
}

impl LockSet {
    pub(crate) fn one(guard: LockGuard) -> Self {
        Self {
            guards: Guards::One(guard),
        }
    }

    pub(crate) fn many(guards: Vec<LockGuard>) -> Self {
        Self {
            guards: Guards::Many(guards),
        }
    }

    /// A view of guards held by other sets: (set, position) pairs, each set one that took
    /// its locks itself.
    pub(crate) fn held(guards: Vec<(Arc<LockSet>, usize)>) -> Self {
        Self {
            guards: Guards::Held(guards),
        }
    }

    /// The guards this set took itself (none for a view).
    pub(crate) fn taken(&self) -> &[LockGuard] {
        match &self.guards {
            Guards::One(guard) => std::slice::from_ref(guard),
            Guards::Many(guards) => guards,
            Guards::Held(_) => &[],
        }
    }

    /// The position of `key` (without prefix) among the guards this set took itself.
    pub(crate) fn position(&self, key: &str) -> Option<usize> {
        self.taken().iter().position(|guard| guard.key() == key)
    }

    fn at(&self, index: usize) -> &LockGuard {
        match &self.guards {
            Guards::Held(held) => {
                let (set, position) = &held[index];
                &set.taken()[*position]
            }
            _ => &self.taken()[index],
        }
    }

    /// The guard of `key` (without prefix), if it is part of this set.
    pub fn get(&self, key: &str) -> Option<&LockGuard> {
        self.iter().find(|guard| guard.key() == key)
    }

    /// The guards, in sorted key order.
    pub fn iter(&self) -> impl Iterator<Item = &LockGuard> {
        (0..self.len()).map(|index| self.at(index))
    }

    /// The keys, in sorted order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(LockGuard::key)
    }

    /// How many locks are held.
    pub fn len(&self) -> usize {
        match &self.guards {
            Guards::Held(held) => held.len(),
            _ => self.taken().len(),
        }
    }

    /// Whether the set holds no lock.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
