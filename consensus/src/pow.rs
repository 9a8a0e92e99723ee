//! Proof of work: targets, work, the nonce search primitive and the
//! difficulty rule.
//!
//! # Consensus
//! A block is valid proof of work when its hash, read as a big-endian 256-bit
//! number, is at most its target. The work of a block is the expected number of
//! hashes needed to find it, `floor(2^256 / (target + 1))`; the chain with the
//! most cumulative work wins.
//!
//! The block hash is `SHA-256(SHA-256(prehash || nonce_le))`, where `prehash`
//! commits to every other header field. One nonce attempt is therefore exactly
//! two SHA-256 compressions, whatever the header holds ([`PowHasher`]).

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use ruint::aliases::{U256, U512};

use crate::hash::{BlockHash, HexError, decode_hex_array};

/// A proof-of-work target: the largest valid block hash. Lower is harder.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Target(pub [u8; 32]);

impl Target {
    /// The target as a number.
    pub fn to_u256(&self) -> U256 {
        U256::from_be_bytes(self.0)
    }

    pub fn from_u256(v: U256) -> Target {
        Target(v.to_be_bytes())
    }

    /// The target as eight big-endian words, for [`PowHasher::meets`].
    pub fn to_words(&self) -> [u32; 8] {
        let mut w = [0u32; 8];
        for (i, chunk) in self.0.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        w
    }

    /// Whether `hash` satisfies this target.
    pub fn is_met_by(&self, hash: &BlockHash) -> bool {
        // Big-endian byte order compares like the numbers it encodes.
        hash.0 <= self.0
    }

    /// The work a block at this target proves: `floor(2^256 / (target + 1))`.
    pub fn work(&self) -> Work {
        let t = self.to_u256();
        match t.checked_add(U256::from(1u8)) {
            // 2^256 / (t + 1) == (2^256 - 1 - t) / (t + 1) + 1, computed without 2^256.
            Some(t1) => Work((!t) / t1 + U256::from(1u8)),
            None => Work(U256::from(1u8)),
        }
    }

    /// A target whose expected number of attempts is `2^bits` (for tests and specs).
    pub fn from_difficulty_bits(bits: u32) -> Target {
        if bits == 0 {
            return Target::from_u256(U256::MAX);
        }
        Target::from_u256(U256::MAX >> (bits.min(255) as usize))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({})", self.to_hex())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::str::FromStr for Target {
    type Err = HexError;
    fn from_str(s: &str) -> Result<Self, HexError> {
        decode_hex_array(s.strip_prefix("0x").unwrap_or(s)).map(Target)
    }
}

impl serde::Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An amount of work (expected hashes). Cumulative chain work is a `Work`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Work(pub U256);

impl Work {
    pub const ZERO: Work = Work(U256::ZERO);

    /// Sum of two amounts of work; `None` on overflow (which would need more
    /// than 2^256 hashes, so it signals corrupt input).
    pub fn checked_add(self, other: Work) -> Option<Work> {
        self.0.checked_add(other.0).map(Work)
    }

    pub fn to_be_bytes(&self) -> [u8; 32] {
        self.0.to_be_bytes()
    }

    pub fn from_be_bytes(b: [u8; 32]) -> Work {
        Work(U256::from_be_bytes(b))
    }

    /// Hex of the big-endian number, without leading zeros (`0x` form without `0x`).
    pub fn to_hex(&self) -> String {
        format!("{:x}", self.0)
    }

    /// The work, saturated into a `u128`, for display and rates.
    pub fn saturating_u128(&self) -> u128 {
        u128::try_from(self.0).unwrap_or(u128::MAX)
    }
}

impl fmt::Debug for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Work(0x{})", self.to_hex())
    }
}

impl BorshSerialize for Work {
    fn serialize<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(&self.to_be_bytes())
    }
}

impl BorshDeserialize for Work {
    fn deserialize_reader<R: std::io::Read>(r: &mut R) -> std::io::Result<Self> {
        let mut b = [0u8; 32];
        r.read_exact(&mut b)?;
        Ok(Work::from_be_bytes(b))
    }
}

impl serde::Serialize for Work {
    /// Hex of the number, as in `chain_getInfo.total_work`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Work {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        U256::from_str_radix(s.trim_start_matches("0x"), 16)
            .map(Work)
            .map_err(serde::de::Error::custom)
    }
}

