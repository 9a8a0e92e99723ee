//! Peer addresses and their network classes.
//!
//! Addresses learned from peers are always IP socket addresses (the wire
//! format cannot carry host names); only the operator (`--peer`,
//! `net_addPeer`, bootnodes) may name a host, which is resolved when dialled.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// Where to dial a peer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerAddr {
    Ip(SocketAddr),
    /// A host name given by the operator, resolved at dial time.
    Host {
        host: String,
        port: u16,
    },
}

/// Why a `host:port` text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrParseError {
    #[error("{0:?} is not host:port (for IPv6 write [addr]:port)")]
    Shape(String),
    #[error("{0:?} has no valid port (1-65535)")]
    Port(String),
    #[error("{0:?} is not a valid host name")]
    Host(String),
}

impl FromStr for PeerAddr {
    type Err = AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(a) = s.parse::<SocketAddr>() {
            if a.port() == 0 {
                return Err(AddrParseError::Port(s.into()));
            }
            return Ok(PeerAddr::Ip(a));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| AddrParseError::Shape(s.into()))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| AddrParseError::Port(s.into()))?;
        let valid_host = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid_host {
            return Err(AddrParseError::Host(s.into()));
        }
        Ok(PeerAddr::Host {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Ip(a) => write!(f, "{a}"),
            PeerAddr::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl PeerAddr {
    /// The IP socket address, when this is not a host name.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Ip(a) => Some(*a),
            PeerAddr::Host { .. } => None,
        }
    }
}

/// The kind of network an IP address belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetClass {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918, carrier-grade NAT (100.64/10), link-local, IPv6 unique-local.
    Private,
    /// Reachable on the internet.
    Public,
    /// Unspecified, multicast, broadcast, documentation and reserved ranges:
    /// never dialled.
    Unroutable,
}

/// The class of `ip` (an IPv4-mapped IPv6 address counts as IPv4).
pub fn classify(ip: IpAddr) -> NetClass {
    match canonical(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> NetClass {
    let o = ip.octets();
    if ip.is_loopback() {
        NetClass::Loopback
    } else if ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || o[0] == 0
        || o[0] >= 240
    {
        NetClass::Unroutable
    } else if ip.is_private() || ip.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        NetClass::Private
    } else {
        NetClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> NetClass {
    let seg = ip.segments();
    if ip.is_loopback() {
        NetClass::Loopback
    } else if ip.is_unspecified() || ip.is_multicast() || (seg[0] == 0x2001 && seg[1] == 0x0db8) {
        NetClass::Unroutable
    } else if (seg[0] & 0xfe00) == 0xfc00 || (seg[0] & 0xffc0) == 0xfe80 {
        NetClass::Private
    } else {
        NetClass::Public
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The group an address counts in for diversity limits (address buckets,
/// outbound and inbound limits, eviction). Public IPv4: its /16; public
/// IPv6: its /32 (as Bitcoin Core). Private addresses: the exact IP, and
/// loopback: the exact IP and port, so that nodes on one machine or one LAN
/// (a private testnet) still count as distinct.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NetGroup {
    V4Slash16([u8; 2]),
    V6Slash32([u8; 4]),
    Host(IpAddr),
    Local(SocketAddr),
}

pub fn net_group(addr: &SocketAddr) -> NetGroup {
    let ip = canonical(addr.ip());
    match (classify(ip), ip) {
        (NetClass::Loopback, ip) => NetGroup::Local(SocketAddr::new(ip, addr.port())),
        (NetClass::Private | NetClass::Unroutable, ip) => NetGroup::Host(ip),
        (NetClass::Public, IpAddr::V4(v4)) => {
            let o = v4.octets();
            NetGroup::V4Slash16([o[0], o[1]])
        }
        (NetClass::Public, IpAddr::V6(v6)) => {
            let o = v6.octets();
            NetGroup::V6Slash32([o[0], o[1], o[2], o[3]])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_classify() {
        assert_eq!(
            "127.0.0.1:7541".parse::<PeerAddr>().unwrap(),
            PeerAddr::Ip("127.0.0.1:7541".parse().unwrap())
        );
        assert!(matches!(
            "Seed.Example.org:7641".parse::<PeerAddr>().unwrap(),
            PeerAddr::Host { ref host, port: 7641 } if host == "seed.example.org"
        ));
        assert!("[::1]:7541".parse::<PeerAddr>().is_ok());
        for bad in ["", "nohost", ":80", "h:0", "h:70000", "a b:1", "::1:80x"] {
            assert!(bad.parse::<PeerAddr>().is_err(), "{bad}");
        }
        let c = |s: &str| classify(s.parse().unwrap());
        assert_eq!(c("127.0.0.1"), NetClass::Loopback);
        assert_eq!(c("10.1.2.3"), NetClass::Private);
        assert_eq!(c("192.168.1.1"), NetClass::Private);
        assert_eq!(c("100.64.0.1"), NetClass::Private);
        assert_eq!(c("169.254.0.1"), NetClass::Private);
        assert_eq!(c("8.8.8.8"), NetClass::Public);
        assert_eq!(c("0.0.0.0"), NetClass::Unroutable);
        assert_eq!(c("224.0.0.1"), NetClass::Unroutable);
        assert_eq!(c("::ffff:10.0.0.1"), NetClass::Private);
        assert_eq!(c("fd00::1"), NetClass::Private);
        assert_eq!(c("2001:db8::1"), NetClass::Unroutable);
        assert_eq!(c("2a00::1"), NetClass::Public);
    }

    #[test]
    fn groups() {
        let g = |s: &str| net_group(&s.parse().unwrap());
        assert_eq!(g("8.8.1.1:1"), g("8.8.200.3:2"));
        assert_ne!(g("8.8.1.1:1"), g("8.9.1.1:1"));
        assert_ne!(g("127.0.0.1:1"), g("127.0.0.1:2"));
        assert_ne!(g("10.0.0.1:1"), g("10.0.0.2:1"));
        assert_eq!(g("10.0.0.1:1"), g("10.0.0.1:2"));
    }
}
