//! Transfers: the one kind of user transaction.
//!
//! # Consensus
//! A transfer moves `amount` from the account of `from` (a public key) to
//! `to`, pays `fee` to the miner, and must carry the sender's next `nonce`.
//! It is signed with ed25519 over `"cairn/transfer/v1" || 0x00 || borsh(transfer)`;
//! the chain id inside the signed bytes means a transfer signed for one
//! network is invalid on every other.
//!
//! Signatures are checked with `verify_strict` and nothing else: it rejects
//! non-canonical `s`, small-order public keys and small-order `R`, so nobody
//! but the signer can produce a second valid encoding of a transfer, and its
//! id (the hash of its full encoding, signature included) is unique.

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::address::{Address, PublicKey, Signature};
use crate::amount::Amount;
use crate::encoding::{self, DecodeError};
use crate::hash::{TxId, tagged};

/// Domain tag of the signed bytes.
pub const SIGNING_TAG: &str = "cairn/transfer/v1";

/// The unsigned content of a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Transfer {
    /// The network this transfer is valid on.
    pub chain_id: u64,
    /// The sender's public key; the sending account is its address.
    pub from: PublicKey,
    pub to: Address,
    pub amount: Amount,
    pub fee: Amount,
    /// Must equal the sender account's nonce (its count of sent transfers).
    pub nonce: u64,
}

/// A transfer with its signature: what travels on the wire and into blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct SignedTransfer {
    pub transfer: Transfer,
    pub signature: Signature,
}

/// Encoded size of a signed transfer: every field is fixed-size.
pub const SIGNED_TRANSFER_BYTES: usize = 8 + 32 + 20 + 8 + 8 + 8 + 64;

/// Why a transfer is invalid on its own, before looking at any account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("transfer is for chain id {found}, but this network's chain id is {expected}")]
    WrongChainId { expected: u64, found: u64 },
    #[error("transfer amount is zero; send at least one base unit")]
    ZeroAmount,
    #[error("fee {fee} is below the minimum fee {minimum} (base units)")]
    FeeBelowMinimum { fee: Amount, minimum: Amount },
    #[error("amount {amount} plus fee {fee} overflows")]
    AmountOverflow { amount: Amount, fee: Amount },
    #[error("signature is invalid: {0}")]
    BadSignature(String),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl Transfer {
    /// The bytes the sender signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SIGNING_TAG.len() + 1 + SIGNED_TRANSFER_BYTES);
        out.extend_from_slice(SIGNING_TAG.as_bytes());
        out.push(0);
        out.extend_from_slice(&encoding::encode(self));
        out
    }

    /// The sending account.
    pub fn sender(&self) -> Address {
        Address::from_public_key(&self.from)
    }

    /// Amount plus fee: what leaves the sender's account.
    pub fn total_cost(&self) -> Option<Amount> {
        self.amount.checked_add(self.fee)
    }

    /// Signs with `key`. The caller sets `from` to `key`'s public key; a
    /// mismatch yields a transfer that fails verification.
    pub fn sign(self, key: &SigningKey) -> SignedTransfer {
        let sig = key.sign(&self.signing_bytes());
        SignedTransfer {
            transfer: self,
            signature: Signature(sig.to_bytes()),
        }
    }
}

impl SignedTransfer {
    /// The transfer id: a hash of the whole encoding, signature included.
    pub fn id(&self) -> TxId {
        TxId(tagged("cairn/txid/v1", &[&encoding::encode(self)]))
    }

    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// Decodes one transfer from exactly its encoding.
    pub fn decode(bytes: &[u8]) -> Result<SignedTransfer, TransferError> {
        Ok(encoding::decode("transfer", bytes, SIGNED_TRANSFER_BYTES)?)
    }

    pub fn sender(&self) -> Address {
        self.transfer.sender()
    }

    /// Stateless checks other than the signature: chain id, amounts, fee.
    pub fn check(&self, chain_id: u64, min_fee: Amount) -> Result<(), TransferError> {
        let t = &self.transfer;
        if t.chain_id != chain_id {
            return Err(TransferError::WrongChainId {
                expected: chain_id,
                found: t.chain_id,
            });
        }
        if t.amount == Amount::ZERO {
            return Err(TransferError::ZeroAmount);
        }
        if t.fee < min_fee {
            return Err(TransferError::FeeBelowMinimum {
                fee: t.fee,
                minimum: min_fee,
            });
        }
        if t.total_cost().is_none() {
            return Err(TransferError::AmountOverflow {
                amount: t.amount,
                fee: t.fee,
            });
        }
        Ok(())
    }

    /// Verifies the signature with `verify_strict`, the only rule used on
    /// every path (mempool, blocks, sync).
    pub fn verify_signature(&self) -> Result<(), TransferError> {
        let key = VerifyingKey::from_bytes(&self.transfer.from.0)
            .map_err(|_| TransferError::BadSignature("sender key is not a valid point".into()))?;
        let sig = ed25519_dalek::Signature::from_bytes(&self.signature.0);
        key.verify_strict(&self.transfer.signing_bytes(), &sig)
            .map_err(|e| TransferError::BadSignature(e.to_string()))
    }
}

