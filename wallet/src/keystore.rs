//! The encrypted wallet file.
//!
//! # Format (JSON, version 1)
//! ```json
//! { "format": "cairn-wallet", "version": 1,
//!   "network": { "name": "dev", "address_prefix": "cdev", "chain_id": 1337, "genesis_hash": "..." },
//!   "kdf": { "algorithm": "argon2id", "memory_kib": 65536, "iterations": 3, "parallelism": 1, "salt": "<hex>" },
//!   "cipher": "xchacha20poly1305", "nonce": "<hex, 24 bytes>",
//!   "check": "<hex>", "ciphertext": "<hex>" }
//! ```
//!
//! # Scheme
//! Argon2id derives 64 bytes from the password and the file's random salt:
//! the first 32 are the XChaCha20-Poly1305 key, the SHA-256 of the last 32
//! is stored as `check`, so a wrong password is told apart from a damaged
//! file. The plaintext (the secret keys and their labels, as JSON) is
//! encrypted as one message under a fresh random nonce at every save, with
//! everything else in the file (format, version, network, KDF parameters,
//! nonce) as associated data: changing any byte of the file is detected.
//!
//! # Correctness
//! Secrets live in [`Zeroizing`] buffers and `SigningKey`s (zeroized on
//! drop). The file is written to a temporary file with mode 0600 in the same
//! directory, synced, and renamed over the old one, so a crash leaves either
//! the old or the new wallet, never a mix. Unknown versions and KDF
//! parameters below the floor are refused.

use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use cairn_consensus::transfer::public_key;
use cairn_consensus::{Address, AddressPrefix, SigningKey};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Argon2id memory by default: 64 MiB.
pub const DEFAULT_MEMORY_KIB: u32 = 64 * 1024;
/// The lowest memory a wallet file may ask for (files asking for less are
/// refused as tampered).
pub const MIN_MEMORY_KIB: u32 = 8 * 1024;
pub const DEFAULT_ITERATIONS: u32 = 3;
/// Largest wallet file read.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

const FORMAT: &str = "cairn-wallet";
const VERSION: u32 = 1;

/// A wallet problem, each with the action to take.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("wrong password for wallet {0}")]
    WrongPassword(PathBuf),
    #[error("wallet file {path} is corrupted or was tampered with: {detail}")]
    Tampered { path: PathBuf, detail: String },
    #[error("wallet file {0} does not exist; create it with `cairn-wallet new`")]
    Missing(PathBuf),
    #[error("wallet file {0} already exists")]
    Exists(PathBuf),
    #[error("cannot read or write wallet file {path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error("{0}")]
    Invalid(String),
}

/// The network a wallet belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletNetwork {
    pub name: String,
    pub address_prefix: String,
    pub chain_id: u64,
    /// Absent for wallets made offline; checked against the node when known.
    pub genesis_hash: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct KdfParams {
    algorithm: String,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
}

/// A wallet file as stored: everything but the plaintext is readable
/// without the password. [`WalletFile::parse`] makes every check that needs
/// no password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletFile {
    format: String,
    version: u32,
    network: WalletNetwork,
    kdf: KdfParams,
    cipher: String,
    nonce: String,
    check: String,
    ciphertext: String,
}

/// What the file authenticates besides the ciphertext.
#[derive(Serialize)]
struct Header<'a> {
    format: &'a str,
    version: u32,
    network: &'a WalletNetwork,
    kdf: &'a KdfParams,
    cipher: &'a str,
    nonce: &'a str,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Plain {
    keys: Vec<PlainKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainKey {
    secret: String,
    label: String,
}

/// One key of the wallet.
pub struct WalletKey {
    pub key: SigningKey,
    pub label: String,
}

impl WalletKey {
    pub fn address(&self) -> Address {
        Address::from_public_key(&public_key(&self.key))
    }
}

/// An unlocked wallet.
pub struct Wallet {
    pub path: PathBuf,
    pub network: WalletNetwork,
    pub keys: Vec<WalletKey>,
    kdf: KdfParams,
    derived: Zeroizing<[u8; 64]>,
}

