//! Checks the function and the options together, resolving placeholders to parameters.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::{Expr, FnArg, Ident, ItemFn, LitInt, LitStr, Member, Pat, Path};

use crate::args::{Args, Opt, MODES};
use crate::diag::{self, Errors};
use crate::duration;
use crate::key::{self, Segment, Template};

/// A checked attribute: everything the expansion needs.
pub(crate) struct Lock {
    pub(crate) keys: Vec<Key>,
    /// `keys = [...]` was used: `guard` binds the whole set.
    pub(crate) many: bool,
    /// Which kind of lock every key is taken as.
    pub(crate) kind: Kind,
    /// The options written in the attribute; the manager resolves those left out (the
    /// expansion never writes a default of its own).
    pub(crate) ttl_ms: Option<u64>,
    pub(crate) wait_ms: Option<u64>,
    pub(crate) renew: Option<bool>,
    pub(crate) on_busy: OnBusy,
    pub(crate) client: Option<Expr>,
    pub(crate) guard: Option<Ident>,
    /// The facade crate: `::redlock` unless `crate = "..."`.
    pub(crate) krate: Path,
}

/// The kind of lock the keys are taken as, with where it was written.
pub(crate) enum Kind {
    /// Neither `mode` nor `permits`: one holder at a time.
    Exclusive,
    /// `mode = "read"`.
    Read(Span),
    /// `mode = "write"`.
    Write(Span),
    /// `permits = N`, N at least 1.
    Permits(u32, Span),
}

/// What a busy lock gives.
pub(crate) enum OnBusy {
    Error,
    Skip,
}

/// One key: literal text and values to format, in order.
pub(crate) struct Key {
    /// The template literal: where errors about its values point.
    pub(crate) span: Span,
    pub(crate) parts: Vec<Part>,
}

pub(crate) enum Part {
    Text(String),
    /// `root.field.field`, to be formatted with `Display`.
    Value {
        root: Ident,
        fields: Vec<Member>,
    },
}

/// Parses the function and checks it against the options. `None` when anything was wrong
/// (every problem is in `errors`).
pub(crate) fn check(args: Args, item: TokenStream, errors: &mut Errors) -> Option<(ItemFn, Lock)> {
    let function = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            let message = if syn::parse2::<syn::TraitItemFn>(item.clone()).is_ok() {
                "`#[distributed_lock]` needs a body to lock: put it on the method's implementation, not on its declaration"
            } else {
                "`#[distributed_lock]` goes on an `async fn`"
            };
            errors.push(syn::Error::new_spanned(item, message));
            return None;
        }
    };
    let lock = check_function(&function, args, errors);
    match lock {
        Some(lock) if errors.is_empty() => Some((function, lock)),
        _ => None,
    }
}

fn check_function(function: &ItemFn, args: Args, errors: &mut Errors) -> Option<Lock> {
    let sig = &function.sig;
    let name = &sig.ident;
    if let Some(constness) = &sig.constness {
        errors.at(
            constness.span,
            format!("`#[distributed_lock]` cannot go on a `const fn`: taking a lock is I/O at run time; remove `const` and write `async fn {name}`"),
        );
    } else if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token.span,
            format!("`#[distributed_lock]` needs an `async fn`: the lock is taken, renewed and released across `.await`s; write `async fn {name}`"),
        );
    }
    let params = Params::of(function);

    let templates: Vec<&LitStr> = match (&args.key, &args.keys) {
        (Some(key), None) => vec![&key.value],
        (None, Some(keys)) if keys.value.is_empty() => {
            errors.at(
                keys.name,
                "`keys` is empty; list at least one key, e.g. `keys = [\"account:<from>\", \"account:<to>\"]`",
            );
            Vec::new()
        }
        (None, Some(keys)) => keys.value.iter().collect(),
        (Some(_), Some(keys)) => {
            errors.at(
                keys.name,
                "`key` and `keys` cannot be used together; list every key in `keys = [...]`",
            );
            Vec::new()
        }
        (None, None) => {
            if !args.malformed && !args.has("key") && !args.has("keys") {
                errors.at(
                    Span::call_site(),
                    format!(
                        "missing lock key: add `key = \"...\"`, e.g. `#[distributed_lock(key = \"{}\")]`, or `keys = [...]` for several",
                        params.example_key(name)
                    ),
                );
            }
            Vec::new()
        }
    };
    let mut keys = Vec::new();
    for lit in templates {
        if let Some(template) = key::parse(lit, errors) {
            keys.extend(params.resolve(name, template, errors));
        }
    }

    let kind = kind(&args, errors);
    let ttl_ms = setting(&args.ttl, duration::ttl, errors);
    let wait_ms = setting(&args.wait, duration::wait, errors);
    let on_busy = match &args.on_busy {
        None => Some(OnBusy::Error),
        Some(option) => on_busy(&option.value, errors),
    };
    let krate = match &args.krate {
        None => Some(syn::parse_quote!(::redlock)),
        Some(option) => option.value.parse::<Path>().map_err(|_| {
            errors.at(
                option.value.span(),
                format!(
                    "invalid `crate` path {:?}; write the path of the redlock crate, e.g. `crate = \"::redlock\"`",
                    option.value.value()
                ),
            );
        }).ok(),
    };
    Some(Lock {
        many: args.keys.is_some(),
        keys,
        kind: kind?,
        ttl_ms: ttl_ms?,
        wait_ms: wait_ms?,
        renew: args.renew.map(|option| option.value),
        on_busy: on_busy?,
        client: args.client.map(|option| option.value),
        guard: args.guard.map(|option| option.value),
        krate: krate?,
    })
}

