//! Parsing of `#[checkpointed(...)]`'s arguments into [`Args`], every problem collected.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Token};

/// The attribute's arguments, as written.
#[derive(Default)]
pub(crate) struct Args {
    /// `table = "..."`.
    pub table: Option<LitStr>,
    /// `version = "..."`: pins the code part of the key.
    pub version: Option<LitStr>,
    /// `skip(a, b)`: parameters left out of the key.
    pub skip: Vec<Ident>,
    /// `context = name`: the pipeline-context parameter, when its type is not `&Pipeline`.
    pub context: Option<Ident>,
    /// `batches = name`: the name the body uses for the call's resumable `Batches`.
    pub batches: Option<Ident>,
    /// Problems found while parsing, reported together.
    pub errors: Vec<syn::Error>,
    /// A `table` argument was written (or suggested for a misspelt key), even if its value is
    /// bad: then "missing `table`" would only repeat that error.
    table_mentioned: bool,
}

const KEYS: [&str; 5] = ["table", "version", "skip", "context", "batches"];

impl Args {
    /// Takes the bare literals out of the arguments, each reported at the literal with the
    /// named form to write instead (`#[checkpointed("genes")]`: write `table = "genes"`).
    /// Left in, syn would stop at the first with "unexpected literal in nested attribute,
    /// expected ident", and "missing `table`" would follow.
    pub fn take_bare_literals(&mut self, args: TokenStream) -> TokenStream {
        let mut kept = TokenStream::new();
        let mut chunk: Vec<TokenTree> = Vec::new();
        let mut flush = |chunk: &mut Vec<TokenTree>, comma: Option<TokenTree>, this: &mut Self| {
            match chunk.as_slice() {
                [TokenTree::Literal(literal)] => {
                    let lit = Lit::new(literal.clone());
                    let message = match &lit {
                        Lit::Str(s) => {
                            this.table_mentioned = true;
                            format!(
                                "the table is a named argument: write `table = {}`",
                                s.token()
                            )
                        }
                        _ => "`#[checkpointed]` takes named arguments: `table = \"name\"`, `skip(...)`, ..."
                            .to_owned(),
                    };
                    this.errors.push(syn::Error::new(literal.span(), message));
                }
                _ => {
                    kept.extend(chunk.drain(..));
                    kept.extend(comma);
                }
            }
            chunk.clear();
        };
        for token in args {
            match &token {
                TokenTree::Punct(p) if p.as_char() == ',' => flush(&mut chunk, Some(token), self),
                _ => chunk.push(token),
            }
        }
        flush(&mut chunk, None, self);
        kept
    }

    /// The `syn::meta::parser` callback: one call per argument.
    pub fn parse_one(&mut self, meta: ParseNestedMeta<'_>) -> syn::Result<()> {
        let path = &meta.path;
        let name = path.get_ident().map(Ident::to_string).unwrap_or_default();
        let seen = match name.as_str() {
            "table" => self.table.is_some(),
            "version" => self.version.is_some(),
            "context" => self.context.is_some(),
            "batches" => self.batches.is_some(),
            _ => false,
        };
        if seen {
            self.errors.push(syn::Error::new_spanned(
                path,
                format!("duplicate `{name}` argument"),
            ));
        }
        match name.as_str() {
            "table" => {
                self.table_mentioned = true;
                if let Some(lit) = self.string_literal(&meta, "table")? {
                    self.check_table(&lit);
                    self.table.get_or_insert(lit);
                }
            }
            "version" => {
                if let Some(lit) = self.string_literal(&meta, "version")? {
                    if lit.value().trim().is_empty() {
                        self.errors
                            .push(syn::Error::new_spanned(&lit, "`version` must not be empty"));
                    }
                    self.version.get_or_insert(lit);
                }
            }
            "context" => {
                let value = meta.value()?;
                let ident: Ident = value.parse()?;
                self.context.get_or_insert(ident);
            }
            "batches" => {
                let value = meta.value()?;
                let ident: Ident = value.parse()?;
                self.batches.get_or_insert(ident);
            }
            "skip" => {
                meta.parse_nested_meta(|inner| {
                    match inner.path.get_ident() {
                        Some(ident) if inner.input.is_empty() || inner.input.peek(Token![,]) => {
                            if self.skip.iter().any(|s| s == ident) {
                                self.errors.push(syn::Error::new_spanned(
                                    ident,
                                    format!("`{ident}` is skipped twice"),
                                ));
                            } else {
                                self.skip.push(ident.clone());
                            }
                        }
                        _ => self.errors.push(syn::Error::new_spanned(
                            &inner.path,
                            "`skip` takes parameter names: `skip(client, cache)`",
                        )),
                    }
                    Ok(())
                })?;
            }
            _ => {
                let suggestion = KEYS
                    .iter()
                    .map(|k| (strsim::levenshtein(k, &name), *k))
                    .filter(|(d, _)| *d <= 2)
                    .min()
                    .map(|(_, k)| k);
                self.table_mentioned |= suggestion == Some("table");
                let suggestion = suggestion
                    .map(|k| format!("; did you mean `{k}`?"))
                    .unwrap_or_default();
                self.errors.push(syn::Error::new_spanned(
                    path,
                    format!("unknown argument `{}`{suggestion} (expected one of `table`, `version`, `skip`, `context`, `batches`)", quote::quote!(#path)),
                ));
                skip_value(&meta)?;
            }
        }
        Ok(())
    }

    /// The table-name rule, the stores' own (`usher-pipeline-names`), at the literal.
    fn check_table(&mut self, lit: &LitStr) {
        let name = lit.value();
        if let Err(problem) = usher_pipeline_names::check_writable(&name) {
            self.errors
                .push(syn::Error::new_spanned(lit, problem.message(&name)));
        }
    }

    /// Reads `= "literal"`. A value that is not a string literal is recorded as an error (and
    /// parsing goes on with the next argument); a missing `=` ends parsing.
    fn string_literal(
        &mut self,
        meta: &ParseNestedMeta<'_>,
        key: &str,
    ) -> syn::Result<Option<LitStr>> {
        let expr: Expr = meta.value()?.parse()?;
        match expr {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => Ok(Some(lit)),
            other => {
                self.errors.push(syn::Error::new(
                    other.span(),
                    format!("`{key}` must be a string literal: `{key} = \"...\"`"),
                ));
                Ok(None)
            }
        }
    }

    /// Checks done once every argument is read.
    pub fn finish(&mut self) {
        if self.table.is_none() && !self.table_mentioned {
            self.errors.push(syn::Error::new(
                Span::call_site(),
                "missing `table`: write `#[checkpointed(table = \"name\")]` to name the checkpoint's table",
            ));
        }
    }
}

/// Consumes an unknown argument's value (`= expr` or `(...)`) so parsing can go on.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<proc_macro2::TokenStream>()?;
    }
    Ok(())
}
