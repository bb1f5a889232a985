//! Which network addresses a request may connect to.
//!
//! Checked after DNS resolution, on every resolved address, and the connection is made to
//! an address that passed (the HTTP client's resolver returns only those), so a name that
//! resolves to an internal address cannot be used to reach it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The operator's choice about non-public destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddressPolicy {
    /// Allow loopback, private, link-local, CGNAT and unique-local destinations. For tests
    /// and for deployments whose upstreams are internal. Unspecified and multicast
    /// addresses stay refused.
    pub allow_private: bool,
}

impl AddressPolicy {
    /// `Ok(())` if `ip` may be connected to, otherwise why not.
    pub fn check(&self, ip: IpAddr) -> Result<(), &'static str> {
        match forbidden_reason(ip) {
            None => Ok(()),
            Some(reason @ ("unspecified" | "multicast" | "broadcast")) => Err(reason),
            Some(_) if self.allow_private => Ok(()),
            Some(reason) => Err(reason),
        }
    }
}

/// Why `ip` is not a public unicast address, or `None` if it is one.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => {
            // IPv4-mapped and -compatible forms reach the IPv4 address: judge that.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_reason(v4);
            }
            v6_reason(v6)
        }
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("carrier-grade NAT")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if a >= 240
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b == 18 || b == 19))
    {
        Some("reserved")
    } else if ip.is_documentation() {
        Some("documentation")
    } else {
        None
    }
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let seg0 = ip.segments()[0];
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if (seg0 & 0xfe00) == 0xfc00 {
        Some("unique-local")
    } else if (seg0 & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if (seg0 & 0xffc0) == 0xfec0 {
        Some("site-local")
    } else if seg0 == 0x2001 && ip.segments()[1] == 0x0db8 {
        Some("documentation")
    } else if ip.segments()[..6] == [0, 0, 0, 0, 0, 0] {
        // Deprecated IPv4-compatible addresses (::a.b.c.d).
        Some("reserved")
    } else if seg0 == 0x0064 && ip.segments()[1] == 0xff9b {
        // NAT64 prefix: judged by the embedded IPv4 address.
        let o = ip.octets();
        v4_reason(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        AddressPolicy::default()
            .check(s.parse().expect("ip"))
            .is_err()
    }

    #[test]
    fn accepts_public_addresses() {
        for ok in ["1.1.1.1", "140.82.112.3", "2606:4700::1111", "100.128.0.1"] {
            assert!(!refused(ok), "{ok}");
        }
    }

    #[test]
    fn rejects_internal_addresses() {
        for bad in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "ff02::1",
        ] {
            assert!(refused(bad), "{bad}");
        }
    }

    #[test]
    fn accepts_private_when_operator_allows_but_never_unspecified() {
        let p = AddressPolicy {
            allow_private: true,
        };
        assert!(p.check("127.0.0.1".parse().expect("ip")).is_ok());
        assert!(p.check("::1".parse().expect("ip")).is_ok());
        assert!(p.check("0.0.0.0".parse().expect("ip")).is_err());
        assert!(p.check("::".parse().expect("ip")).is_err());
    }
}
