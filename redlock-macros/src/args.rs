//! The attribute's options as written: `key = "..."`, `ttl = "3s"`, `client = expr`, ...
//!
//! Values are kept as tokens (`LitStr`s, expressions) so later checks can point at them.
//! Every problem is recorded and parsing goes on, so one pass reports them all.

use proc_macro2::{Group, Span, TokenStream};
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprUnary, Ident, Lit, LitInt, LitStr, Token, UnOp};

use crate::diag::{self, Errors};

/// Every option, in the order the docs explain them.
pub(crate) const OPTIONS: &[&str] = &[
    "key", "keys", "mode", "permits", "ttl", "wait", "renew", "on_busy", "client", "guard", "crate",
];

/// The values of `mode`; without `mode` a key is an exclusive lock.
pub(crate) const MODES: &[&str] = &["read", "write"];

/// One option as written: where its name is, and its value.
pub(crate) struct Opt<T> {
    pub(crate) name: Span,
    pub(crate) value: T,
}

/// The options of one `#[distributed_lock(...)]`.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) key: Option<Opt<LitStr>>,
    pub(crate) keys: Option<Opt<Vec<LitStr>>>,
    pub(crate) mode: Option<Opt<LitStr>>,
    pub(crate) permits: Option<Opt<LitInt>>,
    pub(crate) ttl: Option<Opt<LitStr>>,
    pub(crate) wait: Option<Opt<LitStr>>,
    pub(crate) renew: Option<Opt<bool>>,
    pub(crate) on_busy: Option<Opt<LitStr>>,
    pub(crate) client: Option<Opt<Expr>>,
    pub(crate) guard: Option<Opt<Ident>>,
    pub(crate) krate: Option<Opt<LitStr>>,
    /// The list itself did not parse: checks for missing options stay quiet.
    pub(crate) malformed: bool,
    /// Options written, valid or not, in order, with where their names are.
    written: Vec<(String, Span)>,
}

/// Parses the attribute's arguments, recording every problem in `errors`.
pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Args {
    let mut args = Args::default();
    let parser = syn::meta::parser(|meta| args.option(&meta, errors));
    if let Err(error) = parser.parse2(tokens) {
        errors.push(error);
        args.malformed = true;
    }
    args
}

impl Args {
    /// Whether the option was written, even with an invalid value.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.first(name).is_some()
    }

    /// Where the option was first written, even with an invalid value: its place among the
    /// options written, and its name.
    pub(crate) fn first(&self, name: &str) -> Option<(usize, Span)> {
        self.written
            .iter()
            .position(|(written, _)| written == name)
            .map(|place| (place, self.written[place].1))
    }

    fn option(&mut self, meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<()> {
        let name = match meta.path.get_ident() {
            Some(ident) => ident.to_string(),
            None => path_text(&meta.path),
        };
        let span = meta.path.span();
        if OPTIONS.contains(&name.as_str()) {
            if self.has(&name) {
                errors.at(
                    span,
                    format!("duplicate option `{name}`; keep only one `{name} = ...`"),
                );
            }
            self.written.push((name.clone(), span));
        }
        match name.as_str() {
            "key" => {
                let value = string(meta, "key", errors)?;
                put(&mut self.key, span, value);
            }
            "keys" => {
                let value = list(meta, errors)?;
                put(&mut self.keys, span, value);
            }
            "mode" => {
                let value = mode(meta, errors)?;
                put(&mut self.mode, span, value);
            }
            "permits" => {
                let value = permits(meta, errors)?;
                put(&mut self.permits, span, value);
            }
            "ttl" => {
                let value = string(meta, "ttl", errors)?;
                put(&mut self.ttl, span, value);
            }
            "wait" => {
                let value = string(meta, "wait", errors)?;
                put(&mut self.wait, span, value);
            }
            "renew" => {
                let value = boolean(meta, errors)?;
                put(&mut self.renew, span, value);
            }
            "on_busy" => {
                let value = string(meta, "on_busy", errors)?;
                put(&mut self.on_busy, span, value);
            }
            "client" => {
                let value = value(meta, "client")?;
                put(&mut self.client, span, Some(value));
            }
            "guard" => {
                let value = ident(meta, errors)?;
                put(&mut self.guard, span, value);
            }
            "crate" => {
                let value = string(meta, "crate", errors)?;
                put(&mut self.krate, span, value);
            }
            _ => {
                let valid = diag::backticked(OPTIONS.iter().copied());
                let message = match diag::did_you_mean(&name, OPTIONS.iter().copied()) {
                    Some(known) => format!(
                        "unknown option `{name}`; did you mean `{known}`? valid options: {valid}"
                    ),
                    None => format!("unknown option `{name}`; valid options: {valid}"),
                };
                errors.at(span, message);
                skip(meta)?;
            }
        }
        Ok(())
    }
}

