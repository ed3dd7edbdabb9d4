//! TLS for the shared store's connections, set as libpq sets it: `sslmode` and `sslrootcert`
//! in the connection string (a `postgres://` URL's query, or `key=value` pairs), else the
//! environment (`PGSSLMODE`, `PGSSLROOTCERT`), else libpq's defaults (`prefer`, and the root
//! file `~/.postgresql/root.crt` when it exists).
//!
//! The Rust client (`postgres`, which does not use libpq) parses only `sslmode=disable`,
//! `prefer` and `require`, checks no certificate in any of them, and refuses `verify-ca`,
//! `verify-full` and `sslrootcert` as unknown. So [`TlsSettings::read`] takes these settings
//! out of the string before the client parses the rest, and [`TlsSettings::apply`] turns
//! them into the client's mode and a native-tls connector that checks what libpq checks
//! (libpq's manual, "SSL Support", table "SSL Mode Descriptions"):
//!
//! | `sslmode`           | TLS                          | server certificate checked          |
//! |---------------------|------------------------------|-------------------------------------|
//! | `disable`           | never                        | –                                   |
//! | `allow`             | as `prefer` (see below)      | no                                  |
//! | `prefer` (default)  | when the server offers it    | no                                  |
//! | `require`           | always                       | no, but as `verify-ca` when a root file is given or `~/.postgresql/root.crt` exists (libpq's compatibility rule) |
//! | `verify-ca`         | always                       | chain up to the root; any host name |
//! | `verify-full`       | always                       | chain up to the root and host name  |
//!
//! The root is `sslrootcert=PATH` (PEM, one certificate or several: only they are trusted),
//! `sslrootcert=system` (the platform's trusted roots; as in libpq 16, `sslmode` then
//! defaults to `verify-full` and a weaker mode is refused), else `~/.postgresql/root.crt`
//! (`%APPDATA%\postgresql\root.crt` on Windows) when it exists. `verify-ca` and `verify-full`
//! with no root at all are refused, as libpq refuses them.
//!
//! Where this differs from libpq, and why:
//! - `allow` (libpq: try without TLS, then with it) is `prefer`: the client cannot retry
//!   without TLS first, and `prefer` is the same or safer.
//! - `prefer` never checks the certificate (libpq checks it against a root file when one
//!   exists, but then falls back to a connection without TLS when the check fails, so the
//!   check guarantees nothing either way).
//! - A root file named by `sslrootcert` must exist whenever the mode uses it: libpq silently
//!   skips the check of `require` when it does not, which hides a mistyped path.
//! - Client certificates (`sslcert`, `sslkey`, `sslpassword`, `PGSSLCERT`, `PGSSLKEY`) and
//!   revocation lists (`sslcrl`, `sslcrldir`, `PGSSLCRL`, `PGSSLCRLDIR`) are not supported, and
//!   refused with [`Error::PostgresTls`] rather than ignored (libpq's default files for them,
//!   `~/.postgresql/postgresql.crt`, `.key` and `root.crl`, are not read): native-tls takes
//!   only unencrypted PKCS#8 keys, not the PKCS#1 or encrypted keys libpq reads, so half of
//!   them would fail in confusing ways.
//! - Over a Unix-domain socket no TLS is used whatever the mode, as in libpq (the server
//!   offers none there).

use std::ffi::OsString;
use std::path::PathBuf;

use postgres::config::{Host, SslMode};
use postgres::{Client, Config, NoTls};
use postgres_native_tls::MakeTlsConnector;

use super::catalog::{key_values, percent_decode};
use crate::error::{Error, Result};

