//! `PipelineConfig`: the typed, validated YAML config and its Python-compatible `config_hash`.
//!
//! The schema is the Python pipeline's (`shared/seed/01-01-config-schema.md`). Two rules shape
//! this module:
//! - the hash must be the Python pipeline's for the same file, so YAML is read with PyYAML's
//!   scalar rules and values are coerced the way pydantic's lax mode does;
//! - where pydantic is laxer than that (a boolean for an int, `1_000`, an octal `017`, a
//!   number with surrounding spaces in a string), the file is rejected with a clear message
//!   rather than accepted with a guess, so a file is never accepted and hashed differently.
//!   Unknown keys are rejected too: pydantic ignores them, but a typo in the config of an
//!   hours-long run must not pass silently.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;
use serde_json::{Map, Value};

use super::Config;
use crate::error::{ConfigError, Problem, ProblemKind};
use crate::python::yaml::{self, Node, NodeKind, Resolved};
use crate::python::{self, json as pyjson};

/// The pipeline's configuration, validated. Field order and names are the Python model's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelineConfig {
    /// Directory for downloaded data; created on [`load`](Self::load).
    pub data_dir: PathBuf,
    /// Directory for API response caching; created on [`load`](Self::load).
    pub cache_dir: PathBuf,
    /// The DuckDB store's file.
    pub duckdb_path: PathBuf,
    /// Versions of the external data sources.
    pub versions: DataSourceVersions,
    /// API client settings.
    pub api: ApiConfig,
    /// Weights of the evidence layers.
    pub scoring: ScoringWeights,
}

/// Versions of the external data sources (`versions:`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataSourceVersions {
    /// Ensembl release, at least 100. Required.
    pub ensembl_release: i64,
    /// gnomAD version, default `v4.1`.
    pub gnomad_version: String,
    /// GTEx version, default `v8`.
    pub gtex_version: String,
    /// Human Protein Atlas version, default `23.0`; a string (an unquoted `23.0` is rejected).
    pub hpa_version: String,
}

/// API client settings (`api:`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiConfig {
    /// Maximum requests per second, at least 1 (default 5).
    pub rate_limit_per_second: i64,
    /// Retry attempts, 1 to 20 (default 5).
    pub max_retries: i64,
    /// Cache time-to-live in seconds, 0 meaning no expiry (default 86400).
    pub cache_ttl_seconds: i64,
    /// Request timeout in seconds, at least 1 (default 30).
    pub timeout_seconds: i64,
}

/// Weights of the evidence layers (`scoring:`), each in `0.0..=1.0`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoringWeights {
    /// Genetic constraint (default 0.20).
    pub gnomad: f64,
    /// Tissue expression (default 0.20).
    pub expression: f64,
    /// Annotation completeness (default 0.15).
    pub annotation: f64,
    /// Subcellular localisation (default 0.15).
    pub localization: f64,
    /// Animal model phenotypes (default 0.15).
    pub animal_model: f64,
    /// Literature (default 0.15).
    pub literature: f64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            rate_limit_per_second: 5,
            max_retries: 5,
            cache_ttl_seconds: 86400,
            timeout_seconds: 30,
        }
    }
}

impl Default for ScoringWeights {
    fn default() -> Self {
        Self {
            gnomad: 0.20,
            expression: 0.20,
            annotation: 0.15,
            localization: 0.15,
            animal_model: 0.15,
            literature: 0.15,
        }
    }
}

impl DataSourceVersions {
    /// The given Ensembl release with every other version at its default.
    pub fn new(ensembl_release: i64) -> Self {
        Self {
            ensembl_release,
            gnomad_version: "v4.1".to_owned(),
            gtex_version: "v8".to_owned(),
            hpa_version: "23.0".to_owned(),
        }
    }
}

impl ScoringWeights {
    /// Checks that the weights sum to 1.0 within 1e-6. As in the Python pipeline this is not
    /// part of loading: call it before scoring.
    pub fn validate_sum(&self) -> Result<(), ConfigError> {
        let total = self.gnomad
            + self.expression
            + self.annotation
            + self.localization
            + self.animal_model
            + self.literature;
        if (total - 1.0).abs() > 1e-6 {
            Err(ConfigError::WeightsSum { total })
        } else {
            Ok(())
        }
    }
}