/// Stores a valid value; a duplicate's is dropped (it was reported already).
fn put<T>(slot: &mut Option<Opt<T>>, at: Span, value: Option<T>) {
    if let (None, Some(value)) = (&slot, value) {
        *slot = Some(Opt { name: at, value });
    }
}

/// What each option looks like, for messages.
fn example(name: &str) -> &'static str {
    match name {
        "key" => "key = \"account:<user_id>\"",
        "keys" => "keys = [\"account:<from>\", \"account:<to>\"]",
        "mode" => "mode = \"read\"",
        "permits" => "permits = 4",
        "ttl" => "ttl = \"30s\"",
        "wait" => "wait = \"4s\"",
        "renew" => "renew = false",
        "on_busy" => "on_busy = \"skip\"",
        "client" => "client = self.locks",
        "guard" => "guard = lock",
        _ => "crate = \"::redlock\"",
    }
}

/// The expression after `name =`.
fn value(meta: &ParseNestedMeta<'_>, name: &str) -> syn::Result<Expr> {
    if !meta.input.peek(Token![=]) {
        return Err(meta.error(format!("expected a value: `{}`", example(name))));
    }
    meta.value()?.parse()
}

/// A string option; `ttl = 3` gets a fix with quotes.
fn string(
    meta: &ParseNestedMeta<'_>,
    name: &str,
    errors: &mut Errors,
) -> syn::Result<Option<LitStr>> {
    let expr = value(meta, name)?;
    let written = match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => return Ok(Some(lit.clone())),
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) if matches!(name, "ttl" | "wait") => {
            let unit = if int.suffix().is_empty() {
                "s"
            } else {
                int.suffix()
            };
            Some(format!("{}{unit}", int.base10_digits()))
        }
        Expr::Lit(ExprLit {
            lit: Lit::Float(float),
            ..
        }) if matches!(name, "ttl" | "wait") => {
            let unit = if float.suffix().is_empty() {
                "s"
            } else {
                float.suffix()
            };
            Some(format!("{}{unit}", float.base10_digits()))
        }
        _ => None,
    };
    let message = match written {
        Some(text) => format!("`{name}` takes a string: write `{name} = \"{text}\"`"),
        None => format!("`{name}` takes a string literal, e.g. `{}`", example(name)),
    };
    errors.push(syn::Error::new_spanned(expr, message));
    Ok(None)
}

