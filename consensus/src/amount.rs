//! Amounts of coin, in integer base units.
//!
//! # Consensus
//! Every amount is a `u64` count of base units and every operation on it is
//! checked: an overflow is an error, never a wrap. There is no floating point
//! anywhere; conversion to and from decimal text is exact string arithmetic.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Base units in one coin (eight decimal places).
pub const COIN: u64 = 100_000_000;
/// Decimal places of one coin.
pub const DECIMALS: usize = 8;

/// An amount of coin in base units.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(transparent)]
pub struct Amount(pub u64);

/// Error parsing an amount written in coins.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountParseError {
    #[error("amount is empty")]
    Empty,
    #[error("amount {0:?} is not a decimal number of coins (like 12 or 0.5)")]
    Invalid(String),
    #[error(
        "amount {0:?} has more than {DECIMALS} decimal places; the smallest unit is 0.00000001"
    )]
    TooManyDecimals(String),
    #[error("amount {0:?} is larger than the largest representable amount")]
    TooLarge(String),
}

impl Amount {
    pub const ZERO: Amount = Amount(0);
    pub const MAX: Amount = Amount(u64::MAX);

    /// `n` whole coins, or `None` if that overflows.
    pub fn from_coins(n: u64) -> Option<Amount> {
        n.checked_mul(COIN).map(Amount)
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// Parses a decimal number of coins such as `12`, `0.5` or `1.00000001`.
    /// Exact: rejects more than eight decimals instead of rounding.
    pub fn parse_coins(s: &str) -> Result<Amount, AmountParseError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(AmountParseError::Empty);
        }
        let (whole, frac) = match t.split_once('.') {
            Some((w, f)) => (w, f),
            None => (t, ""),
        };
        let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
            return Err(AmountParseError::Invalid(s.to_string()));
        }
        let frac_trimmed = frac.trim_end_matches('0');
        if frac_trimmed.len() > DECIMALS {
            return Err(AmountParseError::TooManyDecimals(s.to_string()));
        }
        let too_large = || AmountParseError::TooLarge(s.to_string());
        let whole_units = if whole.is_empty() {
            0
        } else {
            whole
                .parse::<u64>()
                .map_err(|_| too_large())?
                .checked_mul(COIN)
                .ok_or_else(too_large)?
        };
        let mut frac_units: u64 = 0;
        for (i, b) in frac_trimmed.bytes().enumerate() {
            let place = 10u64.pow((DECIMALS - 1 - i) as u32);
            frac_units += u64::from(b - b'0') * place;
        }
        whole_units
            .checked_add(frac_units)
            .map(Amount)
            .ok_or_else(too_large)
    }

    /// The amount in coins, with only as many decimals as needed (`1.5`, `3`).
    pub fn to_coins_string(self) -> String {
        let whole = self.0 / COIN;
        let frac = self.0 % COIN;
        if frac == 0 {
            whole.to_string()
        } else {
            let f = format!("{frac:0width$}", width = DECIMALS);
            format!("{whole}.{}", f.trim_end_matches('0'))
        }
    }
}

impl fmt::Display for Amount {
    /// Base units, as an integer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Amount {
    type Err = AmountParseError;
    /// Parses coins with decimals; see [`Amount::parse_coins`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Amount::parse_coins(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_exactly() {
        assert_eq!(Amount::parse_coins("1"), Ok(Amount(COIN)));
        assert_eq!(Amount::parse_coins("0.5"), Ok(Amount(COIN / 2)));
        assert_eq!(Amount::parse_coins(".5"), Ok(Amount(COIN / 2)));
        assert_eq!(Amount::parse_coins("2."), Ok(Amount(2 * COIN)));
        assert_eq!(Amount::parse_coins("0.00000001"), Ok(Amount(1)));
        assert_eq!(Amount::parse_coins("1.100000000"), Ok(Amount(110_000_000)));
        assert_eq!(
            Amount::parse_coins("0.000000001"),
            Err(AmountParseError::TooManyDecimals("0.000000001".into()))
        );
        assert!(matches!(
            Amount::parse_coins("-1"),
            Err(AmountParseError::Invalid(_))
        ));
        assert!(matches!(
            Amount::parse_coins("1e3"),
            Err(AmountParseError::Invalid(_))
        ));
        assert!(matches!(
            Amount::parse_coins("."),
            Err(AmountParseError::Invalid(_))
        ));
        assert!(matches!(
            Amount::parse_coins("1.2.3"),
            Err(AmountParseError::Invalid(_))
        ));
        assert_eq!(Amount::parse_coins(" "), Err(AmountParseError::Empty));
        assert!(matches!(
            Amount::parse_coins("184467440737.09551616"),
            Err(AmountParseError::TooLarge(_))
        ));
        assert_eq!(
            Amount::parse_coins("184467440737.09551615"),
            Ok(Amount(u64::MAX))
        );
    }

    #[test]
    fn formats_exactly() {
        assert_eq!(Amount(COIN).to_coins_string(), "1");
        assert_eq!(Amount(150_000_000).to_coins_string(), "1.5");
        assert_eq!(Amount(1).to_coins_string(), "0.00000001");
        assert_eq!(Amount(0).to_coins_string(), "0");
    }

    proptest! {
        #[test]
        fn coins_text_round_trips(units in any::<u64>()) {
            let a = Amount(units);
            prop_assert_eq!(Amount::parse_coins(&a.to_coins_string()), Ok(a));
        }
    }
}
