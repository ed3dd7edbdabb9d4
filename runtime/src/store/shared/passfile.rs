//! Where a shared store's password comes from when its URL names none, found as libpq finds
//! it: `PGPASSWORD`, then the password file (`PGPASSFILE`, else `~/.pgpass`). So no password
//! needs to be written into `USHER_STORE`, a job script or a shell history.
//!
//! The Rust client (`postgres`, which does not use libpq) reads neither; the rules below are
//! libpq's as its manual states them ("The Password File"): lines `host:port:database:user:
//! password`, `#` comments, `*` matching anything in the first four fields, `\` escaping `:`
//! and `\`, the first matching line wins, a Unix-domain socket matched as `localhost`, and a
//! file readable by group or others ignored with a warning. Written here (fifty lines) rather
//! than taken from a crate: the pgpass crates pull a parser-combinator library for one line
//! format.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use postgres::Config;
use postgres::config::Host;

/// The default port of a host given without one.
const DEFAULT_PORT: u16 = 5432;

/// The password for `config` when it names none: `PGPASSWORD`, else the first line of the
/// password file that matches one of its hosts (with that host's port), its database and its
/// user. `var` reads the environment (a parameter, so tests need not change the process's).
pub(crate) fn password(config: &Config, var: &dyn Fn(&str) -> Option<OsString>) -> Option<String> {
    if let Some(password) = var("PGPASSWORD").filter(|p| !p.is_empty()) {
        return Some(password.to_string_lossy().into_owned());
    }
    let file = match var("PGPASSFILE").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => home(var)?.join(".pgpass"),
    };
    let text = readable(&file)?;
    let user = config.get_user()?;
    let database = config.get_dbname().unwrap_or(user);
    let ports = config.get_ports();
    config.get_hosts().iter().enumerate().find_map(|(i, host)| {
        let host = match host {
            Host::Tcp(name) => name.as_str(),
            #[cfg(unix)]
            Host::Unix(_) => "localhost",
        };
        let port = ports
            .get(i)
            .or_else(|| ports.first())
            .copied()
            .unwrap_or(DEFAULT_PORT)
            .to_string();
        lookup(&text, [host, &port, database, user])
    })
}

/// The home directory libpq looks in.
fn home(var: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    var("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

/// The password file's text, unless it is missing, not a plain file, or (on Unix) readable by
/// group or others, which libpq refuses to use (as it does, with a warning).
fn readable(file: &Path) -> Option<String> {
    let metadata = std::fs::metadata(file).ok()?;
    if !metadata.is_file() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if metadata.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %file.display(),
                "password file has group or world access and is ignored (as libpq ignores it): chmod 0600"
            );
            return None;
        }
    }
    std::fs::read_to_string(file).ok()
}

/// The password of the first line of `text` whose four fields match `wanted` (host, port,
/// database, user).
fn lookup(text: &str, wanted: [&str; 4]) -> Option<String> {
    text.lines()
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .find_map(|line| {
            let (fields, password) = split(line)?;
            let matches = fields
                .iter()
                .zip(wanted)
                .all(|((field, starred), value)| *starred || field == value);
            matches.then_some(password)
        })
}

/// A line's four fields (each with whether it is a bare `*`) and its password, escapes removed;
/// `None` for a line with fewer than five fields. The password is the rest of the line: a `:`
/// in it needs no escape.
fn split(line: &str) -> Option<([(String, bool); 4], String)> {
    let mut fields: Vec<(String, bool)> = Vec::with_capacity(4);
    let (mut current, mut raw) = (String::new(), String::new());
    let mut chars = line.chars();
    while fields.len() < 4 {
        match chars.next()? {
            '\\' => {
                let escaped = chars.next()?;
                current.push(escaped);
                raw.push('\\');
                raw.push(escaped);
            }
            ':' => {
                fields.push((std::mem::take(&mut current), raw == "*"));
                raw.clear();
            }
            c => {
                current.push(c);
                raw.push(c);
            }
        }
    }
    let mut password = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => password.extend(chars.next()),
            c => password.push(c),
        }
    }
    let fields: [(String, bool); 4] = fields.try_into().ok()?;
    Some((fields, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> Config {
        url.parse().unwrap()
    }

    use crate::store::shared::tests::env_of as env;

    fn passfile(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("pgpass");
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let _ = mode;
        path
    }

    #[test]
    fn lines_match_as_libpq_matches_them() {
        let text = "# a comment\n\
                    db.lab:5432:other:usher:wrong-database\n\
                    db.lab:5433:*:usher:wrong-port\n\
                    db.lab:*:usher:usher:first:match\\\\with\\:escapes\n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            lookup(text, ["db.lab", "5432", "usher", "usher"]).as_deref(),
            Some("first:match\\with:escapes"),
            "the first match wins; a colon in the password needs no escape"
        );
        assert_eq!(
            lookup(text, ["other.host", "5432", "usher", "usher"]).as_deref(),
            Some("fallback")
        );
        assert_eq!(
            lookup("a:b:c\n", ["a", "b", "c", "d"]),
            None,
            "a short line"
        );
        // An escaped star is a literal star, not a wildcard.
        assert_eq!(
            lookup("\\*:*:*:*:p\n", ["db", "1", "d", "u"]),
            None,
            "an escaped star matches only a star"
        );
        assert_eq!(
            lookup("h\\:x:*:*:*:p\r\n", ["h:x", "1", "d", "u"]).as_deref(),
            Some("p")
        );
    }

    #[test]
    fn pgpassword_comes_first_then_the_file_for_the_urls_host_port_database_and_user() {
        let dir = tempfile::tempdir().unwrap();
        let file = passfile(
            dir.path(),
            "127.0.0.1:5555:usher:usher_pw:from-file\nlocalhost:5432:usher:usher_pw:socket\n",
            0o600,
        );
        let url = config("postgres://usher_pw@127.0.0.1:5555/usher");
        assert_eq!(
            password(&url, &env(&[("PGPASSFILE", &file)])).as_deref(),
            Some("from-file")
        );
        assert_eq!(
            password(
                &url,
                &env(&[
                    ("PGPASSFILE", file.as_path()),
                    ("PGPASSWORD", Path::new("from-env"))
                ])
            )
            .as_deref(),
            Some("from-env"),
            "PGPASSWORD before the file, as in libpq"
        );
        assert_eq!(
            password(
                &config("postgres://usher_pw@127.0.0.1:5556/usher"),
                &env(&[("PGPASSFILE", &file)])
            ),
            None,
            "another port"
        );
        assert_eq!(
            password(
                &config("host=/run/postgresql user=usher_pw dbname=usher"),
                &env(&[("PGPASSFILE", &file)])
            )
            .as_deref(),
            Some("socket"),
            "a Unix-domain socket is matched as localhost"
        );
        // ~/.pgpass when PGPASSFILE is unset.
        std::fs::rename(&file, dir.path().join(".pgpass")).unwrap();
        assert_eq!(
            password(&url, &env(&[("HOME", dir.path())])).as_deref(),
            Some("from-file")
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_can_read_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = passfile(dir.path(), "*:*:*:*:p\n", 0o644);
        let url = config("postgres://u@h/d");
        assert_eq!(password(&url, &env(&[("PGPASSFILE", &file)])), None);
        let file = passfile(dir.path(), "*:*:*:*:p\n", 0o600);
        assert_eq!(
            password(&url, &env(&[("PGPASSFILE", &file)])).as_deref(),
            Some("p")
        );
    }
}
