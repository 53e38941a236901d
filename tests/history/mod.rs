//! Histories of critical sections and the interval checker: who held which key with which
//! fencing token, from when to when, on a clock shared by every process of the machine; the
//! checker finds sections of one key that were inside at the same time while protected, and
//! tokens that did not increase in the order the sections were entered.

#![allow(dead_code)] // each suite uses part of the support

use std::collections::BTreeMap;

/// One critical section: the lock `key` held with `token` from `enter` to `exit` (ns on the
/// shared clock) by process `pid`, its lease ending (as the holder counted it) at `lease_end`
/// (`u64::MAX` when not recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub key: String,
    pub token: u64,
    pub enter: u64,
    pub exit: u64,
    pub lease_end: u64,
    pub pid: u32,
}

impl Section {
    /// The end of the part of the section its lease protected: its exit, or the end of its
    /// lease if that came first (a holder cut off from Redis works on until it notices).
    pub fn protected_until(&self) -> u64 {
        self.exit.min(self.lease_end)
    }
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Verdict {
    pub sections: usize,
    /// Pairs of sections of one key that were inside at the same time, both protected by
    /// their leases.
    pub overlaps: Vec<(Section, Section)>,
    /// Pairs where the later-entered section does not carry a strictly greater token.
    pub token_regressions: Vec<(Section, Section)>,
}

/// Checks mutual exclusion (over the protected part of each section) and token order, key by
/// key.
pub fn check(sections: &[Section]) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Section>> = BTreeMap::new();
    for section in sections {
        by_key.entry(&section.key).or_default().push(section);
    }
    let mut verdict = Verdict {
        sections: sections.len(),
        ..Verdict::default()
    };
    for list in by_key.values_mut() {
        list.sort_by_key(|s| (s.enter, s.protected_until()));
        for pair in list.windows(2) {
            if pair[1].token <= pair[0].token {
                verdict
                    .token_regressions
                    .push((pair[0].clone(), pair[1].clone()));
            }
        }
        // The section protected the latest so far.
        let mut latest: Option<&Section> = None;
        for &section in list.iter() {
            if let Some(prev) = latest {
                if section.enter < prev.protected_until() {
                    verdict.overlaps.push((prev.clone(), section.clone()));
                }
                if section.protected_until() > prev.protected_until() {
                    latest = Some(section);
                }
            } else {
                latest = Some(section);
            }
        }
    }
    verdict
}
