//! Error accumulation and "did you mean" suggestions.

use std::fmt::Display;

use proc_macro2::Span;

/// Every error of one attribute, reported together in one pass.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Records an error.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Records `message` at `span`.
    pub(crate) fn at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Whether nothing was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// `Ok` when nothing was recorded, else all errors as one.
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// The candidate closest to `name`, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    let lower = name.to_lowercase();
    candidates
        .into_iter()
        .filter(|&candidate| candidate != name)
        .filter_map(|candidate| {
            let distance = edit_distance(name, candidate);
            let other = candidate.to_lowercase();
            // `order` for `order_id`, `id` for `user_id`: one name contains the other.
            let related = lower.len() >= 2 && (other.contains(&lower) || lower.contains(&other));
            (distance <= limit || related).then_some((distance, candidate))
        })
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// `` `a`, `b`, `c` ``.
pub(crate) fn backticked<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(|item| format!("`{item}`")).collect();
    items.join(", ")
}

/// Levenshtein distance, counted in chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested_and_far_ones_not() {
        let names = ["user_id", "amount", "self"];
        assert_eq!(did_you_mean("user_idd", names), Some("user_id"));
        assert_eq!(did_you_mean("usr_id", names), Some("user_id"));
        assert_eq!(did_you_mean("amout", names), Some("amount"));
        assert_eq!(did_you_mean("order", names), None);
        assert_eq!(
            did_you_mean("order", ["order_id", "amount"]),
            Some("order_id")
        );
        assert_eq!(did_you_mean("USER_ID", names), Some("user_id"));
        assert_eq!(did_you_mean("x", names), None);
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("ttl", "ttl"), 0);
        assert_eq!(edit_distance("tll", "ttl"), 1);
    }
}
