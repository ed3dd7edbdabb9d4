//! Every rule about the annotated function, in one place: each problem is spanned on its token
//! and all are reported together.

use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Type};

use crate::attr::Args;

/// A key argument: a named parameter that goes into the checkpoint key.
pub(crate) struct KeyParam {
    pub name: Ident,
    pub ty: Type,
    /// A `DataFrame` or `&DataFrame`: keyed by its data version, not serialised.
    pub frame: bool,
}

/// What the expansion needs, once the function is known to be valid.
pub(crate) struct Checked {
    pub context: proc_macro2::TokenStream,
    pub key_params: Vec<KeyParam>,
    pub ret: Type,
}

/// Checks the function against the arguments. `errors` receives every problem.
pub(crate) fn check(func: &ItemFn, args: &Args, errors: &mut Vec<syn::Error>) -> Option<Checked> {
    let sig = &func.sig;
    if let Some(c) = &sig.constness {
        errors.push(syn::Error::new_spanned(
            c,
            "`#[checkpointed]` cannot apply to a `const fn`: it reads and writes the store",
        ));
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            v,
            "`#[checkpointed]` functions cannot be variadic",
        ));
    }
    let ret = match &sig.output {
        // The commonest slip, caught here so it is one error instead of three type mismatches.
        ReturnType::Type(_, ty) if last_segment_is(ty, "DataFrame") => {
            errors.push(syn::Error::new_spanned(
                ty,
                "a `#[checkpointed]` function must return `Result<DataFrame, E>`: the error type carries the body's and the store's failures",
            ));
            None
        }
        ReturnType::Type(_, ty) => Some((**ty).clone()),
        ReturnType::Default => {
            errors.push(syn::Error::new_spanned(
                &sig.ident,
                "a `#[checkpointed]` function must return `Result<DataFrame, E>`, and this one returns nothing",
            ));
            None
        }
    };

    let mut context = None;
    // The first parameter that holds a `Pipeline` by value or `&mut`, and how.
    let mut misused_pipeline: Option<(Ident, Type, &str)> = None;
    let mut key_params = Vec::new();
    let mut names = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                names.push(Ident::new("self", receiver.self_token.span));
                if !args.skip.iter().any(|s| s == "self") {
                    errors.push(syn::Error::new_spanned(
                        receiver,
                        "`self` would be part of the checkpoint key: leave it out with `skip(self)` (and pass what matters as parameters)",
                    ));
                }
            }
            FnArg::Typed(pat_type) => {
                let Pat::Ident(pat) = &*pat_type.pat else {
                    errors.push(syn::Error::new_spanned(&pat_type.pat, "`#[checkpointed]` needs plain parameter names (a pattern cannot be part of the key)"));
                    continue;
                };
                let name = pat.ident.clone();
                names.push(name.clone());
                if misused_pipeline.is_none()
                    && let Some(how) = pipeline_not_by_shared_ref(&pat_type.ty)
                {
                    misused_pipeline = Some((name.clone(), (*pat_type.ty).clone(), how));
                }
                let is_context = match &args.context {
                    Some(c) => *c == name,
                    None => context.is_none() && is_pipeline_ref(&pat_type.ty),
                };
                if is_context {
                    context = Some(quote::quote!(#name));
                } else if !args.skip.contains(&name) {
                    key_params.push(KeyParam {
                        name,
                        frame: is_frame(&pat_type.ty),
                        ty: (*pat_type.ty).clone(),
                    });
                }
            }
        }
    }
    for skipped in &args.skip {
        if !names.iter().any(|n| n == skipped) {
            errors.push(syn::Error::new_spanned(
                skipped,
                format!(
                    "`skip` names `{skipped}`, which is not a parameter of `{}`",
                    sig.ident
                ),
            ));
        }
    }
    if let Some(c) = &args.context
        && !names.iter().any(|n| n == c)
    {
        errors.push(syn::Error::new_spanned(
            c,
            format!(
                "`context` names `{c}`, which is not a parameter of `{}`",
                sig.ident
            ),
        ));
    }
    if let Some(b) = &args.batches
        && names.iter().any(|n| n == b)
    {
        errors.push(syn::Error::new_spanned(
            b,
            format!("`batches` names `{b}`, which is already a parameter of `{}`: choose another name for the batches handle", sig.ident),
        ));
    }
    if context.is_none() && args.context.is_none() {
        match misused_pipeline {
            // A `Pipeline` taken otherwise than by `&`: say so at its type, not that there is none.
            Some((name, ty, how)) => errors.push(syn::Error::new_spanned(
                ty,
                format!("`{name}` takes the pipeline {how}: the context is taken by shared reference, `{name}: &Pipeline` (it is `Sync`; one context serves every call and thread of a run)"),
            )),
            None => errors.push(syn::Error::new(
                sig.paren_token.span.join(),
                format!("`{}` has no pipeline-context parameter: add one such as `ctx: &Pipeline` (or name it with `context = ...`)", sig.ident),
            )),
        }
    }
    Some(Checked {
        context: context?,
        key_params,
        ret: ret?,
    })
}

/// `&Pipeline`, `&'a Pipeline`, `&usher_pipeline::Pipeline`, `&Pipeline<MemoryStore>`.
fn is_pipeline_ref(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => match &*r.elem {
            Type::Path(p) => {
                p.qself.is_none()
                    && p.path
                        .segments
                        .last()
                        .is_some_and(|s| s.ident == "Pipeline")
            }
            _ => false,
        },
        Type::Group(g) => is_pipeline_ref(&g.elem),
        _ => false,
    }
}

/// `Pipeline` by value (`"by value"`) or `&mut Pipeline` (`"by `&mut`"`).
fn pipeline_not_by_shared_ref(ty: &Type) -> Option<&'static str> {
    match ty {
        Type::Reference(r) if r.mutability.is_some() => {
            last_segment_is(&r.elem, "Pipeline").then_some("by `&mut`")
        }
        Type::Group(g) => pipeline_not_by_shared_ref(&g.elem),
        ty => last_segment_is(ty, "Pipeline").then_some("by value"),
    }
}

/// `DataFrame` or `&DataFrame` (any path to it).
fn is_frame(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => last_segment_is(&r.elem, "DataFrame"),
        Type::Group(g) => is_frame(&g.elem),
        ty => last_segment_is(ty, "DataFrame"),
    }
}

/// `DataFrame`, `polars::prelude::DataFrame`.
fn last_segment_is(ty: &Type, name: &str) -> bool {
    match ty {
        Type::Path(p) => {
            p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == name)
        }
        Type::Group(g) => last_segment_is(&g.elem, name),
        _ => false,
    }
}

/// Where a type's tokens start, for spanning a bound check on it.
pub(crate) fn span_of(ty: &Type) -> proc_macro2::Span {
    ty.span()
}