/// The settings read here, as the connection string spells them, with their variables.
const MODE: (&str, &str) = ("sslmode", "PGSSLMODE");
const ROOT: (&str, &str) = ("sslrootcert", "PGSSLROOTCERT");
/// libpq's settings this client does not support (with their variable, when they have one),
/// and why.
const UNSUPPORTED: &[(&str, Option<&str>, &str)] = &[
    ("sslcert", Some("PGSSLCERT"), CLIENT_CERTIFICATES),
    ("sslkey", Some("PGSSLKEY"), CLIENT_CERTIFICATES),
    ("sslpassword", None, CLIENT_CERTIFICATES),
    ("sslcrl", Some("PGSSLCRL"), REVOCATION_LISTS),
    ("sslcrldir", Some("PGSSLCRLDIR"), REVOCATION_LISTS),
];
const CLIENT_CERTIFICATES: &str = "client certificates are not supported by the shared store's \
     client: log in with a password (PGPASSWORD or the password file) or leave the setting out";
const REVOCATION_LISTS: &str =
    "certificate revocation lists are not supported by the shared store's client";
/// `sslrootcert`'s value for the platform's trusted roots (libpq 16's spelling).
const SYSTEM: &str = "system";

/// A setting as it was given: its name (the key, or the environment variable) and value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Given {
    setting: &'static str,
    value: String,
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }
}

/// What is checked of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    /// The chain up to a trusted root, whatever names the certificate is for.
    Chain,
    /// The chain and the host name.
    Full,
}

/// The TLS settings of one connection string and the environment, taken out of the string.
#[derive(Debug, Default)]
pub(crate) struct TlsSettings {
    mode: Option<Given>,
    root: Option<Given>,
    /// The first setting given that this client does not support, with why.
    unsupported: Option<(Given, &'static str)>,
    /// libpq's default root file, when there is a home directory to find it in.
    default_root: Option<PathBuf>,
}

impl TlsSettings {
    /// Takes the TLS settings out of `url` (a `postgres://` URL or a `key=value` string) and
    /// completes them from the environment (`var`, a parameter so tests need not change the
    /// process's): returns the string the client can parse, and the settings. The string's
    /// own settings win over the environment's, each on its own, as in libpq. Never fails:
    /// what is wrong is reported by [`apply`](Self::apply), which can name the store.
    pub fn read(url: &str, var: &dyn Fn(&str) -> Option<OsString>) -> (String, Self) {
        let mut settings = Self::default();
        let rest = remove_pairs(url, &mut |key, value| settings.take(key, value));
        let from_env = |name: &'static str| {
            var(name).filter(|v| !v.is_empty()).map(|v| Given {
                setting: name,
                value: v.to_string_lossy().into_owned(),
            })
        };
        if settings.mode.is_none() {
            settings.mode = from_env(MODE.1);
        }
        if settings.root.is_none() {
            settings.root = from_env(ROOT.1);
        }
        for &(_, name, why) in UNSUPPORTED {
            if settings.unsupported.is_none()
                && let Some(given) = name.and_then(from_env)
            {
                settings.unsupported = Some((given, why));
            }
        }
        settings.default_root = default_root(var);
        (rest, settings)
    }

    /// Records `key`'s `value` if it is a TLS setting: whether it was one.
    fn take(&mut self, key: &str, value: String) -> bool {
        if key == MODE.0 {
            self.mode = Some(Given {
                setting: MODE.0,
                value,
            });
        } else if key == ROOT.0 {
            self.root = Some(Given {
                setting: ROOT.0,
                value,
            });
        } else if let Some(&(setting, _, why)) = UNSUPPORTED.iter().find(|(k, ..)| *k == key) {
            if self.unsupported.is_none() {
                // `sslpassword` is a secret: never shown.
                let value = if setting == "sslpassword" {
                    "***".to_owned()
                } else {
                    value
                };
                self.unsupported = Some((Given { setting, value }, why));
            }
        } else {
            return false;
        }
        true
    }

