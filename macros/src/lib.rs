//! The `#[checkpointed]` attribute of [usher-pipeline](https://docs.rs/usher-pipeline).
//!
//! This crate parses and validates only (`attr.rs`, `validate.rs`); the expansion
//! (`expand.rs`) calls ordinary runtime code through `usher_pipeline::__private`. Use it through
//! the `usher-pipeline` crate, which documents the attribute.

#![warn(missing_docs)]

mod attr;
mod expand;
mod validate;

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;

/// Makes an expensive fetch function restartable and traced: see its documentation where
/// `usher_pipeline` re-exports it (`usher_pipeline::checkpointed`), which the library's tests
/// compile and run.
#[proc_macro_attribute]
pub fn checkpointed(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_attribute(args.into(), item.into()).into()
}

/// The whole attribute on `proc_macro2` tokens: parse, validate, expand.
fn expand_attribute(args: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let mut parsed = attr::Args::default();
    let args = parsed.take_bare_literals(args);
    let parser = syn::meta::parser(|meta| parsed.parse_one(meta));
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        parsed.errors.push(e);
    }
    parsed.finish();

    let func = match syn::parse2::<syn::ItemFn>(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let mut err = syn::Error::new_spanned(
                &item,
                "`#[checkpointed]` applies to functions and methods with a body",
            );
            for e in parsed.errors {
                err.combine(e);
            }
            let compile_error = err.to_compile_error();
            return quote!(#compile_error #item);
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
        // user sees only these errors (not also "unused variable" for parameters the missing
        // expansion would have used).
        let compile_error = combined.to_compile_error();
        return quote!(#compile_error #[allow(unused_variables)] #func);
    }
    match checked {
        Some(checked) => expand::expand(&func, &parsed, checked),
        None => quote!(#func),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages of the errors the attribute reports, or an empty list.
    fn errors(args: TokenStream2, item: TokenStream2) -> Vec<String> {
        let out = expand_attribute(args, item).to_string();
        out.match_indices("compile_error !")
            .map(|(i, _)| {
                let rest = &out[i..];
                let start = rest.find('"').unwrap() + 1;
                let end = start
                    + rest[start..]
                        .find("\" }")
                        .unwrap_or_else(|| rest[start..].find('"').unwrap());
                rest[start..end].to_owned()
            })
            .collect()
    }

    fn fetch() -> TokenStream2 {
        quote!(
            fn fetch(ctx: &Pipeline, min_depth: u32, client: &Client) -> Result<DataFrame, E> {
                Ok(todo())
            }
        )
    }

    #[test]
    fn valid_attributes_expand_without_errors() {
        assert!(errors(quote!(table = "gnomad", skip(client)), fetch()).is_empty());
        assert!(
            errors(
                quote!(table = "gnomad", skip(client), version = "2"),
                fetch()
            )
            .is_empty()
        );
        let method = quote!(
            fn fetch(&self, ctx: &usher_pipeline::Pipeline) -> Result<DataFrame, E> {
                Ok(x)
            }
        );
        assert!(errors(quote!(table = "t", skip(self)), method).is_empty());
        let out = expand_attribute(quote!(table = "gnomad", skip(client)), fetch()).to_string();
        assert!(out.contains("__private :: run (ctx"), "{out}");
        assert!(
            out.contains("\"min_depth\""),
            "min_depth is in the key: {out}"
        );
        assert!(!out.contains("\"client\""), "client is skipped: {out}");
    }

    #[test]
    fn every_misuse_is_reported_together() {
        let e = errors(quote!(tabel = "x", table = 5), fetch());
        assert!(
            e.iter()
                .any(|m| m.contains("unknown argument `tabel`; did you mean `table`?")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("`table` must be a string literal")),
            "{e:?}"
        );
        // A bad value does not stop the arguments after it from being checked, and a `table`
        // that was written (badly) is not also reported missing.
        let e = errors(quote!(table = 5, tabel = "x"), fetch());
        assert!(
            e.len() == 2 && e.iter().any(|m| m.contains("did you mean `table`?")),
            "{e:?}"
        );
        let e = errors(quote!(table = "a", table = "b"), fetch());
        assert!(e.iter().any(|m| m.contains("duplicate `table`")), "{e:?}");
        assert!(
            errors(quote!(), fetch())
                .iter()
                .any(|m| m.contains("missing `table`"))
        );
        assert!(
            errors(quote!(table = ""), fetch())
                .iter()
                .any(|m| m.contains("empty"))
        );
        assert!(
            errors(quote!(table = "_checkpoints"), fetch())
                .iter()
                .any(|m| m.contains("reserved"))
        );
        assert!(
            errors(quote!(table = "Genes"), fetch())
                .iter()
                .any(|m| m.contains("not a plain lowercase identifier"))
        );
        assert!(
            errors(quote!(table = "g", skip(nope)), fetch())
                .iter()
                .any(|m| m.contains("`skip` names `nope`"))
        );
        let no_ctx = quote!(
            fn f(n: u32) -> Result<DataFrame, E> {
                Ok(x)
            }
        );
        assert!(
            errors(quote!(table = "g"), no_ctx)
                .iter()
                .any(|m| m.contains("no pipeline-context parameter"))
        );
        let unit = quote!(
            fn f(ctx: &Pipeline) {}
        );
        assert!(
            errors(quote!(table = "g"), unit)
                .iter()
                .any(|m| m.contains("must return `Result<DataFrame, E>`"))
        );
        let not_fn = quote!(
            struct S;
        );
        assert!(
            errors(quote!(table = "g"), not_fn)
                .iter()
                .any(|m| m.contains("applies to functions"))
        );
        let method = quote!(
            fn f(&self, ctx: &Pipeline) -> Result<DataFrame, E> {
                Ok(x)
            }
        );
        assert!(
            errors(quote!(table = "g"), method)
                .iter()
                .any(|m| m.contains("skip(self)"))
        );
    }

    #[test]
    fn code_hash_follows_the_body_and_version_pins_it() {
        let a = expand_attribute(
            quote!(table = "g"),
            quote!(
                fn f(ctx: &Pipeline) -> Result<DataFrame, E> {
                    Ok(a())
                }
            ),
        )
        .to_string();
        let b = expand_attribute(
            quote!(table = "g"),
            quote!(
                fn f(ctx: &Pipeline) -> Result<DataFrame, E> {
                    Ok(b())
                }
            ),
        )
        .to_string();
        let code = |s: &str| {
            s[s.find("code :").unwrap()..]
                .split(',')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_ne!(code(&a), code(&b));
        let pinned = expand_attribute(
            quote!(table = "g", version = "7"),
            quote!(
                fn f(ctx: &Pipeline) -> Result<DataFrame, E> {
                    Ok(a())
                }
            ),
        )
        .to_string();
        assert!(pinned.contains("code : \"version:7\""), "{pinned}");
        // Declared inputs and checks are code: adding one recomputes (and without them the
        // code is what 0.1.0 computed, the tokens alone).
        let with = |args: TokenStream2| {
            expand_attribute(
                args,
                quote!(
                    fn f(ctx: &Pipeline) -> Result<DataFrame, E> {
                        Ok(a())
                    }
                ),
            )
            .to_string()
        };
        let checked = with(quote!(table = "g", check = non_empty));
        let reading = with(quote!(table = "g", reads(genes)));
        assert_ne!(code(&checked), code(&a));
        assert_ne!(code(&reading), code(&a));
        assert_ne!(code(&reading), code(&checked));
        assert_eq!(code(&with(quote!(table = "g", max_age = "2d"))), code(&a));
        let pinned = with(quote!(
            table = "g",
            version = "7",
            reads(genes),
            check = non_empty
        ));
        assert!(
            pinned.contains("code : \"version:7;reads=genes;checks=non_empty\""),
            "{pinned}"
        );
    }
}