impl PipelineConfig {
    /// Reads, validates and returns the config at `path`, creating `data_dir` and `cache_dir`
    /// (relative paths resolve against the working directory, as in the Python pipeline).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let before = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = before.len()
                - before
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1)
                + 1;
            ConfigError::Yaml {
                path: path.to_owned(),
                line,
                column,
                message: "the file is not UTF-8".to_owned(),
            }
        })?;
        let config = Self::from_yaml_str(&text, path)?;
        config.create_dirs(path)?;
        Ok(config)
    }

    /// Validates YAML text without touching the file system; `origin` names the source in
    /// error messages.
    pub fn from_yaml_str(text: &str, origin: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let origin = origin.as_ref();
        let root = yaml::parse(text).map_err(|e| ConfigError::Yaml {
            path: origin.to_owned(),
            line: e.line,
            column: e.column,
            message: e.message,
        })?;
        let mut v = Validator {
            problems: Vec::new(),
        };
        let config = v.config(root.as_ref());
        match config {
            Some(config) if v.problems.is_empty() => Ok(config),
            _ => Err(ConfigError::Invalid {
                path: origin.to_owned(),
                problems: v.problems,
            }),
        }
    }

    /// Creates `data_dir` and `cache_dir` if they do not exist.
    pub fn create_dirs(&self, origin: &Path) -> Result<(), ConfigError> {
        for (field, dir) in [("data_dir", &self.data_dir), ("cache_dir", &self.cache_dir)] {
            std::fs::create_dir_all(dir).map_err(|source| ConfigError::CreateDir {
                path: origin.to_owned(),
                field,
                dir: dir.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// The canonical JSON the hash is taken of: Python's
    /// `json.dumps(config.model_dump(mode="python"), sort_keys=True, default=str)`, which is
    /// [`Config::canonical_json`]'s rule applied to this schema (a validated config has only
    /// finite numbers and UTF-8 paths, so it never panics).
    pub fn canonical_json(&self) -> String {
        super::canonical_json(self)
    }

    /// SHA-256 (lowercase hex) of [`canonical_json`](Self::canonical_json): byte for byte the
    /// Python pipeline's `config_hash()` for the same file.
    pub fn config_hash(&self) -> String {
        super::sha256_hex(&self.canonical_json())
    }
}

/// The usher pipeline's config: hashed by [`Config`]'s rule, which is the Python pipeline's
/// (the same as [`PipelineConfig::config_hash`]), with its `versions:` section as the
/// data-source versions, as the Python pipeline's provenance records them.
impl Config for PipelineConfig {
    fn data_source_versions(&self) -> Map<String, Value> {
        match serde_json::to_value(&self.versions) {
            Ok(Value::Object(versions)) => versions,
            other => {
                unreachable!("a struct of strings and ints serialises to an object: {other:?}")
            }
        }
    }
}

static DECIMAL_INT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[-+]?(?:0|[1-9][0-9]*)$").unwrap());
static INT_STRING: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[-+]?[0-9]+$").unwrap());
static YAML_DECIMAL_FLOAT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:[-+]?[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+][0-9]+)?$").unwrap());
static FLOAT_STRING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$").unwrap()
});

const INT_HINT: &str = "YAML 1.1, which the Python pipeline reads with, gives this notation another value: write a plain decimal integer";
const STR_HINT: &str = "quote it to make it a string";

struct Validator {
    problems: Vec<Problem>,
}

/// The entries of one mapping, checked for unknown and duplicate keys, handed out by name.
struct Section<'a> {
    prefix: String,
    line: usize,
    entries: Vec<(&'a str, &'a Node)>,
}

impl<'a> Section<'a> {
    fn take(&mut self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .position(|(k, _)| *k == key)
            .map(|i| self.entries.remove(i).1)
    }

    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }
}

impl Validator {
    fn problem(&mut self, field: String, line: Option<usize>, kind: ProblemKind) {
        self.problems.push(Problem { field, line, kind });
    }