fn io(path: &Path, e: impl std::fmt::Display) -> KeystoreError {
    KeystoreError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// The KDF parameters a wallet file may ask for (checked before any work,
/// so a tampered file cannot make the wallet spend unbounded time or memory);
/// returns the salt.
fn check_kdf(kdf: &KdfParams, path: &Path) -> Result<Vec<u8>, KeystoreError> {
    let tampered = |detail: String| KeystoreError::Tampered {
        path: path.to_path_buf(),
        detail,
    };
    if kdf.algorithm != "argon2id" {
        return Err(tampered(format!(
            "unknown key derivation {:?}",
            kdf.algorithm
        )));
    }
    if kdf.memory_kib < MIN_MEMORY_KIB || kdf.memory_kib > 4 * 1024 * 1024 {
        return Err(tampered(format!(
            "key derivation memory {} KiB is out of range",
            kdf.memory_kib
        )));
    }
    if kdf.iterations == 0 || kdf.iterations > 100 || kdf.parallelism == 0 || kdf.parallelism > 16 {
        return Err(tampered(
            "key derivation parameters are out of range".into(),
        ));
    }
    let salt = hex::decode(&kdf.salt).map_err(|_| tampered("the salt is not hex".into()))?;
    if salt.len() != 16 {
        return Err(tampered("the salt is not 16 bytes".into()));
    }
    Ok(salt)
}

fn derive(
    password: &[u8],
    kdf: &KdfParams,
    path: &Path,
) -> Result<Zeroizing<[u8; 64]>, KeystoreError> {
    let tampered = |detail: String| KeystoreError::Tampered {
        path: path.to_path_buf(),
        detail,
    };
    let salt = check_kdf(kdf, path)?;
    let params = Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(64))
        .map_err(|e| tampered(format!("key derivation parameters: {e}")))?;
    let mut out = Zeroizing::new([0u8; 64]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, &salt, out.as_mut())
        .map_err(|e| KeystoreError::Invalid(format!("key derivation failed: {e}")))?;
    Ok(out)
}

fn check_of(derived: &[u8; 64]) -> String {
    hex::encode(Sha256::digest(&derived[32..]))
}

impl Wallet {
    /// A new, empty wallet for `network` (not yet saved).
    pub fn create(
        path: &Path,
        network: WalletNetwork,
        password: &[u8],
        memory_kib: u32,
    ) -> Result<Wallet, KeystoreError> {
        if path.exists() {
            return Err(KeystoreError::Exists(path.to_path_buf()));
        }
        AddressPrefix::new(&network.address_prefix)
            .map_err(|e| KeystoreError::Invalid(e.to_string()))?;
        if password.is_empty() {
            return Err(KeystoreError::Invalid(
                "the password must not be empty".into(),
            ));
        }
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let kdf = KdfParams {
            algorithm: "argon2id".into(),
            memory_kib: memory_kib.max(MIN_MEMORY_KIB),
            iterations: DEFAULT_ITERATIONS,
            parallelism: 1,
            salt: hex::encode(salt),
        };
        let derived = derive(password, &kdf, path)?;
        Ok(Wallet {
            path: path.to_path_buf(),
            network,
            keys: Vec::new(),
            kdf,
            derived,
        })
    }

    /// Opens and decrypts a wallet file.
    pub fn open(path: &Path, password: &[u8]) -> Result<Wallet, KeystoreError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeystoreError::Missing(path.to_path_buf()));
            }
            Err(e) => return Err(io(path, e)),
        };
        let tampered = |detail: String| KeystoreError::Tampered {
            path: path.to_path_buf(),
            detail,
        };
        if meta.len() > MAX_FILE_BYTES {
            return Err(tampered(format!(
                "{} bytes is larger than any wallet",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
        let file = WalletFile::parse(&text, path)?;
        let derived = derive(password, &file.kdf, path)?;
        if check_of(&derived) != file.check {
            return Err(KeystoreError::WrongPassword(path.to_path_buf()));
        }
        let nonce = file.nonce_bytes(path)?;
        let ciphertext = hex::decode(&file.ciphertext)
            .map_err(|_| tampered("the ciphertext is not hex".into()))?;
        let aad = header_bytes(&file.network, &file.kdf, &file.nonce);
        let cipher = XChaCha20Poly1305::new_from_slice(&derived[..32])
            .map_err(|_| KeystoreError::Invalid("bad key length".into()))?;
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| {
                    tampered("its contents do not match their authentication tag".into())
                })?,
        );
        let keys = parse_plain(&plain, path)?;
        Ok(Wallet {
            path: path.to_path_buf(),
            network: file.network,
            keys,
            kdf: file.kdf,
            derived,
        })
    }

    pub fn prefix(&self) -> AddressPrefix {
        // checked at creation; a tampered prefix fails the authentication tag
        AddressPrefix::new(&self.network.address_prefix)
            .unwrap_or_else(|_| AddressPrefix::new("invalid").expect("a valid literal prefix"))
    }

    /// The key of `address`, if the wallet holds it.
    pub fn key_for(&self, address: &Address) -> Option<&WalletKey> {
        self.keys.iter().find(|k| k.address() == *address)
    }

    /// Adds a key (refusing duplicates); returns its address.
    pub fn add(&mut self, key: SigningKey, label: String) -> Result<Address, KeystoreError> {
        let address = Address::from_public_key(&public_key(&key));
        if self.key_for(&address).is_some() {
            return Err(KeystoreError::Invalid(format!(
                "the wallet already holds {}",
                address.encode(&self.prefix())
            )));
        }
        self.keys.push(WalletKey { key, label });
        Ok(address)
    }

    /// Encrypts and writes the wallet atomically with mode 0600.
    pub fn save(&self) -> Result<(), KeystoreError> {
        let path = &self.path;
        let plain = encode_plain(&self.keys)?;
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let nonce_hex = hex::encode(nonce);
        let aad = header_bytes(&self.network, &self.kdf, &nonce_hex);
        let cipher = XChaCha20Poly1305::new_from_slice(&self.derived[..32])
            .map_err(|_| KeystoreError::Invalid("bad key length".into()))?;
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| KeystoreError::Invalid("encryption failed".into()))?;
        let file = WalletFile {
            format: FORMAT.into(),
            version: VERSION,
            network: self.network.clone(),
            kdf: self.kdf.clone(),
            cipher: "xchacha20poly1305".into(),
            nonce: nonce_hex,
            check: check_of(&self.derived),
            ciphertext: hex::encode(ciphertext),
        };
        let text = serde_json::to_string_pretty(&file)
            .map_err(|e| KeystoreError::Invalid(e.to_string()))?;
        write_atomic(path, text.as_bytes())
    }
}

