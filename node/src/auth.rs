//! RPC authentication on the server side.
//!
//! Every JSON-RPC call (HTTP POST or WebSocket upgrade) must carry HTTP
//! Basic credentials that match one of:
//! - the cookie: at start-up the node writes `<datadir>/.cookie` holding
//!   `__cookie__:<64 random hex characters>` (mode 0600, replaced on every
//!   start, removed at shutdown). Written unless `--rpc-password` is given.
//! - `--rpc-user` / `--rpc-password`.
//! - each `--rpc-auth USER:SALT$HASH`, where HASH is the hex HMAC-SHA256 of
//!   the password keyed with SALT (Bitcoin Core's `rpcauth` format), so the
//!   password itself is not stored in a config file. `cairn-node rpcauth
//!   USER` makes one.
//!
//! Comparisons are constant-time.

use std::io::Write;
use std::path::{Path, PathBuf};

use cairn_api::auth::{COOKIE_USER, Credentials, cookie_path};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::RpcAccess;

/// A hashed login (`--rpc-auth`).
#[derive(Clone)]
pub struct HashedLogin {
    pub user: String,
    salt: String,
    hash: [u8; 32],
}

/// Why an `--rpc-auth` entry was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "--rpc-auth {0:?} is not USER:SALT$HASH (HASH: 64 hex characters); make one with `cairn-node rpcauth USER`"
    )]
    BadEntry(String),
    #[error("--rpc-user and --rpc-password go together: give both or neither")]
    HalfLogin,
    #[error("--rpc-user must not contain ':' or be {COOKIE_USER:?}")]
    BadUser,
    #[error("cannot write the RPC cookie {path}: {source}")]
    Cookie {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn hmac_hex(salt: &str, password: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(salt.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(password.as_bytes());
    mac.finalize().into_bytes().into()
}

impl HashedLogin {
    /// Parses `USER:SALT$HASH`.
    pub fn parse(entry: &str) -> Result<HashedLogin, AuthConfigError> {
        let bad = || AuthConfigError::BadEntry(entry.to_string());
        let (user, rest) = entry.split_once(':').ok_or_else(bad)?;
        let (salt, hash_hex) = rest.split_once('$').ok_or_else(bad)?;
        if user.is_empty() || salt.is_empty() || user == COOKIE_USER {
            return Err(bad());
        }
        let mut hash = [0u8; 32];
        hex::decode_to_slice(hash_hex.trim(), &mut hash).map_err(|_| bad())?;
        Ok(HashedLogin {
            user: user.to_string(),
            salt: salt.to_string(),
            hash,
        })
    }

    /// A new entry for `user` with `password` and a random salt: the text
    /// for `--rpc-auth`.
    pub fn create(user: &str, password: &str) -> String {
        let salt = hex::encode(rand::random::<[u8; 16]>());
        format!("{user}:{salt}${}", hex::encode(hmac_hex(&salt, password)))
    }

    fn matches(&self, user: &str, password: &str) -> bool {
        let hash = hmac_hex(&self.salt, password);
        let user_ok = self.user.as_bytes().ct_eq(user.as_bytes());
        let hash_ok = self.hash.ct_eq(&hash);
        bool::from(user_ok & hash_ok)
    }
}

/// Checks the credentials of RPC requests.
#[derive(Clone, Default)]
pub struct Authenticator {
    logins: Vec<Credentials>,
    hashed: Vec<HashedLogin>,
}

fn ct_eq_str(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Authenticator {
    /// From the configured logins and, if written, the cookie.
    pub fn new(access: &RpcAccess, cookie: Option<Credentials>) -> Result<Self, AuthConfigError> {
        let mut logins: Vec<Credentials> = cookie.into_iter().collect();
        match (&access.user, &access.password) {
            (Some(u), Some(p)) => {
                if u.contains(':') || u == COOKIE_USER || u.is_empty() {
                    return Err(AuthConfigError::BadUser);
                }
                logins.push(Credentials {
                    user: u.clone(),
                    password: p.clone(),
                });
            }
            (None, None) => {}
            _ => return Err(AuthConfigError::HalfLogin),
        }
        let hashed = access
            .auth
            .iter()
            .map(|e| HashedLogin::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Authenticator { logins, hashed })
    }

    /// Whether an `Authorization` header value grants access.
    pub fn check(&self, header: Option<&str>) -> bool {
        let Some(given) = header.and_then(decode_basic) else {
            return false;
        };
        // check every login so the time taken does not say which matched
        let mut ok = false;
        for l in &self.logins {
            ok |= ct_eq_str(&l.user, &given.user) & ct_eq_str(&l.password, &given.password);
        }
        for h in &self.hashed {
            ok |= h.matches(&given.user, &given.password);
        }
        ok
    }
}

/// Decodes `Basic base64(user:password)`.
fn decode_basic(header: &str) -> Option<Credentials> {
    use base64::Engine;
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") || value.len() > 4096 {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(Credentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// Writes a new cookie to `<datadir>/.cookie` (mode 0600, replacing any old
/// one atomically) and returns it.
pub fn write_cookie(datadir: &Path) -> Result<Credentials, AuthConfigError> {
    let path = cookie_path(datadir);
    let creds = Credentials {
        user: COOKIE_USER.to_string(),
        password: hex::encode(rand::random::<[u8; 32]>()),
    };
    let tmp = datadir.join(".cookie.tmp");
    let write = || -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(format!("{}:{}", creds.user, creds.password).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|source| AuthConfigError::Cookie {
        path: path.clone(),
        source,
    })?;
    Ok(creds)
}

/// Removes the cookie at shutdown.
pub fn remove_cookie(datadir: &Path) {
    let _ = std::fs::remove_file(cookie_path(datadir));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> String {
        Credentials {
            user: user.into(),
            password: password.into(),
        }
        .header()
    }

    #[test]
    fn logins_cookie_and_hashed_entries_are_checked() {
        let entry = HashedLogin::create("alice", "s3cret");
        let access = RpcAccess {
            user: Some("bob".into()),
            password: Some("pw".into()),
            auth: vec![entry.clone()],
            ..RpcAccess::default()
        };
        let cookie = Credentials {
            user: COOKIE_USER.into(),
            password: "c0ffee".into(),
        };
        let a = Authenticator::new(&access, Some(cookie.clone())).unwrap();
        assert!(a.check(Some(&cookie.header())));
        assert!(a.check(Some(&header("bob", "pw"))));
        assert!(a.check(Some(&header("alice", "s3cret"))));
        for (u, p) in [
            ("bob", "PW"),
            ("alice", "pw"),
            ("__cookie__", "c0ffe"),
            ("", ""),
        ] {
            assert!(!a.check(Some(&header(u, p))), "{u}:{p}");
        }
        assert!(!a.check(None));
        assert!(!a.check(Some("Bearer x")));
        assert!(!a.check(Some("Basic !!!")));
        // the entry stores no password
        assert!(!entry.contains("s3cret"));
    }

    #[test]
    fn bad_configuration_is_refused_with_a_fix() {
        let half = RpcAccess {
            user: Some("u".into()),
            ..RpcAccess::default()
        };
        assert!(matches!(
            Authenticator::new(&half, None),
            Err(AuthConfigError::HalfLogin)
        ));
        for bad in ["alice", "alice:salt", "alice:salt$zz", ":s$00"] {
            let access = RpcAccess {
                auth: vec![bad.into()],
                ..RpcAccess::default()
            };
            let err = Authenticator::new(&access, None).err().unwrap();
            assert!(err.to_string().contains("cairn-node rpcauth"), "{err}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_cookie_is_private_and_new_each_time() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = write_cookie(dir.path()).unwrap();
        let b = write_cookie(dir.path()).unwrap();
        assert_ne!(a.password, b.password);
        let path = cookie_path(dir.path());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(cairn_api::auth::read_cookie(dir.path()).unwrap(), b);
        remove_cookie(dir.path());
        assert!(!path.exists());
    }
}
