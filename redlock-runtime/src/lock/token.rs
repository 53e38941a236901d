//! A holder's token: what identifies a holder in Redis, and the task tag that ends it.

/// A holder's token: 128 random bits (uuid v4) as 32 lowercase hex digits, then a 16-digit
/// tag, kept inline.
///
/// A plain guard's tag names its task ([`task_tag`]), so that a locked call of the same task
/// finds out, from the token in Redis, that the key is held by a guard of its own task; a locked
/// call's own tokens end with random digits instead, as nested locked calls share their locks
/// through the task's held keys and concurrent branches of one task may wait for each other.
#[derive(Clone, Copy)]
pub(crate) struct Token([u8; 48]);

impl Token {
    /// A token for a plain guard of the current task.
    pub(crate) fn plain() -> Self {
        Self::with_tag(task_tag())
    }

    /// A token for a locked call: a random tag.
    pub(crate) fn locked_call() -> Self {
        Self::with_tag(Tag::random())
    }

    fn with_tag(tag: Tag) -> Self {
        let mut digits = [0u8; 48];
        uuid::Uuid::new_v4()
            .simple()
            .encode_lower(&mut digits[..32]);
        digits[32..].copy_from_slice(&tag.0);
        Self(digits)
    }

    /// A new token with the same tag: for an attempt after one that was rolled back, so that
    /// the rollback, should it reach a server late (sent on a connection given up, delivered
    /// after a new one's requests), cannot undo the new attempt's lock.
    pub(crate) fn fresh(&self) -> Self {
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&self.0[32..]);
        Self::with_tag(Tag(tag))
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// 16 lowercase hex digits naming a task of this process (or a random one).
#[derive(Clone, Copy)]
pub(crate) struct Tag([u8; 16]);

impl Tag {
    fn of(value: u64) -> Self {
        use std::io::Write;
        let mut digits = [0u8; 16];
        let _ = write!(&mut digits[..], "{value:016x}");
        Self(digits)
    }

    fn random() -> Self {
        Self::of(fastrand::u64(..))
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The tag of the current tokio task (or, outside a task, of the current thread), unique to this
/// process: a hash of a random number drawn once per process and the task's id.
pub(crate) fn task_tag() -> Tag {
    use std::hash::{Hash, Hasher};
    static PROCESS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let process = *PROCESS.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let mut hasher = std::hash::DefaultHasher::new();
    process.hash(&mut hasher);
    match tokio::task::try_id() {
        Some(task) => task.hash(&mut hasher),
        None => std::thread::current().id().hash(&mut hasher),
    }
    Tag::of(hasher.finish())
}
