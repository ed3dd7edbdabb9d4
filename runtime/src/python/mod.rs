//! The Python pipeline's formats, reproduced byte for byte: JSON as `json.dumps` writes it
//! (config hash, provenance rows and sidecars, checkpoint keys) and YAML scalars as PyYAML
//! reads them (the config), paths as `str(PurePosixPath(...))` and times as
//! `datetime.isoformat()` write them. For code that must write what the Python pipeline
//! writes; the library's own formats use them already.

pub mod json;
pub(crate) mod yaml;

use chrono::{DateTime, FixedOffset, SecondsFormat};

/// Python's `str(PurePosixPath(p))`: `./a` -> `a`, `a//b` -> `a/b`, `a/` -> `a`, `''` -> `.`;
/// `..` is kept and exactly two leading slashes are kept (POSIX leaves `//` implementation-defined).
pub fn path_str(p: &str) -> String {
    let leading = p.len() - p.trim_start_matches('/').len();
    let root = match leading {
        0 => "",
        2 => "//",
        _ => "/",
    };
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let joined = format!("{root}{}", parts.join("/"));
    if joined.is_empty() {
        ".".to_owned()
    } else {
        joined
    }
}

/// Python's `datetime.isoformat()` for an aware UTC datetime: microseconds only when nonzero,
/// offset as `+00:00`.
pub fn isoformat(t: &DateTime<FixedOffset>) -> String {
    let format = if t.timestamp_subsec_micros() == 0 {
        SecondsFormat::Secs
    } else {
        SecondsFormat::Micros
    };
    t.to_rfc3339_opts(format, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_paths() {
        for (input, expected) in [
            ("", "."),
            (".", "."),
            ("./data", "data"),
            ("a//b", "a/b"),
            ("data/", "data"),
            ("//a", "//a"),
            ("///a", "/a"),
            ("a/./b", "a/b"),
            ("../x", "../x"),
            ("a/../b", "a/../b"),
            ("/", "/"),
        ] {
            assert_eq!(path_str(input), expected, "{input:?}");
        }
    }

    #[test]
    fn isoformat_matches_python() {
        let t = DateTime::parse_from_rfc3339("2026-11-24T15:37:00+00:00").unwrap();
        assert_eq!(isoformat(&t), "2026-11-24T15:37:00+00:00");
        let t = DateTime::parse_from_rfc3339("2026-11-24T15:37:00.012300+00:00").unwrap();
        assert_eq!(isoformat(&t), "2026-11-24T15:37:00.012300+00:00");
    }
}