impl WalletFile {
    /// Parses a wallet file's text and checks everything that needs no
    /// password: format, version, cipher, KDF parameters (bounded before
    /// any work), and the hex fields' lengths.
    pub fn parse(text: &str, path: &Path) -> Result<WalletFile, KeystoreError> {
        let tampered = |detail: String| KeystoreError::Tampered {
            path: path.to_path_buf(),
            detail,
        };
        let file: WalletFile =
            serde_json::from_str(text).map_err(|e| tampered(format!("not a wallet file: {e}")))?;
        if file.format != FORMAT {
            return Err(tampered(format!(
                "format {:?} is not {FORMAT:?}",
                file.format
            )));
        }
        if file.version != VERSION {
            return Err(KeystoreError::Invalid(format!(
                "wallet file {} has version {}, this cairn-wallet reads version {VERSION}",
                path.display(),
                file.version
            )));
        }
        if file.cipher != "xchacha20poly1305" {
            return Err(tampered(format!("unknown cipher {:?}", file.cipher)));
        }
        check_kdf(&file.kdf, path)?;
        if file.check.len() != 64 || hex::decode(&file.check).is_err() {
            return Err(tampered("the password check is not 32 bytes of hex".into()));
        }
        file.nonce_bytes(path)?;
        Ok(file)
    }

    /// The file as `save` writes it (the same fields, pretty JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The memory the file's key derivation asks for, KiB.
    pub fn kdf_memory_kib(&self) -> u32 {
        self.kdf.memory_kib
    }

    /// The network the file says it belongs to.
    pub fn network(&self) -> &WalletNetwork {
        &self.network
    }

    fn nonce_bytes(&self, path: &Path) -> Result<Vec<u8>, KeystoreError> {
        let tampered = |detail: &str| KeystoreError::Tampered {
            path: path.to_path_buf(),
            detail: detail.into(),
        };
        let nonce = hex::decode(&self.nonce).map_err(|_| tampered("the nonce is not hex"))?;
        if nonce.len() != 24 {
            return Err(tampered("the nonce is not 24 bytes"));
        }
        Ok(nonce)
    }
}

/// The decrypted contents of a wallet file: its keys and labels as JSON.
pub fn parse_plain(plain: &[u8], path: &Path) -> Result<Vec<WalletKey>, KeystoreError> {
    let tampered = |detail: String| KeystoreError::Tampered {
        path: path.to_path_buf(),
        detail,
    };
    let parsed: Plain = serde_json::from_slice(plain)
        .map_err(|e| tampered(format!("decrypted contents do not parse: {e}")))?;
    let mut keys = Vec::with_capacity(parsed.keys.len());
    for k in parsed.keys {
        let secret = Zeroizing::new(k.secret);
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(secret.as_str(), bytes.as_mut())
            .map_err(|_| tampered("a secret key is not 32 bytes of hex".into()))?;
        keys.push(WalletKey {
            key: SigningKey::from_bytes(&bytes),
            label: k.label,
        });
    }
    Ok(keys)
}

/// The plaintext [`parse_plain`] reads.
pub fn encode_plain(keys: &[WalletKey]) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    Ok(Zeroizing::new(
        serde_json::to_vec(&Plain {
            keys: keys
                .iter()
                .map(|k| PlainKey {
                    secret: hex::encode(k.key.to_bytes()),
                    label: k.label.clone(),
                })
                .collect(),
        })
        .map_err(|e| KeystoreError::Invalid(e.to_string()))?,
    ))
}

