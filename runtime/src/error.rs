//! The error types: one enum for the store and provenance, one for the config.
//!
//! Every message names what is at fault (the table, the file, the config field) so that a
//! failure hours into a pipeline run says where to look without a debugger.

use std::fmt;
use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the store, the [`ProvenanceTracker`](crate::ProvenanceTracker), checkpointed
/// calls and their file formats.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config file could not be loaded or is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// A table name that is not a plain identifier (or, to write, not lowercase).
    #[error("{}", problem.message(name))]
    InvalidTableName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        problem: usher_pipeline_names::NameProblem,
    },

    /// A write to a name beginning with `_`, which belongs to the store's own tables.
    #[error("{}", usher_pipeline_names::NameProblem::Reserved.message(name))]
    ReservedTableName {
        /// The name as given.
        name: String,
    },

    /// The store cannot do what was asked (a [`MemoryStore`](crate::MemoryStore) runs no
    /// SQL and writes no Parquet).
    #[error("{store} does not support {operation}")]
    Unsupported {
        /// The operation asked for (`query`, `export_parquet`).
        operation: &'static str,
        /// The store's type.
        store: &'static str,
    },

    /// An operation that needs an existing table did not find it.
    #[error("table {table:?} does not exist in {path}")]
    TableNotFound {
        /// The table asked for.
        table: String,
        /// The store's database file.
        path: PathBuf,
    },

    /// The database file could not be opened (not a DuckDB file, truncated, wrong version...).
    #[error("cannot open DuckDB store {path}: {message}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What kind of failure DuckDB reported.
        kind: DuckdbErrorKind,
        /// DuckDB's reason.
        message: String,
    },

    /// Another process holds the database file's lock.
    #[error(
        "DuckDB store {path} is in use by another process (only one process may write a store at a time): {message}"
    )]
    StoreInUse {
        /// The database file.
        path: PathBuf,
        /// DuckDB's description of the conflicting lock.
        message: String,
    },

    /// The store was written by a newer release, whose checkpoint metadata this one does not
    /// know how to keep: open it read-only, or upgrade usher-pipeline.
    #[error(
        "store {path} has checkpoint metadata of schema version {found}, newer than this release's {supported}: open it read-only or upgrade usher-pipeline"
    )]
    NewerStore {
        /// The database file.
        path: PathBuf,
        /// The schema version the store records.
        found: i64,
        /// The newest schema version this release writes.
        supported: i64,
    },

    /// DuckDB rejected a statement.
    #[error("DuckDB error in {path} while {context}: {message}")]
    Duckdb {
        /// The database file.
        path: PathBuf,
        /// What the store was doing (`saving table "genes"`).
        context: String,
        /// What kind of failure DuckDB reported.
        kind: DuckdbErrorKind,
        /// DuckDB's message.
        message: String,
    },

    /// The shared store's PostgreSQL catalog refused a statement or could not be reached. The
    /// store is named without its password, and the message has it scrubbed.
    #[error("PostgreSQL error at {store} while {context}: {message}")]
    Postgres {
        /// The catalog, as `postgres://user@host:port/dbname` (never with a password).
        store: String,
        /// What the store was doing (`registering table "genes"`).
        context: String,
        /// PostgreSQL's SQLSTATE code (`40P01`, `57P01`...), when the server sent one.
        code: Option<String>,
        /// PostgreSQL's (or the client's) message.
        message: String,
    },

    /// A shared store's compute lock was lost before what was computed under it was registered:
    /// the session holding it ended (the server restarted, the session was terminated, the
    /// network failed), so another worker may have taken the table over. What this worker
    /// computed was not registered (unless the session ended during the registration's commit,
    /// when the catalog may hold it); running again loads or computes the table.
    #[error(
        "the compute lock of table {table:?} at {store} was lost before its result was registered ({reason}); run again"
    )]
    LockLost {
        /// The catalog, without its password.
        store: String,
        /// The table whose lock was lost.
        table: String,
        /// How it was lost.
        reason: String,
    },

    /// A TLS setting of the shared store's connection that cannot be used: an unknown
    /// `sslmode`, a root certificate file that is missing or holds no certificate, a mode too
    /// weak for `sslrootcert=system`, or a setting this client does not support (client
    /// certificates, revocation lists). Refused before any connection is made.
    #[error("invalid TLS setting {setting}={value:?} for {store}: {message}")]
    PostgresTls {
        /// The catalog, as `postgres://user@host:port/dbname` (never with a password).
        store: String,
        /// The setting at fault as it was given: the connection string's key (`sslmode`,
        /// `sslrootcert`) or the environment variable (`PGSSLMODE`, `PGSSLROOTCERT`).
        setting: &'static str,
        /// Its value (`***` for a secret).
        value: String,
        /// What is wrong, and what to do about it.
        message: String,
    },

    /// The shared store's data root is not the one its catalog was made with (another store's
    /// directory, or a mount missing on this machine).
    #[error("data root {path} does not belong to the shared store {store}: {message}")]
    DataRoot {
        /// The catalog, without its password.
        store: String,
        /// The data root this process was given.
        path: PathBuf,
        /// What does not match.
        message: String,
    },

    /// A frame or result could not cross between polars and DuckDB.
    #[error("cannot convert {what} between polars and DuckDB: {message}")]
    Arrow {
        /// What was being converted (`table "genes"`).
        what: String,
        /// The reason.
        message: String,
    },

    /// A polars operation failed.
    #[error("polars: {0}")]
    Polars(#[from] polars::prelude::PolarsError),

    /// A file or directory could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was attempted (`create directory`, `write sidecar`).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// A provenance sidecar is not the JSON it should be.
    #[error("invalid provenance sidecar {path}: {source}")]
    Sidecar {
        /// The sidecar file.
        path: PathBuf,
        /// The JSON error, with line and column.
        source: serde_json::Error,
    },

    /// A checkpoint without a key (written by the Python pipeline, saved by hand, or re-saved
    /// since `#[checkpointed]` saved it) under the default [`UnkeyedPolicy::Refuse`](crate::UnkeyedPolicy).
    #[error(
        "table {table:?} has a checkpoint without a key (written by the Python pipeline, saved by hand, \
         or changed through the shared store's lake by a DuckDB client), \
         so it is unknown which arguments and code made it: keep it with USHER_UNKEYED=adopt \
         (or `Pipeline::with_unkeyed(UnkeyedPolicy::Adopt)`), or replace it with USHER_UNKEYED=recompute"
    )]
    UnkeyedCheckpoint {
        /// The table.
        table: String,
    },

    /// A table another writer made or changed through the shared store's lake (a DuckDB client
    /// attached to it) keeps its rows in a form this library does not read as one Parquet file.
    #[error(
        "table {table:?} was changed through the lake by another writer and is not one Parquet \
         file this library reads ({reason}): read it with DuckDB's ducklake extension, or replace \
         it by computing it again (USHER_UNKEYED=recompute)"
    )]
    LakeTable {
        /// The table.
        table: String,
        /// What holds its rows besides one file ("rows inlined into the catalog", "2 data
        /// files", ...).
        reason: String,
    },

    /// Checkpoints were not deleted because other checkpoints were made from them (and would
    /// be left stale); deleting those too is the caller's choice.
    #[error(
        "not deleting {}: checkpoints made from {} would be left stale: {} (delete them too, e.g. with --with-dependents)",
        quoted(tables),
        if tables.len() == 1 { "it" } else { "them" },
        quoted(dependents)
    )]
    HasDependents {
        /// The tables asked for.
        tables: Vec<String>,
        /// The checkpoints made from them, directly or not.
        dependents: Vec<String>,
    },

    /// A `#[checkpointed]` call of a table whose body is already running on the same thread in
    /// the same pipeline: recursion, or two functions that write one table, one calling the
    /// other. The inner call would wait for the outer one forever.
    #[error(
        "table {table:?} is called inside the body that makes it (recursion, or two functions \
         writing one table, nested): the inner call would wait for the outer one; give the inner \
         step a table of its own"
    )]
    Reentrant {
        /// The table.
        table: String,
    },

    /// A `#[checkpointed]` function declares with `reads(...)` a table that has no checkpoint.
    #[error(
        "table {table:?} reads table {input:?} (declared in `reads(...)`), which has no checkpoint: \
         compute {input:?} first, or remove it from `reads(...)`"
    )]
    MissingInput {
        /// The table of the call that reads it.
        table: String,
        /// The declared input that is missing.
        input: String,
    },

    /// A `#[checkpointed]` function keys on `config(...)` fields, but its pipeline has no
    /// config.
    #[error(
        "table {table:?} keys on config field `{field}`, but the pipeline has no config: \
         make it with `Pipeline::from_config` or `Pipeline::with_config`"
    )]
    NoConfig {
        /// The table of the call.
        table: String,
        /// The first config field named.
        field: String,
    },

    /// A frame failed a `check = ...` of its `#[checkpointed]` function: nothing was saved, so
    /// the next run computes it again.
    #[error("table {table:?} failed its check `{check}`: {message} (nothing saved)")]
    CheckFailed {
        /// The table.
        table: String,
        /// The check, as written in the attribute.
        check: String,
        /// What the check said.
        message: String,
    },

    /// An argument of a `#[checkpointed]` function could not be serialised into the key.
    #[error(
        "cannot put argument `{argument}` of `{function}` into the checkpoint key of table {table:?}: {message}"
    )]
    Key {
        /// The table.
        table: String,
        /// The function.
        function: String,
        /// The argument.
        argument: String,
        /// serde's message.
        message: String,
    },

    /// A setting (an environment variable such as `USHER_FORCE`) has a value that cannot be used.
    #[error("invalid {setting}={value:?}: {message}")]
    Setting {
        /// The setting's name.
        setting: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        message: String,
    },

    /// A value does not fit the on-disk format (a row count beyond `INTEGER`, a non-finite
    /// float in provenance details...).
    #[error("{0}")]
    Format(String),
}