/// The public key of a signing key, as a consensus type.
pub fn public_key(key: &SigningKey) -> PublicKey {
    PublicKey(key.verifying_key().to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn transfer(key: &SigningKey, nonce: u64) -> Transfer {
        Transfer {
            chain_id: 7,
            from: public_key(key),
            to: Address([3; 20]),
            amount: Amount(1000),
            fee: Amount(10),
            nonce,
        }
    }

    #[test]
    fn signed_transfer_verifies_and_has_fixed_size() {
        let k = key(1);
        let s = transfer(&k, 0).sign(&k);
        assert!(s.verify_signature().is_ok());
        assert_eq!(s.encode().len(), SIGNED_TRANSFER_BYTES);
        assert_eq!(SignedTransfer::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn wrong_signer_is_rejected() {
        let s = transfer(&key(1), 0).sign(&key(2));
        assert!(matches!(
            s.verify_signature(),
            Err(TransferError::BadSignature(_))
        ));
    }

    #[test]
    fn non_canonical_s_is_rejected() {
        // s + L encodes the same scalar; plain verification of the group
        // equation would accept it, giving a second id for one transfer.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let k = key(1);
        let mut s = transfer(&k, 0).sign(&k);
        let mut carry = 0u16;
        for (i, l) in L.iter().enumerate() {
            let v = u16::from(s.signature.0[32 + i]) + u16::from(*l) + carry;
            s.signature.0[32 + i] = v as u8;
            carry = v >> 8;
        }
        assert_eq!(carry, 0, "s + L fits in 32 bytes for this key");
        assert!(matches!(
            s.verify_signature(),
            Err(TransferError::BadSignature(_))
        ));
    }

    #[test]
    fn small_order_key_and_r_are_rejected() {
        // A = identity, R = identity, s = 0 satisfies the cofactorless
        // equation sB = R + kA for every message: plain `verify` accepts it.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let t = Transfer {
            chain_id: 7,
            from: PublicKey(identity),
            to: Address([3; 20]),
            amount: Amount(1),
            fee: Amount(1),
            nonce: 0,
        };
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&identity);
        let forged = SignedTransfer {
            transfer: t,
            signature: Signature(sig),
        };
        let vk = VerifyingKey::from_bytes(&identity).unwrap();
        let dalek_sig = ed25519_dalek::Signature::from_bytes(&sig);
        use ed25519_dalek::Verifier;
        assert!(
            vk.verify(&t.signing_bytes(), &dalek_sig).is_ok(),
            "the forgery passes non-strict verification"
        );
        assert!(matches!(
            forged.verify_signature(),
            Err(TransferError::BadSignature(_))
        ));
    }

    #[test]
    fn stateless_checks_name_the_problem() {
        let k = key(1);
        let mut t = transfer(&k, 0);
        assert_eq!(
            t.sign(&k).check(8, Amount(1)),
            Err(TransferError::WrongChainId {
                expected: 8,
                found: 7
            })
        );
        assert_eq!(
            t.sign(&k).check(7, Amount(11)),
            Err(TransferError::FeeBelowMinimum {
                fee: Amount(10),
                minimum: Amount(11)
            })
        );
        t.amount = Amount(0);
        assert_eq!(
            t.sign(&k).check(7, Amount(1)),
            Err(TransferError::ZeroAmount)
        );
        t.amount = Amount(u64::MAX);
        assert!(matches!(
            t.sign(&k).check(7, Amount(1)),
            Err(TransferError::AmountOverflow { .. })
        ));
    }

    #[test]
    fn trailing_and_short_bytes_are_rejected() {
        let k = key(1);
        let mut bytes = transfer(&k, 0).sign(&k).encode();
        bytes.push(0);
        assert!(SignedTransfer::decode(&bytes).is_err());
        bytes.truncate(SIGNED_TRANSFER_BYTES - 1);
        assert!(SignedTransfer::decode(&bytes).is_err());
    }

    proptest! {
        /// Any single bit flip in a signed transfer breaks it or changes its id.
        #[test]
        fn bit_flips_are_detected(nonce in any::<u64>(), bit in 0usize..SIGNED_TRANSFER_BYTES * 8) {
            let k = key(5);
            let s = transfer(&k, nonce).sign(&k);
            let mut bytes = s.encode();
            bytes[bit / 8] ^= 1 << (bit % 8);
            let flipped = SignedTransfer::decode(&bytes).unwrap();
            prop_assert!(flipped.verify_signature().is_err());
            prop_assert_ne!(flipped.id(), s.id());
        }

        /// Encoding is canonical: decode then encode gives back the bytes.
        #[test]
        fn encoding_is_canonical(bytes in proptest::collection::vec(any::<u8>(), SIGNED_TRANSFER_BYTES)) {
            let t = SignedTransfer::decode(&bytes).unwrap();
            prop_assert_eq!(t.encode(), bytes);
        }
    }
}
