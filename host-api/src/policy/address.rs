//! Which network addresses a request may connect to.
//!
//! Checked after DNS resolution, on every resolved address, and the connection is made to
//! an address that passed (the HTTP client's resolver returns only those), so a name that
//! resolves to an internal address cannot be used to reach it.
//!
//! Three layers, in order:
//! 1. Cloud metadata endpoints (169.254.169.254, fd00:ec2::254, 169.254.170.2,
//!    100.100.100.200, 192.0.0.192), in any IPv4-embedding IPv6 form, are refused always:
//!    no operator grant and no binding opens them.
//! 2. Public unicast addresses are allowed.
//! 3. A non-public address is allowed if an operator grant (a CIDR) covers it, or if every
//!    credential in the request has a binding with `allow_internal`. Unspecified,
//!    multicast and broadcast addresses are never allowed.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Most CIDR grants an [`AddressPolicy`] holds. The policy is `Copy` (the HTTP client's
/// resolver copies it into every lookup), so the grants live in a fixed array.
pub const MAX_GRANTS: usize = 32;

/// The operator's grants of non-public destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddressPolicy {
    grants: [Option<IpNet>; MAX_GRANTS],
}

/// Why a set of grants was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// More than [`MAX_GRANTS`] CIDRs.
    #[error("at most {MAX_GRANTS} network grants may be given ({given} were)")]
    TooMany {
        /// How many were given.
        given: usize,
    },
}

impl AddressPolicy {
    /// Public destinations only (the default).
    pub fn public_only() -> Self {
        Self::default()
    }

    /// Public destinations and loopback (127.0.0.0/8, ::1): for tests and local upstreams.
    pub fn loopback() -> Self {
        Self::from_nets(&[
            net(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
            net(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
        ])
    }

    /// Public destinations and every private-use range (loopback, RFC 1918, link-local,
    /// CGNAT, unique-local): what `allow_private: true` used to mean. Metadata endpoints
    /// stay refused.
    pub fn all_private() -> Self {
        let v4 = |a, b, len| net(IpAddr::V4(Ipv4Addr::new(a, b, 0, 0)), len);
        let v6 = |seg0, len| net(IpAddr::V6(Ipv6Addr::new(seg0, 0, 0, 0, 0, 0, 0, 0)), len);
        Self::from_nets(&[
            v4(127, 0, 8),
            v4(10, 0, 8),
            v4(172, 16, 12),
            v4(192, 168, 16),
            v4(169, 254, 16),
            v4(100, 64, 10),
            net(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
            v6(0xfc00, 7),
            v6(0xfe80, 10),
            v6(0xfec0, 10),
        ])
    }

    /// Public destinations and the non-public networks in `grants`.
    pub fn with_grants(grants: Vec<IpNet>) -> Result<Self, GrantError> {
        if grants.len() > MAX_GRANTS {
            return Err(GrantError::TooMany {
                given: grants.len(),
            });
        }
        Ok(Self::from_nets(&grants))
    }

    fn from_nets(nets: &[IpNet]) -> Self {
        let mut p = AddressPolicy::default();
        for (slot, n) in p.grants.iter_mut().zip(nets) {
            *slot = Some(n.trunc());
        }
        p
    }

    /// The operator's grants.
    pub fn grants(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.grants.iter().flatten().copied()
    }

    /// `Ok(())` if `ip` may be connected to by a request that carries no credential
    /// granting internal access, otherwise why not. Same as `check_with(ip, false)`.
    pub fn check(&self, ip: IpAddr) -> Result<(), &'static str> {
        self.check_with(ip, false)
    }

    /// `Ok(())` if `ip` may be connected to, otherwise why not. `internal_granted`: the
    /// request carries at least one credential and every credential it carries has a
    /// binding with `allow_internal` (pass `false` for a request without credentials).
    pub fn check_with(&self, ip: IpAddr, internal_granted: bool) -> Result<(), &'static str> {
        if is_cloud_metadata(ip) {
            return Err("cloud metadata");
        }
        match forbidden_reason(ip) {
            None => Ok(()),
            Some(reason @ ("unspecified" | "multicast" | "broadcast")) => Err(reason),
            Some(_) if self.granted(ip) || internal_granted => Ok(()),
            Some(reason) => Err(reason),
        }
    }

    fn granted(&self, ip: IpAddr) -> bool {
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.grants()
            .any(|g| g.contains(&ip) || mapped.is_some_and(|m| g.contains(&m)))
    }
}

fn net(ip: IpAddr, len: u8) -> IpNet {
    // Every call passes a prefix length valid for its address family.
    IpNet::new(ip, len).unwrap_or_else(|_| IpNet::from(ip))
}

const METADATA_V4: &[Ipv4Addr] = &[
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
    Ipv4Addr::new(169, 254, 170, 2),   // AWS ECS task metadata and credentials
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
    Ipv4Addr::new(192, 0, 0, 192),     // Oracle Cloud (legacy)
];

const METADATA_V6: &[Ipv6Addr] = &[
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254), // AWS IMDS over IPv6
];