    /// Sets `config`'s TLS mode and returns the connector its connections use, reading the
    /// root certificates now, so a bad setting fails the open, naming `store` (the catalog
    /// without its password) and the setting.
    pub fn apply(&self, config: &mut Config, store: &str) -> Result<Tls> {
        let refuse = |given: &Given, message: String| Error::PostgresTls {
            store: store.to_owned(),
            setting: given.setting,
            value: given.value.clone(),
            message,
        };
        let given_mode = match &self.mode {
            Some(given) => Some(Mode::parse(&given.value).ok_or_else(|| {
                refuse(
                    given,
                    "not a TLS mode: one of disable, allow, prefer, require, verify-ca, \
                     verify-full"
                        .to_owned(),
                )
            })?),
            None => None,
        };
        let system = self.root.as_ref().is_some_and(|root| root.value == SYSTEM);
        let mode = given_mode.unwrap_or(if system {
            Mode::VerifyFull
        } else {
            Mode::Prefer
        });
        if system
            && mode != Mode::VerifyFull
            && let Some(given) = &self.mode
        {
            // Anyone can get a certificate of a public CA for a name they own, so the
            // system's roots prove nothing without the host name (libpq 16's rule).
            return Err(refuse(
                given,
                "too weak with sslrootcert=system, which trusts every public CA: use \
                 sslmode=verify-full"
                    .to_owned(),
            ));
        }
        let hosts = config.get_hosts();
        let unix_only = config.get_hostaddrs().is_empty()
            && !hosts.is_empty()
            && hosts.iter().all(|host| !matches!(host, Host::Tcp(_)));
        if mode == Mode::Disable || unix_only {
            config.ssl_mode(SslMode::Disable);
            return Ok(Tls(None));
        }
        if let Some((given, why)) = &self.unsupported {
            return Err(refuse(given, (*why).to_owned()));
        }

        // The root: the one given, else libpq's default file when it exists.
        let root_file = match &self.root {
            Some(given) if given.value == SYSTEM => None,
            Some(given) => Some((PathBuf::from(&given.value), given.clone())),
            None => self
                .default_root
                .as_ref()
                .filter(|path| path.exists())
                .map(|path| {
                    let given = Given {
                        setting: ROOT.0,
                        value: path.display().to_string(),
                    };
                    (path.clone(), given)
                }),
        };
        let check = match mode {
            Mode::Disable | Mode::Allow | Mode::Prefer => Check::Nothing,
            Mode::Require if root_file.is_some() => Check::Chain,
            Mode::Require => Check::Nothing,
            Mode::VerifyCa => Check::Chain,
            Mode::VerifyFull => Check::Full,
        };

        let mut builder = native_tls::TlsConnector::builder();
        // What PostgreSQL 17 expects of a direct TLS connection (`sslnegotiation=direct`);
        // older servers ignore it.
        postgres_native_tls::set_postgresql_alpn(&mut builder);
        if check == Check::Nothing {
            builder
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true);
        } else {
            match &root_file {
                Some((path, given)) => {
                    // Only the file's roots are trusted, as in libpq.
                    builder.disable_built_in_roots(true);
                    for certificate in read_roots(path).map_err(|message| refuse(given, message))? {
                        builder.add_root_certificate(certificate);
                    }
                }
                None if system => {}
                None => {
                    let path = self
                        .default_root
                        .as_ref()
                        .map(|path| path.display().to_string())
                        .unwrap_or_default();
                    return Err(Error::PostgresTls {
                        store: store.to_owned(),
                        setting: ROOT.0,
                        value: path.clone(),
                        message: format!(
                            "root certificate file {path:?} does not exist, and sslmode={} \
                             checks the server's certificate against a root: give the CA's \
                             certificate with sslrootcert=PATH, use the system's roots with \
                             sslrootcert=system, or choose sslmode=require (no check)",
                            if mode == Mode::VerifyCa {
                                "verify-ca"
                            } else {
                                "verify-full"
                            }
                        ),
                    });
                }
            }
            if check == Check::Chain {
                builder.danger_accept_invalid_hostnames(true);
            }
        }
        let connector = builder.build().map_err(|e| Error::Postgres {
            store: store.to_owned(),
            context: "setting up TLS".to_owned(),
            code: None,
            message: e.to_string(),
        })?;
        config.ssl_mode(if check == Check::Nothing && mode != Mode::Require {
            SslMode::Prefer
        } else {
            SslMode::Require
        });
        // The client does TLS only to a host name, and a `hostaddr` without `host` has none:
        // the address is its name (checked against the certificate's IP addresses by
        // verify-full, where libpq refuses to check at all).
        if config.get_hosts().is_empty() {
            for address in config.get_hostaddrs().to_vec() {
                config.host(&address.to_string());
            }
        }
        Ok(Tls(Some(MakeTlsConnector::new(connector))))
    }
}