/// `keys = ["a", "b"]`.
fn list(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Option<Vec<LitStr>>> {
    let expr = value(meta, "keys")?;
    let Expr::Array(array) = expr else {
        let fix = match &expr {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => format!(
                "`keys = [{}]`, or `key = {}` for one key",
                quoted(lit),
                quoted(lit)
            ),
            _ => format!("`{}`", example("keys")),
        };
        errors.push(syn::Error::new_spanned(
            expr,
            format!("`keys` takes a list of strings: {fix}"),
        ));
        return Ok(None);
    };
    let mut keys = Vec::new();
    for element in array.elems {
        match element {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => keys.push(lit),
            other => errors.push(syn::Error::new_spanned(
                other,
                "each entry of `keys` must be a string literal, e.g. `\"account:<user_id>\"`",
            )),
        }
    }
    Ok(Some(keys))
}

/// `mode = "read"`; `mode = read` gets a fix with quotes. The value is checked later.
fn mode(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Option<LitStr>> {
    let expr = value(meta, "mode")?;
    let written = match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => return Ok(Some(lit.clone())),
        Expr::Path(path) => path
            .path
            .get_ident()
            .map(|ident| ident.unraw().to_string())
            .and_then(|name| {
                MODES
                    .iter()
                    .copied()
                    .find(|&mode| mode == name)
                    .or_else(|| diag::did_you_mean(&name, MODES.iter().copied()))
            }),
        _ => None,
    };
    let message = match written {
        Some(mode) => format!("`mode` takes a string: write `mode = \"{mode}\"`"),
        None => "`mode` takes a string, `mode = \"read\"` or `mode = \"write\"`; leave `mode` out for an exclusive lock".to_owned(),
    };
    errors.push(syn::Error::new_spanned(expr, message));
    Ok(None)
}

/// `permits = 4`: an integer literal, unsuffixed or `u32`; `permits = "4"` gets a fix without
/// quotes. Its range is checked later.
fn permits(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Option<LitInt>> {
    let expr = value(meta, "permits")?;
    let expression = "`permits` takes an integer literal, e.g. `permits = 4`; for a number known only at run time, pass `LockOptions::inherit().permits(n)` to `LockManager::with_lock`";
    let message = match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.suffix() {
            "" | "u32" => return Ok(Some(int.clone())),
            suffix => format!(
                "`permits` is a `u32`: write `permits = {}`, without the `{suffix}` suffix",
                int.base10_digits()
            ),
        },
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) if lit.value().trim().parse::<u128>().is_ok() => format!(
            "`permits` takes an integer without quotes: write `permits = {}`",
            lit.value().trim()
        ),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr: negated,
            ..
        }) => match &**negated {
            Expr::Lit(ExprLit {
                lit: Lit::Int(int), ..
            }) => format!(
                "`permits` must be at least 1, got -{}: a semaphore needs at least 1 permit; write e.g. `permits = 4`",
                int.base10_digits()
            ),
            _ => expression.to_owned(),
        },
        Expr::Lit(_) => {
            "`permits` takes an integer: how many may hold the lock at once, e.g. `permits = 4`"
                .to_owned()
        }
        _ => expression.to_owned(),
    };
    errors.push(syn::Error::new_spanned(expr, message));
    Ok(None)
}

/// `renew = true`.
fn boolean(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Option<bool>> {
    let expr = value(meta, "renew")?;
    let message = match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(flag),
            ..
        }) => return Ok(Some(flag.value)),
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) if matches!(lit.value().as_str(), "true" | "false") => format!(
            "`renew` takes `true` or `false` without quotes: write `renew = {}`",
            lit.value()
        ),
        _ => "`renew` takes `true` or `false`, e.g. `renew = false`".to_owned(),
    };
    errors.push(syn::Error::new_spanned(expr, message));
    Ok(None)
}

/// `guard = name`.
fn ident(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Option<Ident>> {
    let expr = value(meta, "guard")?;
    if let Expr::Path(path) = &expr {
        if path.attrs.is_empty() && path.qself.is_none() {
            if let Some(ident) = path.path.get_ident() {
                return Ok(Some(ident.clone()));
            }
        }
    }
    let message = match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => format!(
            "`guard` takes a variable name without quotes: write `guard = {}`",
            lit.value()
        ),
        _ => "`guard` takes a variable name, e.g. `guard = lock`".to_owned(),
    };
    errors.push(syn::Error::new_spanned(expr, message));
    Ok(None)
}

/// Consumes the value of an unknown option so parsing can go on.
fn skip(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.input.parse::<Group>()?;
    }
    Ok(())
}

fn path_text(path: &syn::Path) -> String {
    let segments: Vec<String> = path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect();
    segments.join("::")
}

fn quoted(lit: &LitStr) -> String {
    format!("{:?}", lit.value())
}
