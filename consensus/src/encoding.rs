//! Canonical encoding: borsh, with a size bound checked before decoding.
//!
//! # Consensus
//! One value has exactly one encoding. Decoding uses [`borsh::from_slice`],
//! which rejects trailing bytes; every consensus type is built from
//! fixed-size fields and `Vec`s whose length prefix borsh checks against the
//! bytes actually present (it preallocates at most 4 KiB before reading
//! elements), so decoding never allocates more than the input justifies.
//! Consensus types contain no maps.

use borsh::{BorshDeserialize, BorshSerialize};

/// Error decoding untrusted bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} is not a valid encoding: {reason}")]
    Malformed { what: &'static str, reason: String },
}

/// Decodes a `T` from exactly `bytes`, refusing more than `max` bytes.
pub fn decode<T: BorshDeserialize>(
    what: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            what,
            len: bytes.len(),
            max,
        });
    }
    borsh::from_slice(bytes).map_err(|e| DecodeError::Malformed {
        what,
        reason: e.to_string(),
    })
}

/// The canonical encoding of `value`.
pub fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    // Writing into a Vec cannot fail.
    borsh::to_vec(value).unwrap_or_default()
}
