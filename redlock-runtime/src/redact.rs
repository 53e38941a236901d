//! Secrets kept out of every output: URLs with their passwords replaced.
//!
//! Every `Debug` of a builder or manager, every error message and every log field that names a
//! server goes through [`url`]; TLS keys and certificates are never formatted at all.

/// `url` with its password replaced by `***`: the one in the user info
/// (`redis://user:secret@host`) and the `pass` / `password` query parameters of unix socket URLs
/// (`redis+unix:///run/redis.sock?pass=secret`).
pub(crate) fn url(url: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((main, query)) => (main, Some(query)),
        None => (url, None),
    };
    let mut out = match (main.find("://"), main.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &main[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &main[..scheme + 3], &main[at..])
        }
        _ => main.to_owned(),
    };
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if is_secret(name) => format!("{name}=***"),
                _ => param.to_owned(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// Several URLs, each redacted.
pub(crate) fn urls(urls: &[String]) -> Vec<String> {
    urls.iter().map(|u| url(u)).collect()
}

fn is_secret(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "pass" | "password" | "passwd" | "pwd"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_and_nothing_else() {
        assert_eq!(url("redis://:secret@host:6379"), "redis://:***@host:6379");
        assert_eq!(url("redis://app:secret@host"), "redis://app:***@host");
        assert_eq!(url("redis://app:sec@ret@host"), "redis://app:***@host");
        assert_eq!(url("redis://host:6379/2"), "redis://host:6379/2");
        assert_eq!(
            url("redis+unix:///run/r.sock?db=1&pass=secret"),
            "redis+unix:///run/r.sock?db=1&pass=***"
        );
        assert_eq!(
            url("redis://u:p@h/0?protocol=resp3&password=x"),
            "redis://u:***@h/0?protocol=resp3&password=***"
        );
    }
}
