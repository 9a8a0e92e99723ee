//! The client side of the node's RPC authentication.
//!
//! At start-up the node writes `<datadir>/.cookie` holding
//! `__cookie__:<64 hex characters>` (mode 0600, new on every start, removed
//! at shutdown); every JSON-RPC call must carry it as HTTP Basic auth, unless
//! the operator configured `--rpc-user`/`--rpc-password` or `--rpc-auth`.
//! Clients (the wallet, `cairn-node rpc`, the testnet tools, the tests) find
//! the cookie with [`find_credentials`] and send [`Credentials::header`].

use std::path::{Path, PathBuf};

use base64::Engine;

/// The cookie's file name inside the datadir.
pub const COOKIE_FILE: &str = ".cookie";
/// The user name the cookie authenticates as.
pub const COOKIE_USER: &str = "__cookie__";
/// Environment variable naming the node's datadir (also read by `cairn-node run`).
pub const DATADIR_ENV: &str = "CAIRN_DATADIR";

/// A user name and password for HTTP Basic auth.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.user)
    }
}

impl Credentials {
    /// The value of the `Authorization` header.
    pub fn header(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// Parses `user:password` (the cookie file's format).
    pub fn parse(text: &str) -> Option<Credentials> {
        let line = text.lines().next()?.trim();
        let (user, password) = line.split_once(':')?;
        if user.is_empty() || password.is_empty() {
            return None;
        }
        Some(Credentials {
            user: user.to_string(),
            password: password.to_string(),
        })
    }
}

/// Why no credentials were found.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "cannot read the node's RPC cookie {path}: {source}. Is cairn-node running with --datadir {dir}? \
         Point to the node's datadir with --datadir DIR or {DATADIR_ENV}=DIR, or pass --rpc-user and --rpc-password"
    )]
    Unreadable {
        path: PathBuf,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("the RPC cookie {path} is not `__cookie__:<hex>`; restart the node to write a new one")]
    Malformed { path: PathBuf },
}

/// The cookie's path in `datadir`.
pub fn cookie_path(datadir: &Path) -> PathBuf {
    datadir.join(COOKIE_FILE)
}

/// Reads the cookie of the node whose datadir is `datadir`.
pub fn read_cookie(datadir: &Path) -> Result<Credentials, AuthError> {
    let path = cookie_path(datadir);
    let text = std::fs::read_to_string(&path).map_err(|source| AuthError::Unreadable {
        path: path.clone(),
        dir: datadir.to_path_buf(),
        source,
    })?;
    Credentials::parse(&text).ok_or(AuthError::Malformed { path })
}

/// The default datadir of `network`: `<user data dir>/cairn/<network>`, as
/// `cairn-node run` uses when given no `--datadir`.
pub fn default_datadir(network: &str) -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("cairn")
        .join(network)
}

/// Credentials to call a node, in order: `user`/`password` when both are
/// given; else the cookie in `datadir`, else in `$CAIRN_DATADIR`, else in
/// the default datadir of `network`.
pub fn find_credentials(
    user: Option<&str>,
    password: Option<&str>,
    datadir: Option<&Path>,
    network: &str,
) -> Result<Credentials, AuthError> {
    if let (Some(u), Some(p)) = (user, password) {
        return Ok(Credentials {
            user: u.to_string(),
            password: p.to_string(),
        });
    }
    let dir = match datadir {
        Some(d) => d.to_path_buf(),
        None => match std::env::var_os(DATADIR_ENV) {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => default_datadir(network),
        },
    };
    read_cookie(&dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_text_parses_and_makes_a_basic_header() {
        let c = Credentials::parse("__cookie__:abcd\n").unwrap();
        assert_eq!(c.user, COOKIE_USER);
        assert_eq!(c.password, "abcd");
        assert_eq!(c.header(), "Basic X19jb29raWVfXzphYmNk");
        assert!(Credentials::parse("nocolon").is_none());
        assert!(Credentials::parse(":x").is_none());
        assert!(Credentials::parse("u:").is_none());
        assert!(!format!("{c:?}").contains("abcd"));
    }

    #[test]
    fn explicit_credentials_win_and_a_missing_cookie_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let c = find_credentials(Some("u"), Some("p"), Some(dir.path()), "dev").unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("u", "p"));
        let err = find_credentials(None, None, Some(dir.path()), "dev").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(".cookie") && msg.contains("--datadir"),
            "{msg}"
        );
        std::fs::write(dir.path().join(COOKIE_FILE), "__cookie__:ff").unwrap();
        let c = find_credentials(None, None, Some(dir.path()), "dev").unwrap();
        assert_eq!(c.password, "ff");
    }
}