/// `url` without the pairs `take` takes (given each pair's key and value, decoded), the rest
/// left as written: the query of a `postgres://` URL, or a `key=value` string.
fn remove_pairs(url: &str, take: &mut dyn FnMut(&str, String) -> bool) -> String {
    // Where the client's own parser finds the query: the first `?` after the user part (up to
    // the first `@`, if any).
    let query = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .map(|rest| {
            let start = url.len() - rest.len() + rest.find('@').map_or(0, |at| at + 1);
            url[start..].find('?').map(|at| start + at)
        });
    match query {
        // A URL without a query.
        Some(None) => url.to_owned(),
        Some(Some(at)) => {
            let kept: Vec<&str> = url[at + 1..]
                .split('&')
                .filter(|pair| match pair.split_once('=') {
                    Some((key, value)) => !take(&percent_decode(key), percent_decode(value)),
                    None => true,
                })
                .collect();
            if kept.is_empty() {
                url[..at].to_owned()
            } else {
                format!("{}?{}", &url[..at], kept.join("&"))
            }
        }
        None => {
            let mut rest = String::with_capacity(url.len());
            let mut from = 0;
            for pair in key_values(url) {
                if take(pair.key, pair.value) {
                    rest.push_str(&url[from..pair.span.start]);
                    from = pair.span.end;
                }
            }
            rest.push_str(&url[from..]);
            rest
        }
    }
}

/// libpq's default root file.
fn default_root(var: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let (base, dir) = if cfg!(windows) {
        ("APPDATA", "postgresql")
    } else {
        ("HOME", ".postgresql")
    };
    let base = var(base).filter(|v| !v.is_empty())?;
    Some(PathBuf::from(base).join(dir).join("root.crt"))
}