const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Hashes nonce attempts for one header prefix: two SHA-256 compressions per
/// nonce, with both message blocks and their padding laid out once.
///
/// # Correctness
/// Equal to `sha256(sha256(prehash || nonce.to_le_bytes()))`; a property test
/// checks it against that definition.
#[derive(Clone)]
pub struct PowHasher {
    first: [u8; 64],
}

impl PowHasher {
    pub fn new(prehash: &[u8; 32]) -> PowHasher {
        let mut first = [0u8; 64];
        first[..32].copy_from_slice(prehash);
        // bytes 32..40 hold the nonce; then the SHA-256 padding of a 40-byte message
        first[40] = 0x80;
        first[56..].copy_from_slice(&(40u64 * 8).to_be_bytes());
        PowHasher { first }
    }

    /// The final SHA-256 state words for `nonce`: the block hash as eight
    /// big-endian words, without converting to bytes.
    #[inline]
    pub fn hash_words(&self, nonce: u64) -> [u32; 8] {
        let mut block = self.first;
        block[32..40].copy_from_slice(&nonce.to_le_bytes());
        let mut state = SHA256_IV;
        sha2::compress256(&mut state, &[block.into()]);
        let mut second = [0u8; 64];
        for (i, w) in state.iter().enumerate() {
            second[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        second[32] = 0x80;
        second[56..].copy_from_slice(&(32u64 * 8).to_be_bytes());
        let mut out = SHA256_IV;
        sha2::compress256(&mut out, &[second.into()]);
        out
    }

    /// Whether `nonce` meets `target` (given as [`Target::to_words`]).
    /// Equal to `target.is_met_by(&self.hash(nonce))`.
    #[inline]
    pub fn meets(&self, nonce: u64, target: &[u32; 8]) -> bool {
        self.hash_words(nonce) <= *target
    }

    /// The block hash for `nonce`.
    #[inline]
    pub fn hash(&self, nonce: u64) -> BlockHash {
        let words = self.hash_words(nonce);
        let mut hash = [0u8; 32];
        for (i, w) in words.iter().enumerate() {
            hash[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        BlockHash(hash)
    }
}

/// Parameters of the ASERT difficulty rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsertParams {
    /// The block interval the rule steers toward.
    pub target_block_time_ms: u64,
    /// Time for the target to double (or halve) when blocks run that far
    /// behind (or ahead of) schedule.
    pub half_life_ms: u64,
}

/// The ASERT target (absolutely scheduled exponentially rising targets, the
/// `aserti3-2d` rule of Bitcoin Cash) for a block whose parent lies
/// `blocks_since_anchor` blocks and `ms_since_anchor` milliseconds after the
/// anchor block.
///
/// `target = anchor_target * 2^((ms_since_anchor - T * blocks_since_anchor) / half_life)`,
/// with the fractional power approximated by the same cubic polynomial as
/// Bitcoin Cash (error below 0.013%) in integers only, clamped to `[1, pow_limit]`.
///
/// # Consensus
/// Only integer arithmetic, with wide intermediates (`i128`, 512-bit) so no
/// input can overflow; every node computes the same target.
pub fn asert_target(
    anchor_target: Target,
    pow_limit: Target,
    p: AsertParams,
    ms_since_anchor: i128,
    blocks_since_anchor: u64,
) -> Target {
    let half_life = i128::from(p.half_life_ms.max(1));
    // A product of two u64 can exceed i128: saturate (the result clamps anyway).
    let scheduled =
        i128::from(p.target_block_time_ms).saturating_mul(i128::from(blocks_since_anchor));
    let lag = ms_since_anchor.saturating_sub(scheduled);
    let exponent = lag.saturating_mul(65536).div_euclid(half_life);
    let shifts = exponent >> 16; // floor division by 65536
    let frac = (exponent & 0xffff) as u128;
    // 2^(frac/65536) * 65536, to within rounding (Bitcoin Cash's constants)
    let poly = 195_766_423_245_049u128 * frac
        + 971_821_376u128 * frac * frac
        + 5_127u128 * frac * frac * frac
        + (1u128 << 47);
    let factor = 65_536u128 + (poly >> 48);
    let limit = pow_limit.to_u256();
    let wide = U512::from(anchor_target.to_u256()) * U512::from(factor);
    // result = wide * 2^shifts / 2^16
    let total_shift = shifts - 16;
    let result = if total_shift >= 0 {
        if total_shift > 300 {
            return pow_limit;
        }
        let s = total_shift as usize;
        if wide.bit_len() + s > 511 {
            return pow_limit;
        }
        wide << s
    } else {
        let s = (-total_shift).min(600) as usize;
        if s >= 512 { U512::ZERO } else { wide >> s }
    };
    let one = U512::from(1u8);
    let clamped = if result < one {
        one
    } else if result > U512::from(limit) {
        U512::from(limit)
    } else {
        result
    };
    // clamped <= limit < 2^256, so the conversion is exact
    Target::from_u256(U256::from_limbs_slice(&clamped.as_limbs()[..4]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    proptest! {
        #[test]
        fn pow_hasher_matches_definition(prehash in any::<[u8; 32]>(), nonce in any::<u64>()) {
            let mut msg = prehash.to_vec();
            msg.extend_from_slice(&nonce.to_le_bytes());
            let expected: [u8; 32] = Sha256::digest(Sha256::digest(&msg)).into();
            prop_assert_eq!(PowHasher::new(&prehash).hash(nonce), BlockHash(expected));
        }

        #[test]
        fn word_comparison_matches_byte_comparison(prehash in any::<[u8; 32]>(), nonce in any::<u64>(), t in any::<[u8; 32]>(), bits in 0u32..24) {
            let h = PowHasher::new(&prehash);
            let hash = h.hash(nonce);
            for target in [Target(t), Target::from_difficulty_bits(bits), Target(hash.0)] {
                prop_assert_eq!(h.meets(nonce, &target.to_words()), target.is_met_by(&hash));
            }
        }

        #[test]
        fn work_is_floor_of_2_256_over_target_plus_one(t in any::<[u8; 32]>()) {
            let target = Target(t);
            let w = target.work().0;
            let t1 = U512::from(target.to_u256()) + U512::from(1u8);
            let two256 = U512::from(1u8) << 256;
            prop_assert_eq!(U512::from(w), two256 / t1);
        }

        #[test]
        fn harder_targets_prove_more_work(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            let (a, b) = (Target(a), Target(b));
            if a < b { prop_assert!(a.work() >= b.work()); }
        }

        /// ASERT is monotone: being later never makes the target harder.
        #[test]
        fn asert_is_monotone_in_time(t in 1u64..u64::MAX, ms in -1_000_000_000i128..1_000_000_000, d in 0i128..10_000_000, blocks in 0u64..1_000_000) {
            let limit = Target::from_difficulty_bits(8);
            let anchor = Target::from_u256(U256::from(t).min(limit.to_u256()));
            let p = AsertParams { target_block_time_ms: 10_000, half_life_ms: 120_000 };
            let a = asert_target(anchor, limit, p, ms, blocks);
            let b = asert_target(anchor, limit, p, ms + d, blocks);
            prop_assert!(a <= b);
            prop_assert!(a.to_u256() >= U256::from(1u8) && a <= limit);
        }

        /// No input panics or escapes the bounds.
        #[test]
        fn asert_never_panics(anchor in any::<[u8; 32]>(), limit in any::<[u8; 32]>(), ms in any::<i128>(), blocks in any::<u64>(), t in any::<u64>(), h in any::<u64>()) {
            let out = asert_target(Target(anchor), Target(limit), AsertParams { target_block_time_ms: t, half_life_ms: h }, ms, blocks);
            prop_assert!(out <= Target(limit).max(Target::from_u256(U256::from(1u8))));
        }
    }

    #[test]
    fn asert_on_schedule_keeps_target_and_one_half_life_doubles() {
        let limit = Target::from_difficulty_bits(1);
        let anchor = Target::from_difficulty_bits(20);
        let p = AsertParams {
            target_block_time_ms: 10_000,
            half_life_ms: 120_000,
        };
        assert_eq!(asert_target(anchor, limit, p, 100_000, 10), anchor);
        let late = asert_target(anchor, limit, p, 100_000 + 120_000, 10);
        assert_eq!(late.to_u256(), anchor.to_u256() * U256::from(2u8));
        let early = asert_target(anchor, limit, p, 100_000 - 120_000, 10);
        assert_eq!(early.to_u256(), anchor.to_u256() / U256::from(2u8));
        // far behind schedule: clamps at the limit
        assert_eq!(asert_target(anchor, limit, p, i128::MAX, 0), limit);
        // far ahead: clamps at 1
        assert_eq!(
            asert_target(anchor, limit, p, i128::MIN, 0).to_u256(),
            U256::from(1u8)
        );
    }
}