fn header_bytes(network: &WalletNetwork, kdf: &KdfParams, nonce: &str) -> Vec<u8> {
    serde_json::to_vec(&Header {
        format: FORMAT,
        version: VERSION,
        network,
        kdf,
        cipher: "xchacha20poly1305",
        nonce,
    })
    .unwrap_or_default()
}

/// Writes `bytes` to `path` via a synced temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KeystoreError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "wallet".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok::<_, std::io::Error>(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> WalletNetwork {
        WalletNetwork {
            name: "dev".into(),
            address_prefix: "cdev".into(),
            chain_id: 1337,
            genesis_hash: Some("ab".repeat(32)),
        }
    }

    fn fresh(dir: &Path) -> (PathBuf, Address) {
        let path = dir.join("w.json");
        let mut w = Wallet::create(&path, net(), b"correct horse", MIN_MEMORY_KIB).unwrap();
        let a = w
            .add(SigningKey::generate(&mut rand::rngs::OsRng), "main".into())
            .unwrap();
        w.save().unwrap();
        (path, a)
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (path, a) = fresh(dir.path());
        let mut w = Wallet::open(&path, b"correct horse").unwrap();
        assert_eq!(w.keys.len(), 1);
        assert_eq!(w.keys[0].address(), a);
        assert_eq!(w.network, net());
        let b = w
            .add(
                SigningKey::generate(&mut rand::rngs::OsRng),
                "second".into(),
            )
            .unwrap();
        w.save().unwrap();
        let w = Wallet::open(&path, b"correct horse").unwrap();
        assert_eq!(
            w.keys.iter().map(|k| k.address()).collect::<Vec<_>>(),
            vec![a, b]
        );
        assert_eq!(w.keys[1].label, "second");
        assert!(
            !std::fs::read_to_string(&path)
                .unwrap()
                .contains(&hex::encode(w.keys[0].key.to_bytes())),
            "no secret in clear"
        );
    }

    #[test]
    fn wrong_password_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = fresh(dir.path());
        assert!(matches!(
            Wallet::open(&path, b"Correct horse"),
            Err(KeystoreError::WrongPassword(_))
        ));
    }

    #[test]
    fn every_tampered_byte_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = fresh(dir.path());
        let original = std::fs::read_to_string(&path).unwrap();
        let value: serde_json::Value = serde_json::from_str(&original).unwrap();
        // change each field in turn
        let edits: Vec<(&str, serde_json::Value)> = vec![
            ("/network/chain_id", 1338.into()),
            ("/network/address_prefix", "ctest".into()),
            ("/network/name", "testnet".into()),
            ("/kdf/iterations", 4.into()),
            ("/kdf/memory_kib", 1024.into()),
            ("/nonce", "00".repeat(24).into()),
            ("/version", 2.into()),
            ("/cipher", "rot13".into()),
        ];
        for (pointer, new) in edits {
            let mut v = value.clone();
            *v.pointer_mut(pointer).unwrap() = new;
            std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
            let r = Wallet::open(&path, b"correct horse");
            assert!(r.is_err(), "editing {pointer} was not detected");
        }
        // flip each hex digit of the ciphertext in turn (first 64)
        let ct = value["ciphertext"].as_str().unwrap().to_string();
        for i in 0..64.min(ct.len()) {
            let mut v = value.clone();
            let mut chars: Vec<char> = ct.chars().collect();
            chars[i] = if chars[i] == '0' { '1' } else { '0' };
            v["ciphertext"] = chars.into_iter().collect::<String>().into();
            std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
            assert!(matches!(
                Wallet::open(&path, b"correct horse"),
                Err(KeystoreError::Tampered { .. })
            ));
        }
        std::fs::write(&path, &original[..original.len() / 2]).unwrap();
        assert!(matches!(
            Wallet::open(&path, b"correct horse"),
            Err(KeystoreError::Tampered { .. })
        ));
        std::fs::write(&path, original).unwrap();
        assert!(Wallet::open(&path, b"correct horse").is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private_and_replaced_atomically() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = fresh(dir.path());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mut w = Wallet::open(&path, b"correct horse").unwrap();
        w.add(SigningKey::generate(&mut rand::rngs::OsRng), String::new())
            .unwrap();
        w.save().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
    }

    #[test]
    fn creating_over_an_existing_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = fresh(dir.path());
        assert!(matches!(
            Wallet::create(&path, net(), b"x", MIN_MEMORY_KIB),
            Err(KeystoreError::Exists(_))
        ));
        assert!(matches!(
            Wallet::open(&dir.path().join("nope.json"), b"x"),
            Err(KeystoreError::Missing(_))
        ));
    }
}