/// The kind of a DuckDB failure, from DuckDB's own error type (or, for a lock, from the
/// operating system), never from the text of its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DuckdbErrorKind {
    /// Another process holds the database file (DuckDB's file lock).
    LockConflict,
    /// Reading or writing a file failed: a full disk, permissions, a file that is not a DuckDB
    /// database or is damaged.
    Io,
    /// A table, view or schema that does not exist, or already does.
    Catalog,
    /// A constraint (a primary key, `NOT NULL`) was violated.
    Constraint,
    /// A value could not be converted or is out of range, or a result has a type polars cannot
    /// hold.
    Conversion,
    /// A transaction conflict, or a statement in a transaction that already failed.
    Transaction,
    /// SQL that does not parse or bind: a syntax error, an unknown column or function.
    InvalidSql,
    /// Input DuckDB (or this library) refused: a wrong number of parameters, a bad setting, a
    /// value that does not fit a column of the store's own tables.
    InvalidInput,
    /// DuckDB ran out of memory.
    OutOfMemory,
    /// The statement was interrupted.
    Interrupted,
    /// Anything else DuckDB reports (an internal error, a feature it does not implement...).
    Other,
}

/// `a`, `b` as a message lists table names.
fn quoted(tables: &[String]) -> String {
    tables
        .iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Creates the parent directories of `path` (the store file, a Parquet export, a sidecar).
pub fn create_parent_dir(path: &std::path::Path) -> Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            action: "create directory",
            path: parent.to_owned(),
            source,
        }),
        None => Ok(()),
    }
}