    fn section<'a>(&mut self, node: &'a Node, prefix: &str, keys: &[&str]) -> Option<Section<'a>> {
        let NodeKind::Map(entries) = &node.kind else {
            self.problem(
                if prefix.is_empty() {
                    "(top level)".to_owned()
                } else {
                    prefix.to_owned()
                },
                Some(node.line),
                ProblemKind::WrongType {
                    expected: "a mapping",
                    found: describe(node),
                    hint: None,
                },
            );
            return None;
        };
        let mut section = Section {
            prefix: prefix.to_owned(),
            line: node.line,
            entries: Vec::new(),
        };
        for (key, value) in entries {
            let name = match &key.kind {
                NodeKind::Scalar(s) => s.text.as_str(),
                _ => "(a non-scalar key)",
            };
            let field = section.path(name);
            if !keys.contains(&name) {
                let suggestion = keys
                    .iter()
                    .map(|k| (strsim::levenshtein(k, name), *k))
                    .filter(|(d, k)| *d <= (k.len() / 3).max(2))
                    .min()
                    .map(|(_, k)| k.to_owned());
                self.problem(
                    field,
                    Some(key.line),
                    ProblemKind::UnknownKey { suggestion },
                );
            } else if section.entries.iter().any(|(k, _)| *k == name) {
                self.problem(field, Some(key.line), ProblemKind::DuplicateKey);
            } else {
                section.entries.push((name, value));
            }
        }
        Some(section)
    }

    fn required<'a>(&mut self, section: &mut Section<'a>, key: &str) -> Option<&'a Node> {
        let node = section.take(key);
        if node.is_none() {
            self.problem(section.path(key), Some(section.line), ProblemKind::Missing);
        }
        node
    }

    fn config(&mut self, root: Option<&Node>) -> Option<PipelineConfig> {
        let Some(root) = root else {
            self.problem("(top level)".to_owned(), None, ProblemKind::Missing);
            return None;
        };
        const KEYS: [&str; 6] = [
            "data_dir",
            "cache_dir",
            "duckdb_path",
            "versions",
            "api",
            "scoring",
        ];
        let mut s = self.section(root, "", &KEYS)?;
        let data_dir = self
            .required(&mut s, "data_dir")
            .and_then(|n| self.path(n, "data_dir"));
        let cache_dir = self
            .required(&mut s, "cache_dir")
            .and_then(|n| self.path(n, "cache_dir"));
        let duckdb_path = self
            .required(&mut s, "duckdb_path")
            .and_then(|n| self.path(n, "duckdb_path"));
        let versions = self
            .required(&mut s, "versions")
            .and_then(|n| self.versions(n));
        let api = self.required(&mut s, "api").and_then(|n| self.api(n));
        let scoring = self
            .required(&mut s, "scoring")
            .and_then(|n| self.scoring(n));
        Some(PipelineConfig {
            data_dir: data_dir?,
            cache_dir: cache_dir?,
            duckdb_path: duckdb_path?,
            versions: versions?,
            api: api?,
            scoring: scoring?,
        })
    }

    fn versions(&mut self, node: &Node) -> Option<DataSourceVersions> {
        const KEYS: [&str; 4] = [
            "ensembl_release",
            "gnomad_version",
            "gtex_version",
            "hpa_version",
        ];
        let mut s = self.section(node, "versions", &KEYS)?;
        let defaults = DataSourceVersions::new(0);
        let ensembl_release = self.required(&mut s, "ensembl_release").and_then(|n| {
            self.int(
                n,
                &s.path("ensembl_release"),
                Some(100),
                None,
                "at least 100",
            )
        });
        let mut string = |v: &mut Self, key: &str, default: String| match s.take(key) {
            Some(n) => v.string(n, &s.path(key)),
            None => Some(default),
        };
        let gnomad_version = string(self, "gnomad_version", defaults.gnomad_version);
        let gtex_version = string(self, "gtex_version", defaults.gtex_version);
        let hpa_version = string(self, "hpa_version", defaults.hpa_version);
        Some(DataSourceVersions {
            ensembl_release: ensembl_release?,
            gnomad_version: gnomad_version?,
            gtex_version: gtex_version?,
            hpa_version: hpa_version?,
        })
    }

    fn api(&mut self, node: &Node) -> Option<ApiConfig> {
        const KEYS: [&str; 4] = [
            "rate_limit_per_second",
            "max_retries",
            "cache_ttl_seconds",
            "timeout_seconds",
        ];
        let mut s = self.section(node, "api", &KEYS)?;
        let d = ApiConfig::default();
        let mut int = |v: &mut Self,
                       key: &str,
                       default: i64,
                       min: i64,
                       max: Option<i64>,
                       constraint: &'static str| {
            match s.take(key) {
                Some(n) => v.int(n, &s.path(key), Some(min), max, constraint),
                None => Some(default),
            }
        };
        let rate = int(
            self,
            "rate_limit_per_second",
            d.rate_limit_per_second,
            1,
            None,
            "at least 1",
        );
        let retries = int(
            self,
            "max_retries",
            d.max_retries,
            1,
            Some(20),
            "between 1 and 20",
        );
        let ttl = int(
            self,
            "cache_ttl_seconds",
            d.cache_ttl_seconds,
            0,
            None,
            "at least 0 (0 = no expiry)",
        );
        let timeout = int(
            self,
            "timeout_seconds",
            d.timeout_seconds,
            1,
            None,
            "at least 1",
        );
        Some(ApiConfig {
            rate_limit_per_second: rate?,
            max_retries: retries?,
            cache_ttl_seconds: ttl?,
            timeout_seconds: timeout?,
        })
    }

    fn scoring(&mut self, node: &Node) -> Option<ScoringWeights> {
        const KEYS: [&str; 6] = [
            "gnomad",
            "expression",
            "annotation",
            "localization",
            "animal_model",
            "literature",
        ];
        let mut s = self.section(node, "scoring", &KEYS)?;
        let d = ScoringWeights::default();
        let mut weight = |v: &mut Self, key: &str, default: f64| match s.take(key) {
            Some(n) => v.weight(n, &s.path(key)),
            None => Some(default),
        };
        let gnomad = weight(self, "gnomad", d.gnomad);
        let expression = weight(self, "expression", d.expression);
        let annotation = weight(self, "annotation", d.annotation);
        let localization = weight(self, "localization", d.localization);
        let animal_model = weight(self, "animal_model", d.animal_model);
        let literature = weight(self, "literature", d.literature);
        Some(ScoringWeights {
            gnomad: gnomad?,
            expression: expression?,
            annotation: annotation?,
            localization: localization?,
            animal_model: animal_model?,
            literature: literature?,
        })
    }

    fn wrong(
        &mut self,
        node: &Node,
        field: &str,
        expected: &'static str,
        hint: Option<&'static str>,
    ) {
        self.problem(
            field.to_owned(),
            Some(node.line),
            ProblemKind::WrongType {
                expected,
                found: describe(node),
                hint,
            },
        );
    }

    fn scalar(node: &Node) -> Option<Resolved> {
        match &node.kind {
            NodeKind::Scalar(s) => Some(s.resolve()),
            _ => None,
        }
    }

    /// An int field, coerced as pydantic's lax mode does where that is unambiguous: a YAML int
    /// in decimal, a float with no fractional part (`113.0`), or a string of digits (`"113"`).
    fn int(
        &mut self,
        node: &Node,
        field: &str,
        min: Option<i64>,
        max: Option<i64>,
        constraint: &'static str,
    ) -> Option<i64> {
        const EXPECTED: &str = "an integer";
        let value = match Self::scalar(node) {
            Some(Resolved::Int(t)) if DECIMAL_INT.is_match(&t) => t.parse::<i64>().ok(),
            Some(Resolved::Str(t)) if INT_STRING.is_match(&t) => t.parse::<i64>().ok(),
            Some(Resolved::Float(t)) if YAML_DECIMAL_FLOAT.is_match(&t) => match t.parse::<f64>() {
                Ok(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18 => Some(f as i64),
                _ => {
                    self.wrong(
                        node,
                        field,
                        EXPECTED,
                        Some("a float is taken only if it is a whole number"),
                    );
                    return None;
                }
            },
            Some(Resolved::Int(_)) => {
                self.wrong(node, field, EXPECTED, Some(INT_HINT));
                return None;
            }
            _ => {
                self.wrong(node, field, EXPECTED, None);
                return None;
            }
        };
        let Some(value) = value else {
            self.wrong(node, field, "an integer within the 64-bit range", None);
            return None;
        };
        if min.is_some_and(|m| value < m) || max.is_some_and(|m| value > m) {
            self.problem(
                field.to_owned(),
                Some(node.line),
                ProblemKind::OutOfRange {
                    value: value.to_string(),
                    constraint,
                },
            );
            return None;
        }
        Some(value)
    }

    /// A weight: a float in `0.0..=1.0`; an int or a numeric string is taken as pydantic does.
    fn weight(&mut self, node: &Node, field: &str) -> Option<f64> {
        let parsed = match Self::scalar(node) {
            Some(Resolved::Float(t)) if YAML_DECIMAL_FLOAT.is_match(&t) => t.parse::<f64>().ok(),
            Some(Resolved::Float(t)) if t.to_ascii_lowercase().ends_with("nan") => Some(f64::NAN),
            Some(Resolved::Float(t)) if t.to_ascii_lowercase().ends_with("inf") => {
                Some(if t.starts_with('-') {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                })
            }
            Some(Resolved::Int(t)) if DECIMAL_INT.is_match(&t) => t.parse::<f64>().ok(),
            Some(Resolved::Str(t)) if FLOAT_STRING.is_match(&t) => t.parse::<f64>().ok(),
            Some(Resolved::Int(_)) => {
                self.wrong(node, field, "a number", Some(INT_HINT));
                return None;
            }
            _ => None,
        };
        let Some(value) = parsed else {
            self.wrong(node, field, "a number", None);
            return None;
        };
        if !(0.0..=1.0).contains(&value) {
            self.problem(
                field.to_owned(),
                Some(node.line),
                ProblemKind::OutOfRange {
                    value: pyjson::float_repr(value),
                    constraint: "between 0.0 and 1.0",
                },
            );
            return None;
        }
        Some(value)
    }

    fn string(&mut self, node: &Node, field: &str) -> Option<String> {
        match Self::scalar(node) {
            Some(Resolved::Str(t)) => Some(t),
            Some(
                Resolved::Int(_) | Resolved::Float(_) | Resolved::Bool(_) | Resolved::Timestamp(_),
            ) => {
                self.wrong(node, field, "a string", Some(STR_HINT));
                None
            }
            _ => {
                self.wrong(node, field, "a string", None);
                None
            }
        }
    }

    fn path(&mut self, node: &Node, field: &str) -> Option<PathBuf> {
        let text = self.string(node, field)?;
        if text.contains('\0') {
            self.wrong(node, field, "a path", Some("it contains a NUL character"));
            return None;
        }
        Some(PathBuf::from(python::path_str(&text)))
    }
}

