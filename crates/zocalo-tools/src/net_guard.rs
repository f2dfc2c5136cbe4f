//! The SSRF guard of `web_fetch`: which addresses it may connect to.
//!
//! By default only public unicast addresses: not loopback, private (RFC 1918, IPv6 unique
//! local), link-local (which holds the cloud metadata service, 169.254.169.254), CGNAT,
//! unspecified, multicast, broadcast, documentation, benchmarking or reserved ranges, nor
//! IPv6 addresses that embed one of those IPv4 addresses (IPv4-mapped and -compatible, NAT64,
//! 6to4, Teredo). The check is on addresses, after resolving names, and `web_fetch` then
//! connects to exactly the addresses it checked (see [`crate::web_fetch`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Which addresses `web_fetch` may connect to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Allow every address (`[tools.web_fetch] allow_private = true`): for a machine whose
    /// local network holds nothing to protect.
    pub allow_private: bool,
    /// These exact addresses (IP and port) are allowed even though they are not public: one
    /// trusted local service. The tests use it to stand in for a public server.
    pub also_allow: Vec<SocketAddr>,
}

impl AddressPolicy {
    /// Only public addresses.
    pub fn public_only() -> Self {
        Self::default()
    }

    /// Every address.
    pub fn allow_all() -> Self {
        Self {
            allow_private: true,
            also_allow: Vec::new(),
        }
    }

    /// Why `addr` may not be connected to, or `None` when it may.
    pub fn refusal(&self, addr: SocketAddr) -> Option<String> {
        if self.allow_private || self.also_allow.contains(&addr) {
            return None;
        }
        non_public(addr.ip()).map(|why| format!("{} is {why}", addr.ip()))
    }
}

/// What kind of non-public address `ip` is, or `None` for a public unicast address.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "an unspecified (\"this network\") address"),
        ([10, 0, 0, 0], 8, "a private address"),
        ([100, 64, 0, 0], 10, "a carrier-grade NAT (shared) address"),
        ([127, 0, 0, 0], 8, "a loopback address"),
        (
            [169, 254, 0, 0],
            16,
            "a link-local address (where cloud metadata services live)",
        ),
        ([172, 16, 0, 0], 12, "a private address"),
        ([192, 0, 0, 0], 24, "an IETF protocol address"),
        ([192, 0, 2, 0], 24, "a documentation address"),
        ([192, 88, 99, 0], 24, "a reserved (6to4 relay) address"),
        ([192, 168, 0, 0], 16, "a private address"),
        ([198, 18, 0, 0], 15, "a benchmarking address"),
        ([198, 51, 100, 0], 24, "a documentation address"),
        ([203, 0, 113, 0], 24, "a documentation address"),
        ([224, 0, 0, 0], 4, "a multicast address"),
        ([240, 0, 0, 0], 4, "a reserved or broadcast address"),
    ];
    RANGES
        .iter()
        .find(|(net, bits, _)| in_v4(ip, *net, *bits))
        .map(|(_, _, why)| *why)
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("the unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    let bits = u128::from(ip);
    // IPv6 forms that carry an IPv4 address: judge the IPv4 address.
    let embedded = |v4: u32| {
        non_public_v4(Ipv4Addr::from(v4)).map(|_| "an IPv6 form of a non-public IPv4 address")
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        return embedded(u32::from(v4));
    }
    if in_v6(ip, [0; 8], 96) {
        // IPv4-compatible (deprecated): ::a.b.c.d
        return embedded(bits as u32);
    }
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        // NAT64 well-known prefix
        return embedded(bits as u32);
    }
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        // 6to4: 2002:AABB:CCDD::/48
        return embedded((bits >> 80) as u32);
    }
    const RANGES: &[([u16; 8], u32, &str)] = &[
        (
            [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
            48,
            "a local NAT64 address",
        ),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "a discard-only address"),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "a Teredo address"),
        (
            [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
            32,
            "a documentation address",
        ),
        (
            [0xfc00, 0, 0, 0, 0, 0, 0, 0],
            7,
            "a private (unique local) address",
        ),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "a link-local address"),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "a site-local address"),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "a multicast address"),
    ];
    RANGES
        .iter()
        .find(|(net, bits, _)| in_v6(ip, *net, *bits))
        .map(|(_, _, why)| *why)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges() {
        for bad in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(non_public(ip(bad)).is_some(), "{bad} should be refused");
        }
        for good in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.255.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4007:80f::200e",
            "::ffff:1.1.1.1",
            "64:ff9b::808:808",
            "2002:0808:0808::",
        ] {
            assert_eq!(non_public(ip(good)), None, "{good} should be allowed");
        }
    }

    #[test]
    fn policy() {
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        assert!(AddressPolicy::public_only()
            .refusal(a)
            .unwrap()
            .contains("loopback"));
        assert_eq!(AddressPolicy::allow_all().refusal(a), None);
        let one = AddressPolicy {
            allow_private: false,
            also_allow: vec![a],
        };
        assert_eq!(one.refusal(a), None);
        assert!(one.refusal(b).is_some());
    }
}
