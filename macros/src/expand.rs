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
    let code = match &args.version {
        Some(v) => format!("version:{}", v.value()),
        None => format!("tokens:{}", code_hash(func)),
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
        quote_spanned! {span=> __usher_key.arg(#name_str, #private::key_arg(#value)); }
    });
    // Paths are written out inside `quote_spanned!` (not interpolated from `private`, whose
    // tokens carry the attribute's span) so a bound the call fails is reported at the return type.
    let checks = quote_spanned! {ret_span=>
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
            #checks
            let __usher_spec = #private::Spec {
                table: #table,
                function: #function,
                code: #code,
            };
            let mut __usher_key = #private::KeyBuilder::new();
            #(#key_args)*
            #run
        }
    }
}

/// FNV-1a over the function's signature and body tokens (attributes, docs included, left out):
/// stable across builds for the same source, changed by any edit to the code.
fn code_hash(func: &ItemFn) -> String {
    let sig = &func.sig;
    let block = &func.block;
    let text = quote!(#sig #block).to_string();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