/// Whether `ip` is a cloud metadata endpoint, directly or as an IPv4 address embedded in
/// an IPv6 one (mapped, compatible, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4).
pub fn is_cloud_metadata(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => METADATA_V4.contains(&v4),
        IpAddr::V6(v6) => {
            if METADATA_V6.contains(&v6) {
                return true;
            }
            let s = v6.segments();
            let o = v6.octets();
            let low32 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
            if s[0] == 0x0064 && s[1] == 0xff9b {
                // NAT64: the well-known /96 and the local-use 64:ff9b:1::/48, whose
                // translator may embed the IPv4 address at any RFC 6052 position.
                return nat64_positions(&o)
                    .iter()
                    .any(|v4| METADATA_V4.contains(v4));
            }
            // Mapped and compatible: low 32 bits.
            let embedded = if s[..6] == [0, 0, 0, 0, 0, 0xffff] || s[..6] == [0; 6] {
                Some(low32)
            } else if s[0] == 0x2002 {
                Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])) // 6to4
            } else {
                None
            };
            embedded.is_some_and(|v4| METADATA_V4.contains(&v4))
        }
    }
}

/// The IPv4 address an IPv6 address would embed at each RFC 6052 prefix length (/32, /40,
/// /48, /56, /64, /96; octet 8 is the reserved "u" octet).
fn nat64_positions(o: &[u8; 16]) -> [Ipv4Addr; 6] {
    [
        Ipv4Addr::new(o[4], o[5], o[6], o[7]),
        Ipv4Addr::new(o[5], o[6], o[7], o[9]),
        Ipv4Addr::new(o[6], o[7], o[9], o[10]),
        Ipv4Addr::new(o[7], o[9], o[10], o[11]),
        Ipv4Addr::new(o[9], o[10], o[11], o[12]),
        Ipv4Addr::new(o[12], o[13], o[14], o[15]),
    ]
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
    } else if seg0 == 0x0064 && ip.segments()[1] == 0xff9b && ip.segments()[2] == 0x0001 {
        // Local-use NAT64 (RFC 8215): a translator inside the network, whose embedding
        // position is its own configuration.
        Some("local-use NAT64")
    } else if seg0 == 0x0064 && ip.segments()[1] == 0xff9b {
        // Well-known NAT64 prefix: judged by the embedded IPv4 address.
        let o = ip.octets();
        v4_reason(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn refused(s: &str) -> bool {
        AddressPolicy::default().check(ip(s)).is_err()
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

    const METADATA: &[&str] = &[
        "169.254.169.254",
        "169.254.170.2",
        "100.100.100.200",
        "192.0.0.192",
        "fd00:ec2::254",
        "::ffff:169.254.169.254",
        "::169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a9fe:a9fe",
        "64:ff9b:1:a9fe:a9:fe00:808:808",
        "2002:a9fe:a9fe::1",
        "::ffff:100.100.100.200",
        "64:ff9b::a9fe:aa02",
    ];

    #[test]
    fn rejects_cloud_metadata_whatever_is_granted() {
        let everything = AddressPolicy::with_grants(vec![
            "0.0.0.0/0".parse().expect("net"),
            "::/0".parse().expect("net"),
        ])
        .expect("grants");
        for m in METADATA {
            for p in [
                AddressPolicy::default(),
                AddressPolicy::all_private(),
                everything,
            ] {
                assert_eq!(p.check_with(ip(m), true), Err("cloud metadata"), "{m}");
                assert_eq!(p.check(ip(m)), Err("cloud metadata"), "{m}");
            }
        }
    }

    #[test]
    fn accepts_metadata_neighbours_only_when_granted() {
        for near in ["169.254.169.253", "169.254.170.3", "100.100.100.201"] {
            assert!(AddressPolicy::default().check(ip(near)).is_err(), "{near}");
            assert!(
                AddressPolicy::all_private().check(ip(near)).is_ok(),
                "{near}"
            );
        }
    }

    #[test]
    fn accepts_loopback_when_operator_allows_but_never_unspecified() {
        let p = AddressPolicy::loopback();
        assert!(p.check(ip("127.0.0.1")).is_ok());
        assert!(p.check(ip("::1")).is_ok());
        assert!(p.check(ip("::ffff:127.0.0.1")).is_ok());
        assert!(p.check(ip("10.0.0.1")).is_err());
        assert!(p.check(ip("0.0.0.0")).is_err());
        assert!(p.check(ip("::")).is_err());
    }

    #[test]
    fn accepts_only_granted_cidrs() {
        let p =
            AddressPolicy::with_grants(vec!["10.1.0.0/16".parse().expect("net")]).expect("grants");
        assert!(p.check(ip("10.1.2.3")).is_ok());
        assert!(p.check(ip("::ffff:10.1.2.3")).is_ok());
        assert_eq!(p.check(ip("10.2.0.1")), Err("private"));
        assert_eq!(p.check(ip("127.0.0.1")), Err("loopback"));
        assert_eq!(p.grants().count(), 1);
    }

    #[test]
    fn rejects_too_many_grants() {
        let many = vec!["10.0.0.0/8".parse().expect("net"); MAX_GRANTS + 1];
        assert_eq!(
            AddressPolicy::with_grants(many),
            Err(GrantError::TooMany {
                given: MAX_GRANTS + 1
            })
        );
    }

    #[test]
    fn accepts_internal_for_a_binding_grant_but_never_unspecified_or_multicast() {
        let p = AddressPolicy::default();
        for ok in ["10.0.0.1", "127.0.0.1", "fd12::1", "169.254.1.1"] {
            assert!(p.check_with(ip(ok), true).is_ok(), "{ok}");
            assert!(p.check_with(ip(ok), false).is_err(), "{ok}");
        }
        for bad in ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"] {
            assert!(p.check_with(ip(bad), true).is_err(), "{bad}");
        }
    }
}