/// The certificates of a PEM file, or what is wrong with it.
fn read_roots(path: &std::path::Path) -> std::result::Result<Vec<native_tls::Certificate>, String> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("root certificate file {:?} does not exist", path.display())
        }
        _ => format!(
            "cannot read root certificate file {:?}: {e}",
            path.display()
        ),
    })?;
    let certificates = native_tls::Certificate::stack_from_pem(&bytes).map_err(|e| {
        format!(
            "root certificate file {:?} is not PEM certificates: {e}",
            path.display()
        )
    })?;
    if certificates.is_empty() {
        return Err(format!(
            "root certificate file {:?} holds no certificate (PEM, -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certificates)
}

/// How a catalog's connections do TLS: `None` for none (`sslmode=disable`, Unix sockets).
#[derive(Clone)]
pub(crate) struct Tls(Option<MakeTlsConnector>);

impl Tls {
    /// A new connection with `config`.
    pub fn connect(&self, config: &Config) -> Result<Client, postgres::Error> {
        match &self.0 {
            Some(tls) => config.connect(tls.clone()),
            None => config.connect(NoTls),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A self-signed certificate, only ever parsed.
    const PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBijCCAS+gAwIBAgIUAOnMrLplDtVtmthecP5j7gkcJxowCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPdXNoZXItdW5pdC10ZXN0MB4XDTI2MTIwNTA5MjQzN1oXDTM2
MTIwMjA5MjQzN1owGjEYMBYGA1UEAwwPdXNoZXItdW5pdC10ZXN0MFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEjeJkfNTS5rtQXVaW3ixAwZRTYBVrP4RukmGMiapB
ckQMec0jWaTQBClPMZLjfKh+QJTqlcuWiNHUXgd7AWqB5qNTMFEwHQYDVR0OBBYE
FE5aNTJF6DLclUj2Tvb12CH5daKCMB8GA1UdIwQYMBaAFE5aNTJF6DLclUj2Tvb1
2CH5daKCMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIhAKdQDqRo
1SSpCOsUDtBvmVeMGEMT+A+/ahg8yyLkryH3AiEA2OX+BZsp9qAaxLw4Kizac/tc
bbj5up8XwtsggwGF0XA=
-----END CERTIFICATE-----
";

    use crate::store::shared::tests::env_of as env;

    fn read(url: &str, vars: &[(&str, &str)]) -> (String, TlsSettings) {
        TlsSettings::read(url, &env(vars))
    }

    fn given(setting: &'static str, value: &str) -> Option<Given> {
        Some(Given {
            setting,
            value: value.to_owned(),
        })
    }

    /// `url` read and applied with the environment `vars`: the client's mode, or the error.
    fn mode_of(url: &str, vars: &[(&str, &str)]) -> Result<SslMode> {
        let (rest, settings) = read(url, vars);
        let mut config: Config = rest.parse().expect("the rest parses");
        settings
            .apply(&mut config, "postgres://u@h:5432/d")
            .map(|_| config.get_ssl_mode())
    }

    fn tls_error(result: Result<SslMode>) -> (&'static str, String, String) {
        match result {
            Err(Error::PostgresTls {
                store,
                setting,
                value,
                message,
            }) => {
                assert_eq!(store, "postgres://u@h:5432/d");
                (setting, value, message)
            }
            other => panic!("expected Error::PostgresTls, got {other:?}"),
        }
    }

    #[test]
    fn url_settings_are_taken_out_of_the_query_decoded() {
        let (rest, settings) = read(
            "postgres://u:p%3Fw@db:5433/genes?sslmode=verify-full&options=-c%20x%3Dy\
             &sslrootcert=%2Ftmp%2Fmy%20ca.crt",
            &[],
        );
        assert_eq!(rest, "postgres://u:p%3Fw@db:5433/genes?options=-c%20x%3Dy");
        assert_eq!(settings.mode, given("sslmode", "verify-full"));
        assert_eq!(settings.root, given("sslrootcert", "/tmp/my ca.crt"));
        let config: Config = rest.parse().unwrap();
        assert_eq!(config.get_options(), Some("-c x=y"));

        // Nothing else left: no `?`. A `?` in the password is not the query's.
        let (rest, settings) = read("postgresql://u:p?w@db/genes?sslmode=require", &[]);
        assert_eq!(rest, "postgresql://u:p?w@db/genes");
        assert_eq!(settings.mode, given("sslmode", "require"));
        // No query at all: unchanged; the last of a repeated key wins, as in libpq.
        let (rest, _) = read("postgres://db/genes", &[]);
        assert_eq!(rest, "postgres://db/genes");
        let (_, settings) = read("postgres://db/g?sslmode=disable&sslmode=verify-ca", &[]);
        assert_eq!(settings.mode, given("sslmode", "verify-ca"));
    }

    #[test]
    fn key_value_settings_are_taken_out_with_their_quotes() {
        let url = "host=db sslmode = 'verify-ca' user=u \
                   sslrootcert='/tmp/the lab\\'s ca.crt' options='-c x=y' dbname=genes";
        let (rest, settings) = read(url, &[]);
        assert_eq!(settings.mode, given("sslmode", "verify-ca"));
        assert_eq!(settings.root, given("sslrootcert", "/tmp/the lab's ca.crt"));
        assert!(!rest.contains("ssl"), "{rest}");
        let config: Config = rest.parse().expect("the rest parses");
        assert_eq!(config.get_user(), Some("u"));
        assert_eq!(config.get_dbname(), Some("genes"));
        assert_eq!(config.get_options(), Some("-c x=y"));
        assert_eq!(config.get_hosts(), [Host::Tcp("db".to_owned())]);

        // A backslash escapes a space in an unquoted value, as the client reads it.
        let (rest, settings) = read("sslrootcert=/tmp/a\\ b.crt host=db", &[]);
        assert_eq!(settings.root, given("sslrootcert", "/tmp/a b.crt"));
        assert_eq!(rest.trim(), "host=db");
    }

    #[test]
    fn the_environment_fills_what_the_string_leaves_out() {
        let vars = [("PGSSLMODE", "require"), ("PGSSLROOTCERT", "/etc/ca.crt")];
        let (_, settings) = read("postgres://db/genes", &vars);
        assert_eq!(settings.mode, given("PGSSLMODE", "require"));
        assert_eq!(settings.root, given("PGSSLROOTCERT", "/etc/ca.crt"));
        // Each setting of the string wins over its variable, on its own.
        let (_, settings) = read("postgres://db/genes?sslmode=verify-full", &vars);
        assert_eq!(settings.mode, given("sslmode", "verify-full"));
        assert_eq!(settings.root, given("PGSSLROOTCERT", "/etc/ca.crt"));
        let (_, settings) = read("host=db sslrootcert=/mine.crt", &vars);
        assert_eq!(settings.mode, given("PGSSLMODE", "require"));
        assert_eq!(settings.root, given("sslrootcert", "/mine.crt"));
        // An empty variable is unset.
        let (_, settings) = read("host=db", &[("PGSSLMODE", "")]);
        assert_eq!(settings.mode, None);
        // The default root is under the home directory.
        let (_, settings) = read("host=db", &[("HOME", "/home/u"), ("APPDATA", "/home/u")]);
        let expected = if cfg!(windows) {
            Path::new("/home/u/postgresql/root.crt")
        } else {
            Path::new("/home/u/.postgresql/root.crt")
        };
        assert_eq!(settings.default_root.as_deref(), Some(expected));
    }

    #[test]
    fn modes_become_the_clients_as_libpq_defines_them() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, format!("{PEM}{PEM}")).unwrap();
        let ca = ca.to_str().unwrap();
        let with_home = [("HOME", home), ("APPDATA", home)];
        assert_eq!(mode_of("host=db", &with_home).unwrap(), SslMode::Prefer);
        assert_eq!(
            mode_of("host=db sslmode=allow", &with_home).unwrap(),
            SslMode::Prefer
        );
        assert_eq!(
            mode_of("host=db sslmode=disable", &with_home).unwrap(),
            SslMode::Disable
        );
        assert_eq!(
            mode_of("host=db sslmode=require", &with_home).unwrap(),
            SslMode::Require
        );
        for mode in ["require", "verify-ca", "verify-full"] {
            let url = format!("postgres://db/g?sslmode={mode}&sslrootcert={ca}");
            assert_eq!(
                mode_of(&url, &with_home).unwrap(),
                SslMode::Require,
                "{url}"
            );
        }
        // The system's roots: verify-full by default, nothing weaker.
        assert_eq!(
            mode_of("host=db sslrootcert=system", &with_home).unwrap(),
            SslMode::Require
        );
        let (setting, value, message) = tls_error(mode_of(
            "host=db sslrootcert=system",
            &[("PGSSLMODE", "verify-ca")],
        ));
        assert_eq!((setting, value.as_str()), ("PGSSLMODE", "verify-ca"));
        assert!(message.contains("verify-full"), "{message}");
        // Over a Unix-domain socket: no TLS, as in libpq.
        assert_eq!(
            mode_of("host=/run/postgresql sslmode=verify-full", &with_home).unwrap(),
            SslMode::Disable
        );
        let (setting, value, _) = tls_error(mode_of("host=db", &[("PGSSLMODE", "verify")]));
        assert_eq!((setting, value.as_str()), ("PGSSLMODE", "verify"));
    }

    #[test]
    fn a_check_without_a_usable_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap();
        let with_home = [("HOME", home), ("APPDATA", home)];
        // No root anywhere: libpq's message.
        for mode in ["verify-ca", "verify-full"] {
            let (setting, value, message) =
                tls_error(mode_of(&format!("host=db sslmode={mode}"), &with_home));
            assert_eq!(setting, "sslrootcert");
            assert!(value.ends_with("root.crt"), "{value}");
            assert!(message.contains("does not exist"), "{message}");
        }
        // A root given but missing, even for require.
        let missing = dir.path().join("missing.crt");
        let url = format!(
            "host=db sslmode=require sslrootcert='{}'",
            missing.display()
        );
        let (setting, _, message) = tls_error(mode_of(&url, &with_home));
        assert_eq!(setting, "sslrootcert");
        assert!(message.contains("does not exist"), "{message}");
        // Not a certificate.
        let junk = dir.path().join("junk.crt");
        std::fs::write(&junk, "not a certificate").unwrap();
        let url = format!(
            "host=db sslmode=verify-full sslrootcert='{}'",
            junk.display()
        );
        let (_, _, message) = tls_error(mode_of(&url, &with_home));
        assert!(message.contains("no certificate"), "{message}");
        // libpq's default root makes require check the chain: a bad default file is refused.
        let default = if cfg!(windows) {
            dir.path().join("postgresql")
        } else {
            dir.path().join(".postgresql")
        };
        std::fs::create_dir(&default).unwrap();
        std::fs::write(default.join("root.crt"), "not a certificate").unwrap();
        let (setting, _, message) = tls_error(mode_of("host=db sslmode=require", &with_home));
        assert_eq!(setting, "sslrootcert");
        assert!(message.contains("no certificate"), "{message}");
        // ...but prefer checks nothing, so never reads it.
        assert_eq!(mode_of("host=db", &with_home).unwrap(), SslMode::Prefer);
        std::fs::write(default.join("root.crt"), PEM).unwrap();
        assert_eq!(
            mode_of("host=db sslmode=verify-full", &with_home).unwrap(),
            SslMode::Require
        );
    }

    #[test]
    fn unsupported_settings_are_refused_not_ignored() {
        let (setting, value, message) = tls_error(mode_of(
            "postgres://db/g?sslmode=require&sslcert=%2Fme.crt",
            &[],
        ));
        assert_eq!((setting, value.as_str()), ("sslcert", "/me.crt"));
        assert!(message.contains("client certificates"), "{message}");
        let (setting, _, _) = tls_error(mode_of("host=db", &[("PGSSLKEY", "/me.key")]));
        assert_eq!(setting, "PGSSLKEY");
        let (setting, _, message) = tls_error(mode_of("host=db sslcrl=/r.crl", &[]));
        assert_eq!(setting, "sslcrl");
        assert!(message.contains("revocation"), "{message}");
        // A key's passphrase is never shown.
        let (setting, value, _) = tls_error(mode_of("host=db sslpassword=k3y-s3cret", &[]));
        assert_eq!((setting, value.as_str()), ("sslpassword", "***"));
        // Without TLS they would not be used, as in libpq.
        assert_eq!(
            mode_of("host=db sslmode=disable sslcert=/me.crt", &[]).unwrap(),
            SslMode::Disable
        );
    }

    #[test]
    fn an_address_without_a_host_name_is_its_own_name() {
        let (rest, settings) = read("hostaddr=127.0.0.1 port=5433 user=u", &[]);
        let mut config: Config = rest.parse().unwrap();
        settings.apply(&mut config, "store").unwrap();
        assert_eq!(config.get_hosts(), [Host::Tcp("127.0.0.1".to_owned())]);
    }
}
