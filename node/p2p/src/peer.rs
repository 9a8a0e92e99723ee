//! What a peer can do wrong, and what it costs.
//!
//! Every misbehaviour disconnects at once (there are no scores to wait
//! for). Only clear protocol abuse bans, and never a peer that is local to
//! the operator (see `Manager::is_local`): garbage that breaks the framing
//! or the encoding, or headers, blocks and transfers that break the rules.
//! A refused, reset or slow connection is never misbehaviour.

use std::fmt;

/// Which side opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// A named penalty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    // ----- abuse: ban -----
    /// A frame over the size limit.
    OversizedFrame(String),
    /// A message that does not decode or breaks a list bound.
    Undecodable(String),
    /// A second `Hello`.
    SecondHello,
    /// Headers that break the rules (with valid proof of work) or build on
    /// an invalid block.
    InvalidHeaders(String),
    /// A block that breaks the rules.
    InvalidBlock(String),
    /// A transfer that is invalid whatever the state (bad signature, ...).
    InvalidTransfer(String),
    // ----- unhelpful: disconnect -----
    /// More messages of a kind than the rate limit allows.
    Flood(&'static str),
    /// Blocks nobody asked for, beyond the allowance.
    UnrequestedBlocks,
    /// Announced headers that never connect to anything we know.
    UnconnectingHeaders,
    /// Claimed more work in its handshake than its headers show.
    ClaimedWorkNotShown(String),
    /// A header chain that does not back its claims (low work past the
    /// budget, a second download that differs).
    UselessHeaders(String),
    /// A request it did not answer in time.
    Stalled(&'static str),
    /// It does not read what we send.
    SlowReader,
}

impl Misbehaviour {
    /// Whether this is clear abuse, worth a ban (for a peer not local to
    /// the operator).
    pub fn bans(&self) -> bool {
        matches!(
            self,
            Misbehaviour::OversizedFrame(_)
                | Misbehaviour::Undecodable(_)
                | Misbehaviour::SecondHello
                | Misbehaviour::InvalidHeaders(_)
                | Misbehaviour::InvalidBlock(_)
                | Misbehaviour::InvalidTransfer(_)
        )
    }

    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Misbehaviour::OversizedFrame(_) => "oversized_frame",
            Misbehaviour::Undecodable(_) => "undecodable",
            Misbehaviour::SecondHello => "second_hello",
            Misbehaviour::InvalidHeaders(_) => "invalid_headers",
            Misbehaviour::InvalidBlock(_) => "invalid_block",
            Misbehaviour::InvalidTransfer(_) => "invalid_transfer",
            Misbehaviour::Flood(_) => "flood",
            Misbehaviour::UnrequestedBlocks => "unrequested_blocks",
            Misbehaviour::UnconnectingHeaders => "unconnecting_headers",
            Misbehaviour::ClaimedWorkNotShown(_) => "claimed_work_not_shown",
            Misbehaviour::UselessHeaders(_) => "useless_headers",
            Misbehaviour::Stalled(_) => "stalled",
            Misbehaviour::SlowReader => "slow_reader",
        }
    }
}

impl fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misbehaviour::OversizedFrame(e) => write!(f, "oversized frame: {e}"),
            Misbehaviour::Undecodable(e) => write!(f, "{e}"),
            Misbehaviour::SecondHello => f.write_str("a second hello"),
            Misbehaviour::InvalidHeaders(e) => write!(f, "invalid headers: {e}"),
            Misbehaviour::InvalidBlock(e) => write!(f, "invalid block: {e}"),
            Misbehaviour::InvalidTransfer(e) => write!(f, "invalid transfer: {e}"),
            Misbehaviour::Flood(what) => write!(f, "flood of {what}"),
            Misbehaviour::UnrequestedBlocks => f.write_str("too many unrequested blocks"),
            Misbehaviour::UnconnectingHeaders => {
                f.write_str("announced headers that never connect to the chain")
            }
            Misbehaviour::ClaimedWorkNotShown(e) => write!(f, "{e}"),
            Misbehaviour::UselessHeaders(e) => write!(f, "useless headers: {e}"),
            Misbehaviour::Stalled(what) => write!(f, "stalled: {what} went unanswered"),
            Misbehaviour::SlowReader => f.write_str("does not read what it is sent"),
        }
    }
}

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed it.
    PeerClosed,
    /// A socket error (reset, broken pipe): nobody's fault.
    Io(String),
    /// The manager closed it; it logged why.
    Closed(String),
    /// The connection task found the peer misbehaving.
    Misbehaved(Misbehaviour),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("the peer closed the connection"),
            CloseReason::Io(e) => write!(f, "connection error: {e}"),
            CloseReason::Closed(why) => f.write_str(why),
            CloseReason::Misbehaved(m) => write!(f, "{m}"),
        }
    }
}
