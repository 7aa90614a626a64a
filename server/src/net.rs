//! Who is asking: the client address behind trusted proxies, and whether an Origin may connect.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;
use axum::http::header::{HOST, ORIGIN};

/// An address block such as `10.0.0.0/8` or a single address (`192.0.2.7`, `::1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a string is not an address or address block.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpNetError {
    /// The part before `/` is not an IP address.
    Address(String),
    /// The prefix length is not a number within the address's bits.
    Prefix(String),
}

impl fmt::Display for IpNetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address(s) => write!(f, "{s:?} is not an ip address"),
            Self::Prefix(s) => write!(f, "{s:?} is not a valid prefix length"),
        }
    }
}

impl std::error::Error for IpNetError {}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| IpNetError::Address(addr.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(IpNetError::Prefix(p.to_owned())),
            },
        };
        Ok(Self { addr, prefix })
    }
}

impl IpNet {
    /// Whether `ip` lies in this block (IPv4-mapped IPv6 addresses count as IPv4).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(net)), self.prefix, 32)
                    == masked(u128::from(u32::from(ip)), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128)
                    == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn masked(bits: u128, prefix: u8, width: u32) -> u128 {
    let host_bits = width - u32::from(prefix);
    if host_bits >= 128 {
        0
    } else {
        bits >> host_bits
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A client address as the server's per-client limits count it: an IPv4 address, or the /64
/// that an IPv6 address lies in (one subscriber's network: a host there can use any of its 2^64
/// addresses at no cost, so counting single IPv6 addresses would limit nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientGroup {
    /// One IPv4 address (IPv4-mapped IPv6 addresses count as IPv4).
    V4(Ipv4Addr),
    /// The upper 64 bits of an IPv6 address.
    V6(u64),
}

impl ClientGroup {
    /// The group `ip` belongs to.
    #[must_use]
    pub fn of(ip: IpAddr) -> Self {
        match canonical(ip) {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => Self::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

impl fmt::Display for ClientGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(ip) => write!(f, "{ip}"),
            Self::V6(prefix) => {
                let net = std::net::Ipv6Addr::from(u128::from(*prefix) << 64);
                write!(f, "{net}/64")
            }
        }
    }
}

/// The address a request comes from.
///
/// `X-Forwarded-For` is believed only when the TCP peer is one of `trusted` proxies; then the
/// rightmost address in it that is not itself a trusted proxy is the client (entries further left
/// were written by the client and prove nothing).
#[must_use]
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer_ip = canonical(peer.ip());
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer_ip) {
        return peer_ip;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for entry in forwarded.iter().rev() {
        match entry.parse::<IpAddr>() {
            Ok(ip) if is_trusted(canonical(ip)) => continue,
            Ok(ip) => return canonical(ip),
            // A proxy we trust wrote garbage: we cannot tell who is behind it.
            Err(_) => return peer_ip,
        }
    }
    peer_ip
}

/// Which browser origins may open a WebSocket.
#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    allowed: Vec<String>,
}

impl OriginPolicy {
    /// A policy allowing the given origins (`scheme://host[:port]`), plus always the server's own
    /// host as the request names it.
    #[must_use]
    pub fn new<I, S>(allowed: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            allowed: allowed
                .into_iter()
                .filter_map(|o| origin_of(o.as_ref()))
                .collect(),
        }
    }

    /// Whether a request with these headers may connect.
    ///
    /// A request without an Origin header is allowed: browsers always send one on a WebSocket
    /// handshake, so its absence means a non-browser client, which could forge any Origin anyway;
    /// the check exists to stop other sites' pages, and the API key still has to be right.
    #[must_use]
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if self.allowed.contains(&origin) {
            return true;
        }
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase);
        match (origin.split_once("://"), host) {
            (Some((scheme, authority)), Some(host)) => {
                (scheme == "http" || scheme == "https") && authority == host
            }
            _ => false,
        }
    }
}

/// The origin (`scheme://host[:port]`, lower case) of a URL or origin string.
#[must_use]
pub fn origin_of(url: &str) -> Option<String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if scheme.is_empty() || authority.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{authority}").to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_str(v).expect("test header"));
        }
        map
    }

    #[test]
    fn nets_parse_and_match() {
        let net: IpNet = "10.0.0.0/8".parse().expect("valid");
        assert!(net.contains("10.1.2.3".parse().expect("ip")));
        assert!(!net.contains("11.0.0.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.0.0.1".parse().expect("ip")));
        let one: IpNet = "::1".parse().expect("valid");
        assert!(one.contains("::1".parse().expect("ip")));
        assert!(
            "0.0.0.0/0"
                .parse::<IpNet>()
                .expect("valid")
                .contains("1.2.3.4".parse().expect("ip"))
        );
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nope".parse::<IpNet>().is_err());
    }

    #[test]
    fn ipv6_groups_by_64_and_ipv4_by_address() {
        let group = |s: &str| ClientGroup::of(s.parse().expect("ip"));
        assert_eq!(group("2001:db8:1:2::1"), group("2001:db8:1:2:ffff::9"));
        assert_ne!(group("2001:db8:1:2::1"), group("2001:db8:1:3::1"));
        assert_ne!(group("192.0.2.1"), group("192.0.2.2"));
        assert_eq!(group("::ffff:192.0.2.1"), group("192.0.2.1"));
        assert_eq!(group("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(group("192.0.2.1").to_string(), "192.0.2.1");
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxy: SocketAddr = "10.0.0.2:5000".parse().expect("addr");
        let stranger: SocketAddr = "203.0.113.9:5000".parse().expect("addr");
        let trusted = ["10.0.0.0/8".parse().expect("net")];
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.4, 10.0.0.7")]);
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "198.51.100.4".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(client_ip(stranger, &h, &trusted), stranger.ip());
        assert_eq!(client_ip(proxy, &h, &[]), proxy.ip());
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy.ip());
    }

    #[test]
    fn origins() {
        let policy = OriginPolicy::new(["https://line.example.com/"]);
        let ok = headers(&[
            ("origin", "https://line.example.com"),
            ("host", "internal:7777"),
        ]);
        assert!(policy.allows(&ok));
        let same_host = headers(&[
            ("origin", "http://127.0.0.1:7777"),
            ("host", "127.0.0.1:7777"),
        ]);
        assert!(policy.allows(&same_host));
        let evil = headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:7777"),
        ]);
        assert!(!policy.allows(&evil));
        assert!(!policy.allows(&headers(&[("origin", "null"), ("host", "null")])));
        assert!(policy.allows(&HeaderMap::new()));
        assert_eq!(
            origin_of("HTTPS://A.b:8443/x?y"),
            Some("https://a.b:8443".into())
        );
    }
}
