//! Parsing of `#[checkpointed(...)]`'s arguments into [`Args`], every problem collected.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::parse::Parse;
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
    /// `reads(a, b)`: the stored tables the body reads, whose versions become its inputs.
    pub reads: Vec<Ident>,
    /// `config(versions.gnomad_version, ...)`: config fields in the key, each a path of fields.
    pub config: Vec<Vec<Ident>>,
    /// `max_age = "30d"`: the literal and its seconds.
    pub max_age: Option<(LitStr, u64)>,
    /// `check = path`, once per check: functions the frame must pass before it is saved.
    pub checks: Vec<syn::Path>,
    /// `keep = 5`: how many versions of the table to keep (at least 1).
    pub keep: Option<usize>,
    /// Problems found while parsing, reported together.
    pub errors: Vec<syn::Error>,
    /// A `table` argument was written (or suggested for a misspelt key), even if its value is
    /// bad: then "missing `table`" would only repeat that error.
    table_mentioned: bool,
}

const KEYS: [&str; 10] = [
    "table", "version", "skip", "context", "batches", "reads", "config", "max_age", "check", "keep",
];

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
            "max_age" => self.max_age.is_some(),
            "keep" => self.keep.is_some(),
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
            "reads" => {
                for expr in parenthesized_list(&meta)? {
                    match single_ident(&expr) {
                        Some(ident) => self.add_read(ident),
                        None => self.errors.push(syn::Error::new_spanned(
                            &expr,
                            "`reads` takes table names: `reads(gnomad_constraint, go_annotation)`",
                        )),
                    }
                }
            }
            "config" => {
                for expr in parenthesized_list(&meta)? {
                    match field_path(&expr) {
                        Some(path) => self.config.push(path),
                        None => self.errors.push(syn::Error::new_spanned(
                            &expr,
                            "`config` takes paths of config fields: `config(versions.gnomad_version, scoring.gnomad)`",
                        )),
                    }
                }
            }
            "max_age" => {
                if let Some(lit) = self.string_literal(&meta, "max_age")? {
                    match parse_max_age(&lit.value()) {
                        Ok(seconds) => {
                            self.max_age.get_or_insert((lit, seconds));
                        }
                        Err(message) => self.errors.push(syn::Error::new_spanned(&lit, message)),
                    }
                }
            }
            "keep" => {
                let expr: Expr = meta.value()?.parse()?;
                let usage = "`keep` takes how many versions of the table to keep, at least 1: `keep = 5` (`keep = 1` keeps no history)";
                match &expr {
                    Expr::Lit(ExprLit {
                        lit: Lit::Int(int), ..
                    }) => match int.base10_parse::<usize>() {
                        Ok(n) if n >= 1 => {
                            self.keep.get_or_insert(n);
                        }
                        _ => self.errors.push(syn::Error::new_spanned(int, usage)),
                    },
                    other => self.errors.push(syn::Error::new_spanned(other, usage)),
                }
            }
            "check" => {
                let expr: Expr = meta.value()?.parse()?;
                match expr {
                    Expr::Path(p) if p.qself.is_none() => self.checks.push(p.path),
                    other => self.errors.push(syn::Error::new_spanned(
                        other,
                        "`check` takes the path of a function: `check = usher_pipeline::checks::non_empty`",
                    )),
                }
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
                    format!("unknown argument `{}`{suggestion} (expected one of `table`, `version`, `skip`, `context`, `batches`, `reads`, `config`, `max_age`, `check`, `keep`)", quote::quote!(#path)),
                ));
                skip_value(&meta)?;
            }
        }
        Ok(())
    }

    /// A `reads(...)` table: once, by the rule for tables a store can read.
    fn add_read(&mut self, ident: Ident) {
        let name = ident.to_string();
        if self.reads.contains(&ident) {
            self.errors.push(syn::Error::new_spanned(
                &ident,
                format!("`{name}` is read twice"),
            ));
        } else if let Err(problem) = usher_pipeline_names::check_readable(&name) {
            self.errors
                .push(syn::Error::new_spanned(&ident, problem.message(&name)));
        } else {
            self.reads.push(ident);
        }
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
        let mut expr: Expr = meta.value()?.parse()?;
        // A literal passed through a `macro_rules!` fragment (`table = $table`) arrives
        // wrapped in an invisible group.
        while let Expr::Group(group) = expr {
            expr = *group.expr;
        }
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
        if let Some(table) = &self.table
            && let Some(own) = self.reads.iter().find(|r| **r == table.value())
        {
            self.errors.push(syn::Error::new_spanned(
                own,
                format!("`{own}` is this function's own table: a checkpoint cannot read itself"),
            ));
        }
        if self.table.is_none() && !self.table_mentioned {
            self.errors.push(syn::Error::new(
                Span::call_site(),
                "missing `table`: write `#[checkpointed(table = \"name\")]` to name the checkpoint's table",
            ));
        }
    }
}

/// The comma-separated expressions of `name(...)`.
fn parenthesized_list(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<Expr>> {
    let content;
    syn::parenthesized!(content in meta.input);
    let list = content.parse_terminated(Expr::parse, Token![,])?;
    Ok(list.into_iter().collect())
}

/// `name`, an expression that is one identifier.
fn single_ident(expr: &Expr) -> Option<Ident> {
    match expr {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => p.path.get_ident().cloned(),
        _ => None,
    }
}

/// `a.b.c` as its identifiers, each with its span (for "no field" errors at the field).
fn field_path(expr: &Expr) -> Option<Vec<Ident>> {
    match expr {
        Expr::Field(field) => {
            let mut path = field_path(&field.base)?;
            match &field.member {
                syn::Member::Named(ident) => path.push(ident.clone()),
                syn::Member::Unnamed(_) => return None,
            }
            Some(path)
        }
        other => single_ident(other).map(|ident| vec![ident]),
    }
}

/// `"30d"` or `"12h"` in seconds.
pub(crate) fn parse_max_age(text: &str) -> Result<u64, String> {
    let usage = "write a whole number of days or hours: `max_age = \"30d\"` or `max_age = \"12h\"`";
    let trimmed = text.trim();
    let (number, seconds) = match (trimmed.strip_suffix('d'), trimmed.strip_suffix('h')) {
        (Some(days), _) => (days, 86_400),
        (_, Some(hours)) => (hours, 3_600),
        _ => (trimmed, 0),
    };
    let digits = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
    match number.parse::<u64>().ok().filter(|_| digits) {
        Some(0) if seconds > 0 => Err(format!(
            "`max_age` {text:?} is zero: every checkpoint would be stale; {usage}"
        )),
        Some(n) if seconds > 0 => n
            .checked_mul(seconds)
            .ok_or_else(|| format!("`max_age` {text:?} is too long")),
        _ => Err(format!("`max_age` {text:?} is not a duration: {usage}")),
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

#[cfg(test)]
mod tests {
    use super::parse_max_age;

    #[test]
    fn max_age_is_days_or_hours() {
        assert_eq!(parse_max_age("30d"), Ok(30 * 86_400));
        assert_eq!(parse_max_age(" 12h "), Ok(12 * 3_600));
        for bad in [
            "30", "d", "30 days", "-1d", "1.5d", "30m", "", "0h", "30д", "+1d",
        ] {
            assert!(parse_max_age(bad).is_err(), "{bad:?}");
        }
        assert!(
            parse_max_age("99999999999999999d")
                .unwrap_err()
                .contains("too long")
        );
    }
}
