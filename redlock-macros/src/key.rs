//! Key templates: `"account:<user_id>"`, `"order:<req.order.id>"`.
//!
//! A template is literal text and `<placeholder>`s; `<<` and `>>` write a literal `<` or `>`,
//! and braces are ordinary characters (Redis Cluster hash tags such as `{user}:<id>` are legal).
//! On stable Rust a span inside a string literal is the whole literal, so every message names
//! the placeholder it is about.

use syn::ext::IdentExt;
use syn::parse::Parser;
use syn::{Ident, LitStr, Member};

use crate::diag::Errors;

/// A parsed key template.
pub(crate) struct Template {
    pub(crate) lit: LitStr,
    pub(crate) segments: Vec<Segment>,
}

/// Literal text or a placeholder.
pub(crate) enum Segment {
    Text(String),
    Placeholder(Placeholder),
}

/// `<root.field.field>`: a parameter binding (or `self`) and a field path.
pub(crate) struct Placeholder {
    /// As written, brackets included: what messages quote.
    pub(crate) written: String,
    pub(crate) root: Ident,
    pub(crate) fields: Vec<Member>,
}

/// Parses a template, recording each problem in `errors`; `None` if there was any.
pub(crate) fn parse(lit: &LitStr, errors: &mut Errors) -> Option<Template> {
    let text = lit.value();
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut problems = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '<' if chars.peek() == Some(&'<') => {
                chars.next();
                literal.push('<');
            }
            '>' if chars.peek() == Some(&'>') => {
                chars.next();
                literal.push('>');
            }
            '>' => problems.push(format!(
                "unmatched `>` in lock key {text:?}; write `>>` for a literal `>`"
            )),
            '<' => {
                let mut inner = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '>' {
                        closed = true;
                        break;
                    }
                    inner.push(c);
                }
                if !closed {
                    problems.push(format!(
                        "unclosed placeholder `<{inner}` in lock key {text:?}; close it with `>`, or write `<<` for a literal `<`"
                    ));
                } else if inner.is_empty() {
                    problems.push(format!(
                        "empty placeholder `<>` in lock key {text:?}; name a parameter inside, e.g. `<id>`, or write `<<>>` for a literal `<>`"
                    ));
                } else if let Some(placeholder) = placeholder(&inner) {
                    if !literal.is_empty() {
                        segments.push(Segment::Text(std::mem::take(&mut literal)));
                    }
                    segments.push(Segment::Placeholder(placeholder));
                } else {
                    problems.push(format!(
                        "invalid placeholder `<{inner}>` in lock key {text:?}; write a parameter name with optional fields, e.g. `<user_id>` or `<order.customer.id>`, or `<<` for a literal `<`"
                    ));
                }
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        segments.push(Segment::Text(literal));
    }
    if segments.is_empty() && problems.is_empty() {
        problems
            .push("empty lock key; write a name, e.g. `key = \"account:<user_id>\"`".to_owned());
    }
    let ok = problems.is_empty();
    for problem in problems {
        errors.at(lit.span(), problem);
    }
    ok.then(|| Template {
        lit: lit.clone(),
        segments,
    })
}

/// `root.field.0` → its parts, or `None` if it is not such a path.
fn placeholder(inner: &str) -> Option<Placeholder> {
    let mut parts = inner.split('.');
    let root = parts.next().filter(|part| is_word(part))?;
    let root = Ident::parse_any.parse_str(root).ok()?;
    let fields = parts
        .map(|part| {
            is_word(part)
                .then(|| syn::parse_str::<Member>(part).ok())
                .flatten()
        })
        .collect::<Option<Vec<Member>>>()?;
    Some(Placeholder {
        written: format!("<{inner}>"),
        root,
        fields,
    })
}

/// Identifier characters only (the parsers above would skip comments and spaces).
fn is_word(part: &str) -> bool {
    !part.is_empty()
        && part
            .chars()
            .all(|c| c == '_' || c == '#' || c.is_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::Span;

    fn parsed(text: &str) -> Option<Vec<String>> {
        let mut errors = Errors::default();
        let template = parse(&LitStr::new(text, Span::call_site()), &mut errors)?;
        let shown = template
            .segments
            .iter()
            .map(|segment| match segment {
                Segment::Text(text) => format!("text {text}"),
                Segment::Placeholder(placeholder) => format!("value {}", placeholder.written),
            })
            .collect();
        Some(shown)
    }

    #[test]
    fn placeholders_and_text_alternate() {
        assert_eq!(
            parsed("account:<user_id>:<order.items.0>"),
            Some(vec![
                "text account:".into(),
                "value <user_id>".into(),
                "text :".into(),
                "value <order.items.0>".into(),
            ])
        );
        assert_eq!(parsed("<self.id>"), Some(vec!["value <self.id>".into()]));
    }

    #[test]
    fn doubled_angle_brackets_and_braces_are_literal() {
        assert_eq!(
            parsed("{tenant}:<<raw>>"),
            Some(vec!["text {tenant}:<raw>".into()])
        );
    }

    #[test]
    fn malformed_placeholders_are_refused() {
        for text in [
            "", "a:<>", "a:<id", "a:>", "a:<a b>", "a:<a.>", "a:<a//>", "a:<1>", "a:<a<b>",
        ] {
            assert_eq!(parsed(text), None, "{text:?}");
        }
    }
}
