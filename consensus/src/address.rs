//! Keys, signatures and addresses.
//!
//! An [`Address`] is the first 20 bytes of a tagged SHA-256 of an ed25519
//! public key. Its text form is bech32m with the network's prefix as the
//! human-readable part (`cdev1...` on dev, `ctest1...` on testnet), so a typo
//! is caught by the checksum (any error in up to four characters is detected)
//! and an address of another network is recognised as such before any money
//! moves.

use std::fmt;

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32m, Hrp};
use borsh::{BorshDeserialize, BorshSerialize};

use crate::hash::{decode_hex_array, tagged};

/// An ed25519 public key, as its 32-byte compressed encoding.
///
/// The bytes are not checked to be a valid point here; signature verification
/// (`verify_strict`) does that, and an invalid key fails it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature (R || s).
#[derive(Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl std::str::FromStr for PublicKey {
    type Err = crate::hash::HexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_hex_array(s).map(PublicKey)
    }
}

/// Length of an address in bytes.
pub const ADDRESS_LEN: usize = 20;

/// An account address: a hash of the owner's public key.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Address(pub [u8; ADDRESS_LEN]);

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", hex::encode(self.0))
    }
}

/// A network's address prefix: the human-readable part of its addresses.
///
/// # Correctness
/// Only lowercase ASCII letters and digits, 1 to 16 characters, so every
/// prefix is a valid bech32 human-readable part and encoding cannot fail.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AddressPrefix(Hrp);

/// Errors reading an address or a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error(
        "address prefix {0:?} is not valid: use 1 to 16 lowercase letters or digits, starting with a letter"
    )]
    BadPrefix(String),
    #[error("{input:?} is not a valid address: {reason} (a typo?)")]
    Malformed { input: String, reason: String },
    #[error("address {input:?} has {found} data bytes, expected {ADDRESS_LEN}")]
    Length { input: String, found: usize },
    #[error(
        "address {input:?} belongs to the network with prefix {found:?}, but this network's addresses start with {expected:?}"
    )]
    WrongNetwork {
        input: String,
        found: String,
        expected: String,
    },
}

impl AddressPrefix {
    /// Checks and wraps a prefix such as `cdev`.
    pub fn new(s: &str) -> Result<Self, AddressError> {
        let ok = !s.is_empty()
            && s.len() <= 16
            && s.as_bytes()[0].is_ascii_lowercase()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !ok {
            return Err(AddressError::BadPrefix(s.to_string()));
        }
        Hrp::parse(s)
            .map(AddressPrefix)
            .map_err(|_| AddressError::BadPrefix(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for AddressPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AddressPrefix({})", self.0.as_str())
    }
}

impl fmt::Display for AddressPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl Address {
    /// The address owned by `key`.
    pub fn from_public_key(key: &PublicKey) -> Address {
        let h = tagged("cairn/address/v1", &[&key.0]);
        let mut a = [0u8; ADDRESS_LEN];
        a.copy_from_slice(&h[..ADDRESS_LEN]);
        Address(a)
    }

    /// The text form on the network with `prefix`.
    pub fn encode(&self, prefix: &AddressPrefix) -> String {
        // Cannot fail: the prefix is valid and 20 bytes is far below the
        // bech32 length limit.
        bech32::encode::<Bech32m>(prefix.0, &self.0).unwrap_or_default()
    }

    /// Reads an address of any network; returns its prefix too.
    pub fn decode_any(s: &str) -> Result<(String, Address), AddressError> {
        let t = s.trim();
        let checked = CheckedHrpstring::new::<Bech32m>(t).map_err(|e| AddressError::Malformed {
            input: s.to_string(),
            reason: match e {
                bech32::primitives::decode::CheckedHrpstringError::Checksum(_) => {
                    "its checksum does not match".to_string()
                }
                other => other.to_string(),
            },
        })?;
        let bytes: Vec<u8> = checked.byte_iter().collect();
        if bytes.len() != ADDRESS_LEN {
            return Err(AddressError::Length {
                input: s.to_string(),
                found: bytes.len(),
            });
        }
        let mut a = [0u8; ADDRESS_LEN];
        a.copy_from_slice(&bytes);
        Ok((checked.hrp().to_lowercase(), Address(a)))
    }

    /// Reads an address that must belong to the network with `prefix`.
    pub fn decode(s: &str, prefix: &AddressPrefix) -> Result<Address, AddressError> {
        let (found, addr) = Address::decode_any(s)?;
        if found != prefix.as_str() {
            return Err(AddressError::WrongNetwork {
                input: s.to_string(),
                found,
                expected: prefix.as_str().to_string(),
            });
        }
        Ok(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dev() -> AddressPrefix {
        AddressPrefix::new("cdev").unwrap()
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(AddressPrefix::new("cdev").is_ok());
        assert!(AddressPrefix::new("Cdev").is_err());
        assert!(AddressPrefix::new("").is_err());
        assert!(AddressPrefix::new("1abc").is_err());
        assert!(AddressPrefix::new("a-b").is_err());
        assert!(AddressPrefix::new(&"a".repeat(17)).is_err());
    }

    #[test]
    fn wrong_network_is_named() {
        let a = Address::from_public_key(&PublicKey([7; 32]));
        let text = a.encode(&AddressPrefix::new("ctest").unwrap());
        assert!(text.starts_with("ctest1"));
        match Address::decode(&text, &dev()) {
            Err(AddressError::WrongNetwork {
                found, expected, ..
            }) => {
                assert_eq!(found, "ctest");
                assert_eq!(expected, "cdev");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn uppercase_is_accepted() {
        let a = Address::from_public_key(&PublicKey([9; 32]));
        let text = a.encode(&dev()).to_uppercase();
        assert_eq!(Address::decode(&text, &dev()), Ok(a));
    }

    proptest! {
        #[test]
        fn round_trips(bytes in any::<[u8; 20]>()) {
            let a = Address(bytes);
            prop_assert_eq!(Address::decode(&a.encode(&dev()), &dev()), Ok(a));
        }

        /// Any change of one character (a typo) is caught by the checksum.
        #[test]
        fn single_typo_is_caught(bytes in any::<[u8; 20]>(), pos in 5usize..39, sub in 0usize..32) {
            const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
            let text = Address(bytes).encode(&dev());
            let mut chars: Vec<u8> = text.into_bytes();
            let pos = pos.min(chars.len() - 1);
            prop_assume!(chars[pos] != CHARSET[sub]);
            chars[pos] = CHARSET[sub];
            let typo = String::from_utf8(chars).unwrap();
            prop_assert!(Address::decode(&typo, &dev()).is_err());
        }

        /// Swapping two adjacent different characters is caught too.
        #[test]
        fn transposition_is_caught(bytes in any::<[u8; 20]>(), pos in 5usize..38) {
            let text = Address(bytes).encode(&dev());
            let mut chars: Vec<u8> = text.into_bytes();
            let pos = pos.min(chars.len() - 2);
            prop_assume!(chars[pos] != chars[pos + 1]);
            chars.swap(pos, pos + 1);
            let typo = String::from_utf8(chars).unwrap();
            prop_assert!(Address::decode(&typo, &dev()).is_err());
        }
    }
}
