//! The expansion: the function, unchanged outside, whose body builds the keys and hands itself
//! to the runtime as `async move { .. }`.
//!
//! ```text
//! #[attrs] vis async fn name(params) -> Ret {
//!     ::redlock::__private::lock::<Ret, _, _>(
//!         ::redlock::__private::enter(client, [key, ..], options).await,
//!         move |__redlock_held| async move { guard; pin return type; body },
//!     ).await
//! }
//! ```
//!
//! This module is the only one that writes tokens, and the only one that names runtime items.

use proc_macro2::{Delimiter, Group, Literal, Punct, Spacing, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{AttrStyle, ItemFn, ReturnType, Type};

use crate::diag::Errors;
use crate::validate::{Key, Kind, Lock, OnBusy, Part};

/// The errors, then the function exactly as written: no follow-on errors.
pub(crate) fn unchanged(errors: Errors, item: TokenStream) -> TokenStream {
    let mut output = match errors.finish() {
        Ok(()) => TokenStream::new(),
        Err(error) => error.to_compile_error(),
    };
    output.extend(item);
    output
}

/// The locked function.
pub(crate) fn locked(function: ItemFn, lock: &Lock) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    let outer = attrs
        .iter()
        .filter(|attr| matches!(attr.style, AttrStyle::Outer));
    let inner = attrs
        .iter()
        .filter(|attr| !matches!(attr.style, AttrStyle::Outer));
    let runtime = Runtime(&lock.krate);

    let client = match &lock.client {
        Some(expr) => {
            let expr = expr.to_token_stream();
            let mut tokens = expr.clone().into_iter();
            let first = tokens
                .next()
                .map_or_else(Span::call_site, |token| token.span());
            let last = tokens.last().map_or(first, |token| token.span());
            let mut amp = Punct::new('&', Spacing::Alone);
            amp.set_span(first);
            let reference = [TokenTree::Punct(amp), group(expr, last)];
            call(
                runtime.item("client"),
                reference.into_iter().collect(),
                first,
                last,
            )
        }
        None => {
            let path = runtime.item("global_client");
            quote!(#path())
        }
    };
    let keys = lock.keys.iter().map(|key| build_key(&runtime, key));
    // Only the options written: the manager resolves the others.
    let options = {
        let (options, duration) = (runtime.item("LockOptions"), runtime.item("Duration"));
        let kind = kind(&lock.kind);
        let ttl = lock
            .ttl_ms
            .map(|ms| quote!(.ttl(#duration::from_millis(#ms))));
        let wait = lock
            .wait_ms
            .map(|ms| quote!(.wait(#duration::from_millis(#ms))));
        let renew = lock.renew.map(|renew| quote!(.renew(#renew)));
        quote!(#options::inherit() #kind #ttl #wait #renew)
    };

    let held = local("__redlock_held");
    let guard = lock.guard.as_ref().map(|name| {
        let (ty, method) = if lock.many {
            (runtime.item("LockSet"), quote!(set))
        } else {
            (runtime.item("LockGuard"), quote!(guard))
        };
        quote!(let #name: &#ty = #held.#method();)
    });

    // The return type, with `impl Trait` left to inference, pins the body's type so that
    // `return` and `?` behave as in the original function. Errors about it (not a `Result`,
    // no `From<LockError>`) all point at the return type, so rustc reports them once.
    let (ret, ret_span) = return_type(&sig.output, sig.paren_token.span.close());
    let ret = respan(ret, ret_span);
    let pinned = local("__redlock_ret");
    let pin = quote! {
        if let ::core::option::Option::Some(#pinned) = ::core::option::Option::None::<#ret> {
            #[allow(unreachable_code)]
            return #pinned;
        }
    };
    let run = runtime.item(match lock.on_busy {
        OnBusy::Error => "lock",
        OnBusy::Skip => "lock_or_skip",
    });
    let run = respan(run, ret_span);
    let held_ty = runtime.item("BodyLocks");
    let stmts = &block.stmts;
    let body = quote! {
        move |#held: #held_ty| async move {
            #guard
            #pin
            #(#stmts)*
        }
    };
    let enter = runtime.item("enter");
    let call = quote_spanned! {ret_span=>
        #run::<#ret, _, _>(#enter(#client, [#(#keys),*], #options).await, #body).await
    };

    quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            #call
        }
    }
}

/// `.read()`, `.write()`, `.permits(4u32)`: the kind of lock, at the value that asked for it;
/// nothing for an exclusive lock.
fn kind(kind: &Kind) -> Option<TokenStream> {
    let (method, args, span) = match *kind {
        Kind::Exclusive => return None,
        Kind::Read(span) => ("read", None, span),
        Kind::Write(span) => ("write", None, span),
        Kind::Permits(permits, span) => ("permits", Some(Literal::u32_suffixed(permits)), span),
    };
    let at = Span::call_site().located_at(span);
    let method = syn::Ident::new(method, at);
    let args = args.map(|mut literal| {
        literal.set_span(at);
        literal
    });
    Some(quote!(.#method(#args)))
}

/// Paths into the runtime glue: `<crate>::__private::<name>`.
struct Runtime<'a>(&'a syn::Path);

impl Runtime<'_> {
    fn item(&self, name: &str) -> TokenStream {
        let krate = self.0;
        let name = syn::Ident::new(name, Span::call_site());
        quote!(#krate::__private::#name)
    }
}

/// A local the user's code cannot see or shadow.
fn local(name: &str) -> syn::Ident {
    syn::Ident::new(name, Span::mixed_site())
}

/// One key, as a `String` built from the parameters before the body runs.
fn build_key(runtime: &Runtime<'_>, key: &Key) -> TokenStream {
    if let [Part::Text(text)] = key.parts.as_slice() {
        return quote!(::std::string::String::from(#text));
    }
    // Room for the literal text and a typical formatted value per placeholder, so building the
    // key allocates once.
    let capacity: usize = key
        .parts
        .iter()
        .map(|part| match part {
            Part::Text(text) => text.len(),
            Part::Value { .. } => 16,
        })
        .sum();
    let start = quote!(::std::string::String::with_capacity(#capacity));
    let var = local("__redlock_key");
    let push_part = runtime.item("push_part");
    let pushes = key.parts.iter().map(|part| match part {
        Part::Text(text) => quote!(#var.push_str(#text);),
        Part::Value { root, fields } => {
            // At the key literal, so a value that is not `Display` is reported there.
            let at = Span::call_site().located_at(key.span);
            let value = respan(quote!(&(#root #(.#fields)*)), at);
            let call = call(push_part.clone(), quote!(&mut #var, #value), at, at);
            quote!(#call;)
        }
    });
    quote!({
        let mut #var = #start;
        #(#pushes)*
        #var
    })
}

/// `path(args)` spanning `first..last`, so errors about the call point at what it is about.
fn call(path: TokenStream, args: TokenStream, first: Span, last: Span) -> TokenStream {
    let mut call = respan(path, first);
    call.extend([group(args, last)]);
    call
}

/// `(tokens)` at `span`.
fn group(tokens: TokenStream, span: Span) -> TokenTree {
    let mut group = Group::new(Delimiter::Parenthesis, tokens);
    group.set_span(span);
    TokenTree::Group(group)
}

/// The declared return type with `impl Trait` erased to `_`, and where to report about it.
fn return_type(output: &ReturnType, none: Span) -> (TokenStream, Span) {
    match output {
        ReturnType::Default => (quote!(()), none),
        ReturnType::Type(_, ty) => {
            let span = match &**ty {
                Type::Path(path) => path
                    .path
                    .segments
                    .last()
                    .map_or_else(|| ty.span(), |segment| segment.ident.span()),
                _ => ty.span(),
            };
            let mut ty = (**ty).clone();
            EraseImplTrait.visit_type_mut(&mut ty);
            (ty.into_token_stream(), span)
        }
    }
}

struct EraseImplTrait;

impl VisitMut for EraseImplTrait {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(impl_trait) = ty {
            *ty = Type::Infer(syn::TypeInfer {
                underscore_token: syn::Token![_](impl_trait.impl_token.span),
            });
        } else {
            syn::visit_mut::visit_type_mut(self, ty);
        }
    }
}

/// The same tokens, all at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(inner) = &token {
                let mut inner = Group::new(inner.delimiter(), respan(inner.stream(), span));
                inner.set_span(span);
                token = TokenTree::Group(inner);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proc_macro2::TokenStream;
    use quote::quote;

    use crate::diag::Errors;
    use crate::{args, validate};

    /// The options expression the attribute `attr` expands to, from `inherit()` on.
    fn options(attr: TokenStream) -> String {
        let item = quote!(
            async fn f(id: u64) -> Result<u64, E> {
                Ok(id)
            }
        );
        let mut errors = Errors::default();
        let args = args::parse(attr.clone(), &mut errors);
        let Some((function, lock)) = validate::check(args, item, &mut errors) else {
            panic!("`{attr}` was refused");
        };
        let expanded = super::locked(function, &lock).to_string();
        let start = expanded.find("inherit ()").expect("the options");
        let end = start
            + expanded[start..]
                .find(") . await")
                .expect("the end of `enter`");
        expanded[start..end].trim().to_owned()
    }

    #[test]
    fn the_kind_of_lock_comes_before_the_other_options() {
        assert_eq!(options(quote!(key = "k")), "inherit ()");
        assert_eq!(
            options(quote!(key = "k", mode = "read", ttl = "3s")),
            "inherit () . read () . ttl (:: redlock :: __private :: Duration :: from_millis (3000u64))"
        );
        assert_eq!(
            options(quote!(keys = ["a", "b"], renew = false, mode = "write")),
            "inherit () . write () . renew (false)"
        );
        assert_eq!(
            options(quote!(key = "k", wait = "1s", permits = 4)),
            "inherit () . permits (4u32) . wait (:: redlock :: __private :: Duration :: from_millis (1000u64))"
        );
        assert_eq!(
            options(quote!(key = "k", permits = 0x10u32)),
            "inherit () . permits (16u32)"
        );
    }
}
