//! Link faults for experiments: a per-peer filter and shaper applied to
//! whole messages on send (the `testnet partition` and `testnet link`
//! commands set them over RPC). No root, no `tc`: it works on any host.
//!
//! A partition (`drop`) also closes existing connections and refuses new
//! ones with the peer, without counting against it: a link fault never
//! causes a ban or a backoff that outlives it.

use serde::{Deserialize, Serialize};

/// How messages to one peer are shaped. The default passes everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkRule {
    /// Nothing passes: the peers are partitioned.
    pub drop: bool,
    /// Every message waits this long before it is sent.
    pub delay_ms: u64,
    /// Plus a uniformly random extra wait up to this long.
    pub jitter_ms: u64,
    /// This many messages in a million are lost.
    pub loss_ppm: u32,
    /// At most this many bits per second (0: no limit).
    pub rate_bps: u64,
}

impl LinkRule {
    pub fn is_clear(&self) -> bool {
        *self == LinkRule::default()
    }

    /// Whether a message is lost (by a random draw).
    pub fn loses(&self, rng: &mut impl rand::Rng) -> bool {
        self.drop || (self.loss_ppm > 0 && rng.gen_range(0..1_000_000) < self.loss_ppm)
    }

    /// How long a message waits before it is sent.
    pub fn delay(&self, rng: &mut impl rand::Rng) -> std::time::Duration {
        let jitter = if self.jitter_ms > 0 {
            rng.gen_range(0..=self.jitter_ms)
        } else {
            0
        };
        std::time::Duration::from_millis(self.delay_ms.saturating_add(jitter))
    }

    /// How long sending `bytes` occupies the link.
    pub fn transmit_time(&self, bytes: usize) -> std::time::Duration {
        if self.rate_bps == 0 {
            return std::time::Duration::ZERO;
        }
        let micros = (bytes as u128 * 8 * 1_000_000) / u128::from(self.rate_bps);
        std::time::Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn shaping() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert!(LinkRule::default().is_clear());
        assert!(!LinkRule::default().loses(&mut rng));
        let half = LinkRule {
            loss_ppm: 500_000,
            ..Default::default()
        };
        let lost = (0..10_000).filter(|_| half.loses(&mut rng)).count();
        assert!((4_000..6_000).contains(&lost), "{lost}");
        let slow = LinkRule {
            rate_bps: 8_000,
            delay_ms: 10,
            jitter_ms: 5,
            ..Default::default()
        };
        assert_eq!(slow.transmit_time(1000).as_millis(), 1000);
        let d = slow.delay(&mut rng).as_millis();
        assert!((10..=15).contains(&d));
    }
}