fn describe(node: &Node) -> String {
    match &node.kind {
        NodeKind::Map(_) => "a mapping".to_owned(),
        NodeKind::Seq(_) => "a list".to_owned(),
        NodeKind::Scalar(s) => s.resolve().describe(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_YAML: &str = "data_dir: data\ncache_dir: data/cache\nduckdb_path: data/pipeline.duckdb\n\nversions:\n  ensembl_release: 113\n  gnomad_version: v4.1\n  gtex_version: v8\n  hpa_version: \"23.0\"\n\napi:\n  rate_limit_per_second: 5\n  max_retries: 5\n  cache_ttl_seconds: 86400\n  timeout_seconds: 30\n\nscoring:\n  gnomad: 0.20\n  expression: 0.20\n  annotation: 0.15\n  localization: 0.15\n  animal_model: 0.15\n  literature: 0.15\n";

    #[test]
    fn default_file_hash_matches_the_schema_document() {
        let config = PipelineConfig::from_yaml_str(DEFAULT_YAML, "default.yaml").unwrap();
        assert_eq!(
            config.canonical_json(),
            r#"{"api": {"cache_ttl_seconds": 86400, "max_retries": 5, "rate_limit_per_second": 5, "timeout_seconds": 30}, "cache_dir": "data/cache", "data_dir": "data", "duckdb_path": "data/pipeline.duckdb", "scoring": {"animal_model": 0.15, "annotation": 0.15, "expression": 0.2, "gnomad": 0.2, "literature": 0.15, "localization": 0.15}, "versions": {"ensembl_release": 113, "gnomad_version": "v4.1", "gtex_version": "v8", "hpa_version": "23.0"}}"#
        );
        assert_eq!(
            config.config_hash(),
            "ddbb5195738ac3540f08ed0a46d5936cca070ec880fba3f65e7da48b81ca2b0f"
        );
        config.scoring.validate_sum().unwrap();
    }

    /// What provenance records of the usher config through [`Config`]: the pinned Python hash
    /// above and the `versions:` section, as `ProvenanceTracker::new` recorded before the trait.
    #[test]
    fn the_config_trait_gives_the_python_hash_and_the_versions_section() {
        let config = PipelineConfig::from_yaml_str(DEFAULT_YAML, "default.yaml").unwrap();
        assert_eq!(
            Config::config_hash(&config),
            "ddbb5195738ac3540f08ed0a46d5936cca070ec880fba3f65e7da48b81ca2b0f"
        );
        assert_eq!(Config::canonical_json(&config), config.canonical_json());
        assert_eq!(
            Value::Object(config.data_source_versions()),
            serde_json::json!({"ensembl_release": 113, "gnomad_version": "v4.1", "gtex_version": "v8", "hpa_version": "23.0"})
        );
    }

    fn problems(yaml: &str) -> Vec<Problem> {
        match PipelineConfig::from_yaml_str(yaml, "bad.yaml") {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn unquoted_hpa_version_is_rejected_with_field_and_value() {
        let yaml = DEFAULT_YAML.replace("hpa_version: \"23.0\"", "hpa_version: 23.0");
        let err = PipelineConfig::from_yaml_str(&yaml, "cfg.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cfg.yaml"), "{err}");
        assert!(err.contains("line 9"), "{err}");
        assert!(
            err.contains("`versions.hpa_version` must be a string, found 23.0 (a float)"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_suggests_the_nearest() {
        let yaml = DEFAULT_YAML.replace("ensembl_release", "ensemble_release");
        let p = problems(&yaml);
        assert!(
            p.iter().any(|p| p.field == "versions.ensemble_release"
                && p.kind
                    == ProblemKind::UnknownKey {
                        suggestion: Some("ensembl_release".into())
                    }),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.field == "versions.ensembl_release" && p.kind == ProblemKind::Missing),
            "{p:?}"
        );
    }

    #[test]
    fn out_of_range_names_value_and_constraint() {
        let yaml = DEFAULT_YAML
            .replace("max_retries: 5", "max_retries: 50")
            .replace("ensembl_release: 113", "ensembl_release: 99");
        let p = problems(&yaml);
        let text: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|t| t
                    .contains("`api.max_retries` = 50 is out of range: must be between 1 and 20")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("`versions.ensembl_release` = 99 is out of range")),
            "{text:?}"
        );
    }

    #[test]
    fn lax_ints_match_pydantic_or_are_rejected() {
        let ok = |v: &str| {
            let yaml =
                DEFAULT_YAML.replace("ensembl_release: 113", &format!("ensembl_release: {v}"));
            PipelineConfig::from_yaml_str(&yaml, "x.yaml").map(|c| c.versions.ensembl_release)
        };
        assert_eq!(ok("113").unwrap(), 113);
        assert_eq!(ok("\"113\"").unwrap(), 113);
        assert_eq!(ok("113.0").unwrap(), 113);
        assert!(ok("113.5").is_err());
        assert!(ok("yes").is_err());
        assert!(ok("1_13").is_err());
        assert!(ok("0o161").is_err());
        assert!(ok("99999999999999999999").is_err());
    }

    #[test]
    fn missing_sections_and_wrong_shapes() {
        let p = problems("data_dir: d\ncache_dir: c\nduckdb_path: p\nversions: 3\napi: {}\n");
        let text: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("`versions` must be a mapping, found 3 (an integer)")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("`scoring` is required but missing")),
            "{text:?}"
        );
        assert!(matches!(
            PipelineConfig::from_yaml_str("a: [1\n", "x.yaml"),
            Err(ConfigError::Yaml { .. })
        ));
        assert!(matches!(
            PipelineConfig::from_yaml_str("", "x.yaml"),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn weights_must_sum_to_one() {
        let yaml = DEFAULT_YAML.replace("literature: 0.15", "literature: 0.25");
        let c = PipelineConfig::from_yaml_str(&yaml, "x.yaml").unwrap();
        let err = c.scoring.validate_sum().unwrap_err();
        assert_eq!(
            err.to_string(),
            "Scoring weights must sum to 1.0, got 1.100000"
        );
    }
}
