//! Redis Cluster hash slots: which slot a key hashes to, and short tags that hash to a given
//! slot, so that a key's companions (its fencing counter, say) can be named into its slot.

use std::sync::LazyLock;

/// Number of hash slots of a Redis Cluster.
const SLOTS: usize = 16384;

/// `<base>:{<tag>}`: a companion key, named from `base`, in hash slot `slot`.
pub(crate) fn companion(base: &str, slot: u16) -> String {
    format!("{base}:{{{}}}", slot_tag(slot))
}

/// The hash slot of a key: CRC16 (XMODEM) of its hash tag (the first non-empty `{...}`) or of
/// the whole key, modulo 16384.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS as u16
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// For each slot, the smallest number whose base-36 spelling hashes to it.
static TAGS: LazyLock<Vec<u32>> = LazyLock::new(|| {
    let mut tags = vec![u32::MAX; SLOTS];
    let mut missing = SLOTS;
    let mut n = 0u32;
    while missing > 0 {
        let slot = usize::from(crc16(base36(n).as_bytes()) % SLOTS as u16);
        if tags[slot] == u32::MAX {
            tags[slot] = n;
            missing -= 1;
        }
        n += 1;
    }
    tags
});

/// A short string (no braces) whose hash slot is `slot`.
pub(crate) fn slot_tag(slot: u16) -> String {
    base36(TAGS[usize::from(slot) % SLOTS])
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::with_capacity(4);
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use redis::cluster_routing::Slot;

    use super::*;

    #[test]
    fn key_slot_matches_the_redis_crate_and_redis() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        for key in ["lock:account:7", "a", "{a}b", "x{}y", "{", "}{z}", ""] {
            assert_eq!(
                Slot::new(key_slot(key.as_bytes())),
                Some(Slot::for_key(key)),
                "{key}"
            );
        }
    }

    #[test]
    fn every_slot_has_a_tag_that_hashes_to_it() {
        for slot in 0..SLOTS as u16 {
            let tag = slot_tag(slot);
            assert!(tag.len() <= 4, "{tag}");
            assert_eq!(key_slot(tag.as_bytes()), slot);
        }
    }

    #[test]
    fn fence_counter_lives_in_the_lock_keys_slot() {
        for key in ["lock:a", "lock:account:7", "lock:{acct}:b", "x"] {
            let fence = companion("redlock:fence", key_slot(key.as_bytes()));
            assert_eq!(
                key_slot(fence.as_bytes()),
                key_slot(key.as_bytes()),
                "{fence}"
            );
        }
    }
}
