//! Sync progress: blocks fetched toward the validated header target, never
//! the node's own mining.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far a sync has come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncProgress {
    /// Blocks of the target chain the node has (the target's height minus
    /// the blocks still to fetch).
    pub height: u64,
    /// Height of the best validated header (with more work than the tip).
    pub target_height: u64,
    /// Blocks fetched per second, over the last ten seconds.
    pub blocks_per_sec: u64,
    /// Estimated seconds left, when a rate is known.
    pub eta_secs: Option<u64>,
}

/// Counts fetched blocks over a sliding window.
pub struct RateMeter {
    samples: VecDeque<(Instant, u64)>,
    total: u64,
    window: Duration,
}

impl Default for RateMeter {
    fn default() -> Self {
        RateMeter {
            samples: VecDeque::new(),
            total: 0,
            window: Duration::from_secs(10),
        }
    }
}

impl RateMeter {
    /// `n` more blocks were fetched and stored.
    pub fn add(&mut self, n: u64, now: Instant) {
        self.total += n;
        self.samples.push_back((now, self.total));
        while self.samples.len() > 2
            && self
                .samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > self.window)
        {
            self.samples.pop_front();
        }
    }

    /// Blocks per second over the window (0 before two samples).
    pub fn per_sec(&self, now: Instant) -> u64 {
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, n0)), Some((_, n1))) if now > *t0 => {
                let ms = now.duration_since(*t0).as_millis().max(1) as u64;
                (n1 - n0).saturating_mul(1000) / ms
            }
            _ => 0,
        }
    }
}

/// The progress toward `target_height` with `remaining` blocks to fetch.
pub fn progress(target_height: u64, remaining: u64, rate: u64) -> SyncProgress {
    SyncProgress {
        height: target_height.saturating_sub(remaining),
        target_height,
        blocks_per_sec: rate,
        eta_secs: (rate > 0).then(|| remaining.div_ceil(rate)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta() {
        let t = Instant::now();
        let mut m = RateMeter::default();
        m.add(0, t);
        m.add(100, t + Duration::from_secs(1));
        assert_eq!(m.per_sec(t + Duration::from_secs(1)), 100);
        let p = progress(1000, 300, 100);
        assert_eq!(p.height, 700);
        assert_eq!(p.eta_secs, Some(3));
        assert_eq!(progress(10, 0, 0).eta_secs, None);
    }
}
