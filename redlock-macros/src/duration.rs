//! Durations written as strings (`"250ms"`, `"3s"`, `"1m 30s"`), checked at compile time.

use std::time::Duration;

use humantime::DurationError;
use syn::LitStr;

/// The longest lease, as `redlock::MAX_TTL`.
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// `ttl = "..."` in whole milliseconds: at least 1ms, at most 365 days.
pub(crate) fn ttl(lit: &LitStr) -> syn::Result<u64> {
    let duration = parse(lit, "ttl")?;
    if duration.is_zero() {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "`ttl` must be at least 1ms, got {:?}: a zero lease expires at once; write e.g. `ttl = \"30s\"`",
                lit.value()
            ),
        ));
    }
    if duration > MAX_TTL {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "`ttl` must be at most 365 days, got {:?}; a lock held longer should be renewed (`renew = true`)",
                lit.value()
            ),
        ));
    }
    millis(lit, "ttl", duration)
}

/// `wait = "..."` in whole milliseconds; `"0s"` means one attempt.
pub(crate) fn wait(lit: &LitStr) -> syn::Result<u64> {
    let duration = parse(lit, "wait")?;
    millis(lit, "wait", duration)
}

fn parse(lit: &LitStr, option: &str) -> syn::Result<Duration> {
    let text = lit.value();
    humantime::parse_duration(&text).map_err(|error| {
        let problem = match error {
            DurationError::Empty => "it is empty".to_owned(),
            DurationError::NumberExpected(at) => match text.get(at..) {
                Some(rest) if !rest.is_empty() => format!("expected a number at {rest:?}"),
                _ => "expected a number".to_owned(),
            },
            DurationError::InvalidCharacter(at) => match text.get(at..).and_then(|rest| rest.chars().next()) {
                Some(c) => format!("unexpected character {c:?}"),
                None => "unexpected character".to_owned(),
            },
            DurationError::UnknownUnit { unit, .. } => {
                format!("unknown unit `{unit}` (use `ms`, `s`, `m`, `h` or `d`)")
            }
            DurationError::NumberOverflow => "the number is too large".to_owned(),
        };
        syn::Error::new(
            lit.span(),
            format!(
                "invalid duration {text:?} for `{option}`: {problem}; write e.g. `{option} = \"250ms\"`, `\"3s\"` or `\"1m 30s\"`"
            ),
        )
    })
}

fn millis(lit: &LitStr, option: &str, duration: Duration) -> syn::Result<u64> {
    if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        let rounded = duration.as_millis() + 1;
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "`{option}` must be whole milliseconds, got {:?}; write e.g. `{option} = \"{rounded}ms\"`",
                lit.value()
            ),
        ));
    }
    u64::try_from(duration.as_millis()).map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!("`{option}` is too long: {:?}", lit.value()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::Span;

    fn lit(text: &str) -> LitStr {
        LitStr::new(text, Span::call_site())
    }

    #[test]
    fn human_durations_become_milliseconds() {
        assert_eq!(ttl(&lit("3s")).ok(), Some(3000));
        assert_eq!(ttl(&lit("250ms")).ok(), Some(250));
        assert_eq!(ttl(&lit("1m 30s")).ok(), Some(90_000));
        assert_eq!(wait(&lit("0s")).ok(), Some(0));
    }

    #[test]
    fn leases_redis_cannot_hold_are_refused() {
        assert!(ttl(&lit("0s")).is_err());
        assert!(ttl(&lit("1500us")).is_err());
        assert!(ttl(&lit("400days")).is_err());
        assert!(ttl(&lit("three seconds")).is_err());
        assert!(wait(&lit("1500us")).is_err());
    }
}
