//! The `#[checkpointed]` attribute of [usher-pipeline](https://docs.rs/usher-pipeline).
//!
//! This crate parses and validates only (`attr.rs`, `validate.rs`); the expansion
//! (`expand.rs`) calls ordinary runtime code through `usher_pipeline::__private`. Use it through
//! the `usher-pipeline` crate, which documents the attribute.

mod attr;
mod expand;
mod validate;

use proc_macro::TokenStream;

/// Makes a fetch function restartable and traced; see the `usher-pipeline` crate's docs.
#[proc_macro_attribute]
pub fn checkpointed(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut parsed = attr::Args::default();
    let parser = syn::meta::parser(|meta| parsed.parse_one(meta));
    if let Err(e) = syn::parse::Parser::parse(parser, args) {
        parsed.errors.push(e);
    }
    parsed.finish();

    let func = match syn::parse::<syn::ItemFn>(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let item2 = proc_macro2::TokenStream::from(item);
            let mut err = syn::Error::new_spanned(&item2, "`#[checkpointed]` applies to functions and methods with a body");
            for e in parsed.errors {
                err.combine(e);
            }
            let compile_error = err.to_compile_error();
            return quote::quote!(#compile_error #item2).into();
        }
    };
    let mut errors = std::mem::take(&mut parsed.errors);
    let checked = validate::check(&func, &parsed, &mut errors);
    let mut errors = errors.into_iter();
    if let Some(mut combined) = errors.next() {
        for e in errors {
            combined.combine(e);
        }
        // The function is kept, so the rest of the crate still type-checks against it and the
        // user sees only these errors.
        let compile_error = combined.to_compile_error();
        return quote::quote!(#compile_error #func).into();
    }
    match checked {
        Some(checked) => expand::expand(&func, &parsed, checked).into(),
        None => quote::quote!(#func).into(),
    }
}