/// A duration option: `Some(None)` when not written, `None` when it is invalid.
fn setting(
    option: &Option<Opt<LitStr>>,
    parse: fn(&LitStr) -> syn::Result<u64>,
    errors: &mut Errors,
) -> Option<Option<u64>> {
    let Some(option) = option else {
        return Some(None);
    };
    parse(&option.value)
        .map(Some)
        .map_err(|error| errors.push(error))
        .ok()
}

/// The kind of lock from `mode` or `permits`; `None` when either is invalid or both are written.
fn kind(args: &Args, errors: &mut Errors) -> Option<Kind> {
    let mode = args.mode.as_ref().map(|option| mode(&option.value, errors));
    let permits = args
        .permits
        .as_ref()
        .map(|option| permits(&option.value, errors));
    if let (Some((mode_at, mode_name)), Some((permits_at, permits_name))) =
        (args.first("mode"), args.first("permits"))
    {
        let (second, first, at) = if permits_at > mode_at {
            ("permits", "mode", permits_name)
        } else {
            ("mode", "permits", mode_name)
        };
        errors.at(
            at,
            format!("`{second}` cannot be used with `{first}`: a read-write lock (`mode`) and a semaphore (`permits`) are different locks; keep one of them"),
        );
        return None;
    }
    match (mode, permits) {
        (Some(kind), _) | (_, Some(kind)) => kind,
        (None, None) => Some(Kind::Exclusive),
    }
}

/// `mode = "read"` or `"write"`.
fn mode(lit: &LitStr, errors: &mut Errors) -> Option<Kind> {
    let value = lit.value();
    match value.as_str() {
        "read" => return Some(Kind::Read(lit.span())),
        "write" => return Some(Kind::Write(lit.span())),
        _ => {}
    }
    let valid = "valid modes: `\"read\"` (readers share the lock), `\"write\"` (one writer alone)";
    let message = if value.eq_ignore_ascii_case("exclusive") {
        format!("invalid `mode` value {value:?}: a lock is exclusive when `mode` is left out, so remove `mode = {value:?}`; {valid}")
    } else {
        let hint = match diag::did_you_mean(&value, MODES.iter().copied()) {
            Some(known) => format!("did you mean `{known}`? "),
            None => String::new(),
        };
        format!(
            "invalid `mode` value {value:?}; {hint}{valid}; leave `mode` out for an exclusive lock"
        )
    };
    errors.at(lit.span(), message);
    None
}

/// `permits = N`: at least 1, at most `u32::MAX`.
fn permits(lit: &LitInt, errors: &mut Errors) -> Option<Kind> {
    let at = lit.span();
    match lit.base10_parse::<u32>() {
        Ok(0) => errors.at(
            at,
            "`permits` must be at least 1, got 0: a semaphore needs at least 1 permit; write e.g. `permits = 4`",
        ),
        Ok(permits) => return Some(Kind::Permits(permits, at)),
        // The digits are a valid number (the tokenizer checked), so only its size can fail.
        Err(_) => errors.at(
            at,
            format!(
                "`permits` must be at most {} (`u32::MAX`), got {}",
                u32::MAX,
                lit.base10_digits()
            ),
        ),
    }
    None
}

fn on_busy(lit: &LitStr, errors: &mut Errors) -> Option<OnBusy> {
    let value = lit.value();
    match value.as_str() {
        "error" => return Some(OnBusy::Error),
        "skip" => return Some(OnBusy::Skip),
        _ => {}
    }
    let hint = match diag::did_you_mean(&value, ["error", "skip"]) {
        Some(known) => format!("did you mean \"{known}\"? "),
        None => String::new(),
    };
    errors.at(
        lit.span(),
        format!("invalid `on_busy` value {value:?}; {hint}write `on_busy = \"error\"` (a busy lock returns `LockError::Timeout`) or `on_busy = \"skip\"` (a busy lock skips the body)"),
    );
    None
}

