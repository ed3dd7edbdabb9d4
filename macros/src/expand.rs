//! Code generation: the user's function, intact on the outside, whose body hands over to the
//! runtime's `__private::run` (or `run_async`), which decides hit, miss, stale or force.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ItemFn;

use crate::attr::Args;
use crate::validate::{Checked, span_of};

pub(crate) fn expand(func: &ItemFn, args: &Args, checked: Checked) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let table = args.table.as_ref().expect("validated");
    let function = sig.ident.to_string();
    let (code, legacy_code) = match &args.version {
        Some(v) => (
            format!("version:{}{}", v.value(), declared_inputs_and_checks(args)),
            None,
        ),
        None => (
            format!("tokens:{}", code_hash(func, args)),
            Some(format!("tokens:{}", legacy_code_hash(func, args))),
        ),
    };
    let context = &checked.context;
    let ret = &checked.ret;
    let ret_span = span_of(ret);
    let private = quote!(::usher_pipeline::__private);

    // Each key argument is checked where its type is written, so a type that cannot be part of
    // the key is reported at that type.
    let key_args = checked.key_params.iter().map(|p| {
        let name = &p.name;
        let name_str = name.to_string();
        let span = span_of(&p.ty);
        // A reference parameter is passed as it is, so a bad type is named as written
        // (`Client`, not `&Client`).
        let value = match &p.ty {
            syn::Type::Reference(_) => quote_spanned!(span=> #name),
            _ => quote_spanned!(span=> &#name),
        };
        if p.frame {
            quote_spanned! {span=> __usher_key.frame(#name_str, #value); }
        } else {
            quote_spanned! {span=> __usher_key.arg(#name_str, #private::key_arg(#value)); }
        }
    });
    let config_fields = config_fields(args, context);
    // Only what the attribute sets is written out; the rest comes from `Spec::DEFAULT`, so a
    // plain function's expansion stays three fields.
    let mut optional = Vec::new();
    if let Some(legacy) = &legacy_code {
        optional.push(quote!(legacy_code: ::core::option::Option::Some(#legacy),));
    }
    if !args.reads.is_empty() {
        let reads = args.reads.iter().map(|r| r.to_string());
        optional.push(quote!(reads: &[#(#reads),*],));
    }
    if let Some((_, seconds)) = &args.max_age {
        optional.push(quote!(max_age_seconds: ::core::option::Option::Some(#seconds),));
    }
    if let Some(keep) = args.keep {
        optional.push(quote!(keep: ::core::option::Option::Some(#keep),));
    }
    // Each check's bound is reported at its path.
    let checks = args.checks.iter().map(|path| {
        let name = quote!(#path).to_string().replace(' ', "");
        let span = syn::spanned::Spanned::span(path);
        let run =
            quote_spanned! {span=> ::usher_pipeline::__private::run_check(&#path, __usher_frame) };
        quote! { #private::Check { name: #name, run: |__usher_frame| #run } }
    });
    if !args.checks.is_empty() {
        optional.push(quote!(checks: &[#(#checks),*],));
    }
    // Paths are written out inside `quote_spanned!` (not interpolated from `private`, whose
    // tokens carry the attribute's span) so a bound the call fails is reported at the return type.
    let assert_result = quote_spanned! {ret_span=>
        ::usher_pipeline::__private::assert_fetch_result::<#ret>();
    };
    // The call is spanned at the return type, so what the runtime requires of it (a value that
    // can be a checkpoint, an error that takes the store's) is reported there.
    let run = match (&args.batches, sig.asyncness.is_some()) {
        (None, true) => {
            quote_spanned! {ret_span=> ::usher_pipeline::__private::run_async(#context, &__usher_spec, __usher_key, async move #block).await }
        }
        (None, false) => {
            quote_spanned! {ret_span=> ::usher_pipeline::__private::run(#context, &__usher_spec, __usher_key, move || #block) }
        }
        (Some(batches), true) => {
            quote_spanned! {ret_span=> ::usher_pipeline::__private::run_async_batched(#context, &__usher_spec, __usher_key, move |#batches| async move #block).await }
        }
        (Some(batches), false) => {
            quote_spanned! {ret_span=> ::usher_pipeline::__private::run_batched(#context, &__usher_spec, __usher_key, move |#batches| #block) }
        }
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            #assert_result
            let __usher_spec = #private::Spec {
                table: #table,
                function: #function,
                code: #code,
                #(#optional)*
                ..#private::Spec::DEFAULT
            };
            let mut __usher_key = #private::KeyBuilder::new();
            #(#key_args)*
            #config_fields
            #run
        }
    }
}

/// `config(...)`: each field read from the pipeline's config (a misspelt field fails to compile
/// at its own token), or "no config" noted for the key to report.
fn config_fields(args: &Args, context: &TokenStream) -> TokenStream {
    let Some(first) = args.config.first() else {
        return TokenStream::new();
    };
    let dotted = |path: &[syn::Ident]| {
        path.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(".")
    };
    let first = dotted(first);
    let fields = args.config.iter().map(|path| {
        let name = dotted(path);
        quote! {
            __usher_key.config(#name, ::usher_pipeline::__private::key_arg(&__usher_config #(.#path)*));
        }
    });
    quote! {
        match ::usher_pipeline::__private::config_of(#context) {
            ::core::option::Option::Some(__usher_config) => { #(#fields)* }
            ::core::option::Option::None => __usher_key.no_config(#first),
        }
    }
}

/// `reads(...)` and `check = ...` as part of the code: a new check or input is new code (an
/// empty checkpoint saved before `check = non_empty` was added is not kept). Empty when there
/// are none, so the code of a function without them is what release 0.1.0 computed.
fn declared_inputs_and_checks(args: &Args) -> String {
    let mut text = String::new();
    if !args.reads.is_empty() {
        let reads: Vec<String> = args.reads.iter().map(ToString::to_string).collect();
        text.push_str(&format!(";reads={}", reads.join(",")));
    }
    if !args.checks.is_empty() {
        let checks: Vec<String> = args
            .checks
            .iter()
            .map(|c| quote!(#c).to_string().replace(' ', ""))
            .collect();
        text.push_str(&format!(";checks={}", checks.join(",")));
    }
    text
}

/// FNV-1a over a canonical walk of the function's signature and body tokens (attributes, docs
/// included, left out) and its declared inputs and checks: stable across builds and compiler
/// releases for the same source, changed by any edit to the code. The walk writes what the
/// tokens are (identifiers, literal text, punctuation with its spacing, delimiters), never the
/// compiler's pretty-printed `to_string()`, whose spacing has changed between Rust releases.
fn code_hash(func: &ItemFn, args: &Args) -> String {
    let sig = &func.sig;
    let block = &func.block;
    let mut text = String::new();
    canonical(quote!(#sig #block), &mut text);
    fnv1a(&(text + &declared_inputs_and_checks(args)))
}

/// The hash releases before 0.2.0 computed (of the pretty-printed tokens), recognised once so
/// their checkpoints keep their hits and are re-keyed with [`code_hash`].
fn legacy_code_hash(func: &ItemFn, args: &Args) -> String {
    let sig = &func.sig;
    let block = &func.block;
    fnv1a(&(quote!(#sig #block).to_string() + &declared_inputs_and_checks(args)))
}

/// Writes `tokens` to `out`: each identifier and literal as written followed by a space, each
/// punctuation character followed by a space unless it is joined to the next (`::`, `->`), and
/// each group between its delimiters (an invisible group between `\u{1}` and `\u{2}`).
fn canonical(tokens: TokenStream, out: &mut String) {
    use proc_macro2::{Delimiter, Spacing, TokenTree};
    for token in tokens {
        match token {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ('(', ')'),
                    Delimiter::Brace => ('{', '}'),
                    Delimiter::Bracket => ('[', ']'),
                    Delimiter::None => ('\u{1}', '\u{2}'),
                };
                out.push(open);
                canonical(group.stream(), out);
                out.push(close);
            }
            TokenTree::Ident(ident) => {
                out.push_str(&ident.to_string());
                out.push(' ');
            }
            TokenTree::Punct(punct) => {
                out.push(punct.as_char());
                if punct.spacing() == Spacing::Alone {
                    out.push(' ');
                }
            }
            TokenTree::Literal(literal) => {
                out.push_str(&literal.to_string());
                out.push(' ');
            }
        }
    }
}

/// 64-bit FNV-1a of `text`, in hex.
fn fnv1a(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