/// Errors of loading and validating a [`PipelineConfig`](crate::PipelineConfig).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// The file is not valid YAML (or not UTF-8).
    #[error("{path}:{line}:{column}: not valid YAML: {message}")]
    Yaml {
        /// The config file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },

    /// The YAML is well-formed but does not fit the schema; every problem found is listed.
    #[error("invalid config {path}:{}", DisplayProblems(problems))]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Each problem, in file order.
        problems: Vec<Problem>,
    },

    /// `data_dir` or `cache_dir` could not be created.
    #[error("config {path}: cannot create `{field}` directory {dir}: {source}")]
    CreateDir {
        /// The config file.
        path: PathBuf,
        /// `data_dir` or `cache_dir`.
        field: &'static str,
        /// The directory.
        dir: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// [`ScoringWeights::validate_sum`](crate::ScoringWeights::validate_sum) failed.
    #[error("Scoring weights must sum to 1.0, got {total:.6}")]
    WeightsSum {
        /// The actual sum.
        total: f64,
    },
}

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The dotted field path, `versions.ensembl_release`.
    pub field: String,
    /// The 1-based line in the file, when the problem is at a written value.
    pub line: Option<usize>,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// What is wrong with a config field.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A required field or section is absent.
    Missing,
    /// A key the schema does not have.
    UnknownKey {
        /// The closest valid key at that level, if one is close.
        suggestion: Option<String>,
    },
    /// The same key twice in one mapping.
    DuplicateKey,
    /// A value of the wrong type.
    WrongType {
        /// What the field takes.
        expected: &'static str,
        /// The value found, as written, with its YAML type.
        found: String,
        /// How to fix it, when there is an obvious way.
        hint: Option<&'static str>,
    },
    /// A value outside its allowed range.
    OutOfRange {
        /// The value found.
        value: String,
        /// The allowed range.
        constraint: &'static str,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        match &self.kind {
            ProblemKind::Missing => write!(f, "`{}` is required but missing", self.field),
            ProblemKind::UnknownKey { suggestion } => {
                write!(f, "unknown key `{}`", self.field)?;
                match suggestion {
                    Some(s) => write!(f, "; did you mean `{s}`?"),
                    None => Ok(()),
                }
            }
            ProblemKind::DuplicateKey => write!(f, "`{}` is given more than once", self.field),
            ProblemKind::WrongType {
                expected,
                found,
                hint,
            } => {
                write!(f, "`{}` must be {expected}, found {found}", self.field)?;
                match hint {
                    Some(h) => write!(f, " ({h})"),
                    None => Ok(()),
                }
            }
            ProblemKind::OutOfRange { value, constraint } => {
                write!(
                    f,
                    "`{}` = {value} is out of range: must be {constraint}",
                    self.field
                )
            }
        }
    }
}

struct DisplayProblems<'a>(&'a [Problem]);

impl fmt::Display for DisplayProblems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}
