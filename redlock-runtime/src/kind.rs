//! The kinds of lock a key can be taken as (a leaf: the options and the errors both name them).

/// Which member of the lock family a key is taken as.
///
/// One key is always used as one kind: a key held as an exclusive lock cannot be taken as a
/// read-write lock or a semaphore (nor a semaphore with another number of permits), and the
/// attempt fails with [`LockError::OtherKind`](crate::LockError::OtherKind) naming what the key is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LockKind {
    /// One holder at a time (the default).
    #[default]
    Exclusive,
    /// A read share of a read-write lock: readers hold it together, never with a writer.
    Read,
    /// The write side of a read-write lock: one writer, and no reader, at a time. Writers come
    /// first: once a writer waits, readers that arrive after it wait behind it.
    Write,
    /// A permit of a counting semaphore: at most this many holders at once, each with its own
    /// lease (a holder that vanishes frees its permit when its lease runs out).
    Permits(u32),
}

impl LockKind {
    /// Whether holders of this kind may hold the key together (read shares, permits).
    pub const fn is_shared(self) -> bool {
        !matches!(self, Self::Exclusive)
    }
}

impl std::fmt::Display for LockKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exclusive => f.write_str("exclusive lock"),
            Self::Read => f.write_str("read lock"),
            Self::Write => f.write_str("write lock"),
            Self::Permits(1) => f.write_str("semaphore of 1 permit"),
            Self::Permits(n) => write!(f, "semaphore of {n} permits"),
        }
    }
}
