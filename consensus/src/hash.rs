//! SHA-256 helpers and the newtypes for every hash role.
//!
//! Each role (block hash, transaction id, transaction root, state commitment)
//! has its own type so that one cannot be passed where another is expected.
//! All hashing that feeds consensus goes through [`tagged`], which prefixes a
//! domain tag: bytes hashed for one purpose can never be replayed as another.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use sha2::{Digest, Sha256};

/// Error parsing a hash from hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("expected {expected} hex characters, got {found}")]
    Length { expected: usize, found: usize },
    #[error("not valid hex: {0}")]
    Invalid(String),
}

/// Hashes `parts` under a domain tag: `SHA-256(tag || 0x00 || parts...)`.
///
/// # Correctness
/// Tags are fixed ASCII strings without NUL bytes, so the separator makes the
/// tag boundary unambiguous and two different tags never produce the same
/// preimage.
pub fn tagged(tag: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(tag.as_bytes());
    h.update([0u8]);
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Plain SHA-256.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Decodes exactly `N` bytes from a hex string (either case, no prefix).
pub fn decode_hex_array<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    if s.len() != 2 * N {
        return Err(HexError::Length {
            expected: 2 * N,
            found: s.len(),
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|e| HexError::Invalid(e.to_string()))?;
    Ok(out)
}

macro_rules! hash_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize,
            BorshDeserialize,
        )]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// All zero bytes.
            pub const ZERO: Self = Self([0u8; 32]);

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Lowercase hex of the bytes, in storage order.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_hex())
            }
        }

        impl FromStr for $name {
            type Err = HexError;
            fn from_str(s: &str) -> Result<Self, HexError> {
                decode_hex_array(s.strip_prefix("0x").unwrap_or(s)).map(Self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hash_newtype!(
    /// The hash of a block: its proof-of-work hash, see [`crate::block::BlockHeader::hash`].
    BlockHash
);
hash_newtype!(
    /// The id of a transaction (a transfer or a coinbase).
    TxId
);
hash_newtype!(
    /// The Merkle root of a block's transaction ids.
    TxRoot
);
hash_newtype!(
    /// The commitment to the whole account state after a block.
    StateRoot
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_separate_domains() {
        assert_ne!(tagged("a", &[b"bc"]), tagged("ab", &[b"c"]));
        assert_eq!(tagged("a", &[b"b", b"c"]), tagged("a", &[b"bc"]));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = BlockHash([0xab; 32]);
        assert_eq!(h.to_string().parse::<BlockHash>().unwrap(), h);
        assert_eq!(format!("0x{h}").parse::<BlockHash>().unwrap(), h);
        assert_eq!(
            "abcd".parse::<BlockHash>(),
            Err(HexError::Length {
                expected: 64,
                found: 4
            })
        );
        assert!(matches!(
            "zz".repeat(32).parse::<BlockHash>(),
            Err(HexError::Invalid(_))
        ));
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<BlockHash>(&json).unwrap(), h);
    }
}
