//! The `#[distributed_lock]` attribute of redlock.

use proc_macro::TokenStream;

/// Placeholder until the attribute lands: emits the function unchanged.
#[proc_macro_attribute]
pub fn distributed_lock(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
