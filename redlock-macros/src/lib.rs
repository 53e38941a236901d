//! The `#[distributed_lock]` attribute of [redlock-attr](https://docs.rs/redlock-attr). Use it
//! through that crate, imported as `redlock`: expansions refer to `::redlock::__private`.

mod args;
mod diag;
mod duration;
mod expand;
mod key;
mod validate;

use proc_macro::TokenStream;

#[doc = include_str!("distributed_lock.md")]
#[proc_macro_attribute]
pub fn distributed_lock(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let mut errors = diag::Errors::default();
    let args = args::parse(args.into(), &mut errors);
    match validate::check(args, item.clone(), &mut errors) {
        Some((function, lock)) => expand::locked(function, &lock),
        None => expand::unchanged(errors, item),
    }
    .into()
}