/// The names a placeholder can start with: parameter bindings, and `self`.
struct Params {
    bindings: Vec<Ident>,
    receiver: bool,
}

impl Params {
    fn of(function: &ItemFn) -> Self {
        let mut params = Params {
            bindings: Vec::new(),
            receiver: false,
        };
        for input in &function.sig.inputs {
            match input {
                FnArg::Receiver(_) => params.receiver = true,
                FnArg::Typed(typed) => bindings(&typed.pat, &mut params.bindings),
            }
        }
        params
    }

    fn names(&self) -> Vec<String> {
        let receiver = self.receiver.then(|| "self".to_owned());
        receiver
            .into_iter()
            .chain(self.bindings.iter().map(|ident| ident.unraw().to_string()))
            .collect()
    }

    /// `withdraw:<user_id>`, for the missing-key message.
    fn example_key(&self, name: &Ident) -> String {
        match self.bindings.first() {
            Some(binding) => format!("{}:<{}>", name.unraw(), binding.unraw()),
            None => name.unraw().to_string(),
        }
    }

    /// Turns a template's placeholders into expressions on the parameters.
    fn resolve(&self, function: &Ident, template: Template, errors: &mut Errors) -> Option<Key> {
        let span = template.lit.span();
        // Spanned at the literal, so a non-`Display` value is reported on the attribute,
        // yet marked as macro output (lints about the generated borrow stay quiet).
        let at = Span::call_site().located_at(span);
        let mut parts = Vec::new();
        let mut ok = true;
        for segment in template.segments {
            match segment {
                Segment::Text(text) => parts.push(Part::Text(text)),
                Segment::Placeholder(placeholder) => {
                    let wanted = placeholder.root.unraw().to_string();
                    let root = if wanted == "self" && self.receiver {
                        Some(Ident::new("self", at))
                    } else {
                        self.bindings
                            .iter()
                            .find(|binding| binding.unraw() == wanted)
                            .map(|binding| {
                                let mut binding = binding.clone();
                                binding.set_span(at);
                                binding
                            })
                    };
                    let Some(root) = root else {
                        errors.at(span, self.unknown(function, &placeholder.written, &wanted));
                        ok = false;
                        continue;
                    };
                    let fields = placeholder
                        .fields
                        .into_iter()
                        .map(|field| match field {
                            Member::Named(mut ident) => {
                                ident.set_span(at);
                                Member::Named(ident)
                            }
                            Member::Unnamed(index) => Member::Unnamed(syn::Index {
                                index: index.index,
                                span: at,
                            }),
                        })
                        .collect();
                    parts.push(Part::Value { root, fields });
                }
            }
        }
        ok.then_some(Key { span, parts })
    }

    fn unknown(&self, function: &Ident, written: &str, wanted: &str) -> String {
        let names = self.names();
        let rest = written.find('.').map_or(">", |dot| &written[dot..]);
        let mut message = format!("unknown placeholder `{written}` in lock key: ");
        if names.is_empty() {
            message.push_str(&format!(
                "`{}` takes no parameters, so the key can only be fixed text",
                function.unraw()
            ));
            return message;
        }
        message.push_str(&format!("no parameter named `{wanted}`;"));
        if let Some(known) = diag::did_you_mean(wanted, names.iter().map(String::as_str)) {
            message.push_str(&format!(" did you mean `<{known}{rest}`?"));
        }
        message.push_str(&format!(
            " parameters of `{}`: {}",
            function.unraw(),
            diag::backticked(names.iter().map(String::as_str))
        ));
        message
    }
}

/// The variables a parameter pattern binds (`Path(user_id)` binds `user_id`).
fn bindings(pat: &Pat, out: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(pat) => {
            out.push(pat.ident.clone());
            if let Some((_, sub)) = &pat.subpat {
                bindings(sub, out);
            }
        }
        Pat::Tuple(pat) => pat.elems.iter().for_each(|pat| bindings(pat, out)),
        Pat::TupleStruct(pat) => pat.elems.iter().for_each(|pat| bindings(pat, out)),
        Pat::Struct(pat) => pat
            .fields
            .iter()
            .for_each(|field| bindings(&field.pat, out)),
        Pat::Slice(pat) => pat.elems.iter().for_each(|pat| bindings(pat, out)),
        Pat::Reference(pat) => bindings(&pat.pat, out),
        Pat::Paren(pat) => bindings(&pat.pat, out),
        Pat::Type(pat) => bindings(&pat.pat, out),
        Pat::Or(pat) => {
            if let Some(first) = pat.cases.first() {
                bindings(first, out);
            }
        }
        _ => {}
    }
}
