//! The megaflow tools' filter (`--eth-src --eth-dst --eth-type --ip-src
//! --ip-dst --ip-proto --l4-src-port --l4-dst-port`), AND-ed; shared by
//! `ovs_userspace_megaflow` and `ovs_userspace_megaflow_kernel_parse`. An event
//! that lacks a filtered field (e.g. a flow key without an ipv4 attribute)
//! does not match. MACs compare case-insensitively (parsed to bytes).

use std::net::Ipv4Addr;

use shared::cli::parse_ipv4;
use shared::fmt::mac;

pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.trim().split([':', '-']).collect();
    if parts.len() != 6 {
        return Err("not a MAC address (six hex bytes, e.g. 52:54:00:aa:bb:01)".into());
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 2 {
            return Err("not a MAC address (six hex bytes, e.g. 52:54:00:aa:bb:01)".into());
        }
        m[i] = u8::from_str_radix(p, 16).map_err(|_| format!("'{p}' is not a hex byte"))?;
    }
    Ok(m)
}

/// An integer in any base: `0x0800`, `0o4000`, `0b...`, `2048`.
pub fn parse_int_any(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let (digits, radix) = if let Some(h) = t.strip_prefix("0x") {
        (h, 16)
    } else if let Some(o) = t.strip_prefix("0o") {
        (o, 8)
    } else if let Some(b) = t.strip_prefix("0b") {
        (b, 2)
    } else {
        (t.as_str(), 10)
    };
    if digits.is_empty() {
        return Err("not a number".into());
    }
    u64::from_str_radix(digits, radix).map_err(|_| "not a number".into())
}

pub fn parse_eth_type(s: &str) -> Result<u16, String> {
    match parse_int_any(s)? {
        v if v <= 0xffff => Ok(v as u16),
        _ => Err("EtherType must be 0-0xffff".into()),
    }
}

pub fn parse_proto(s: &str) -> Result<u8, String> {
    match parse_int_any(s)? {
        v if v <= 255 => Ok(v as u8),
        _ => Err("IP protocol must be 0-255".into()),
    }
}

pub fn parse_port_any(s: &str) -> Result<u16, String> {
    match s.trim().parse::<i64>() {
        Ok(v) if (0..=65535).contains(&v) => Ok(v as u16),
        Ok(_) => Err("port must be 0-65535".into()),
        Err(_) => Err("not a port number".into()),
    }
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Ethernet source (upcall: the frame; flow: the key's ETHERNET)
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    pub eth_src: Option<[u8; 6]>,
    /// Ethernet destination
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    pub eth_dst: Option<[u8; 6]>,
    /// EtherType after one VLAN tag, any base (0x0800, 2048)
    #[arg(long, value_name = "TYPE", value_parser = parse_eth_type)]
    pub eth_type: Option<u16>,
    /// IPv4 source
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub ip_src: Option<Ipv4Addr>,
    /// IPv4 destination
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub ip_dst: Option<Ipv4Addr>,
    /// IP protocol number 0-255 (1 ICMP, 6 TCP, 17 UDP)
    #[arg(long, value_name = "N", value_parser = parse_proto)]
    pub ip_proto: Option<u8>,
    /// TCP/UDP source port 0-65535
    #[arg(long, value_name = "PORT", value_parser = parse_port_any, allow_hyphen_values = true)]
    pub l4_src_port: Option<u16>,
    /// TCP/UDP destination port 0-65535
    #[arg(long, value_name = "PORT", value_parser = parse_port_any, allow_hyphen_values = true)]
    pub l4_dst_port: Option<u16>,
}

/// The fields of an upcall packet or a flow key the filter looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    pub eth_src: Option<[u8; 6]>,
    pub eth_dst: Option<[u8; 6]>,
    pub eth_type: Option<u16>,
    pub ip_src: Option<Ipv4Addr>,
    pub ip_dst: Option<Ipv4Addr>,
    pub ip_proto: Option<u8>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

impl Fields {
    /// `eth_src, eth_dst, ...` of the fields present (debug output).
    pub fn available(&self) -> String {
        let mut v = Vec::new();
        let mut p = |n: &str, b: bool| {
            if b {
                v.push(n.to_string())
            }
        };
        p("eth_src", self.eth_src.is_some());
        p("eth_dst", self.eth_dst.is_some());
        p("eth_type", self.eth_type.is_some());
        p("ip_src", self.ip_src.is_some());
        p("ip_dst", self.ip_dst.is_some());
        p("ip_proto", self.ip_proto.is_some());
        p("l4_src_port", self.sport.is_some());
        p("l4_dst_port", self.dport.is_some());
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub reason: String,
    pub expected: String,
    pub actual: String,
}

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub a: FilterArgs,
}

fn cmp<T: PartialEq + Copy>(
    name: &str,
    want: Option<T>,
    have: Option<T>,
    show: impl Fn(T) -> String,
) -> Result<(), Mismatch> {
    let Some(w) = want else { return Ok(()) };
    match have {
        Some(h) if h == w => Ok(()),
        Some(h) => Err(Mismatch {
            reason: format!("{name}_mismatch"),
            expected: show(w),
            actual: show(h),
        }),
        None => Err(Mismatch {
            reason: format!("{name}_missing"),
            expected: show(w),
            actual: "absent".into(),
        }),
    }
}

impl Filter {
    pub fn from_args(a: &FilterArgs) -> Self {
        Filter { a: a.clone() }
    }

    pub fn is_empty(&self) -> bool {
        self.describe().is_empty()
    }

    pub fn check(&self, f: &Fields) -> Result<(), Mismatch> {
        let a = &self.a;
        cmp("eth_src", a.eth_src, f.eth_src, |m| mac(&m))?;
        cmp("eth_dst", a.eth_dst, f.eth_dst, |m| mac(&m))?;
        cmp("eth_type", a.eth_type, f.eth_type, |t| format!("0x{t:04x}"))?;
        cmp("ip_src", a.ip_src, f.ip_src, |x| x.to_string())?;
        cmp("ip_dst", a.ip_dst, f.ip_dst, |x| x.to_string())?;
        cmp("ip_proto", a.ip_proto, f.ip_proto, |x| x.to_string())?;
        cmp("l4_src_port", a.l4_src_port, f.sport, |x| x.to_string())?;
        cmp("l4_dst_port", a.l4_dst_port, f.dport, |x| x.to_string())?;
        Ok(())
    }

    /// The `Filter Configuration:` lines.
    pub fn describe(&self) -> Vec<String> {
        let a = &self.a;
        let mut v = Vec::new();
        if let Some(m) = a.eth_src {
            v.push(format!("Ethernet Source: {}", mac(&m)));
        }
        if let Some(m) = a.eth_dst {
            v.push(format!("Ethernet Destination: {}", mac(&m)));
        }
        if let Some(t) = a.eth_type {
            v.push(format!("Ethernet Type: 0x{t:04x}"));
        }
        if let Some(x) = a.ip_src {
            v.push(format!("IP Source: {x}"));
        }
        if let Some(x) = a.ip_dst {
            v.push(format!("IP Destination: {x}"));
        }
        if let Some(p) = a.ip_proto {
            let n = match p {
                1 => "ICMP",
                6 => "TCP",
                17 => "UDP",
                _ => "other",
            };
            v.push(format!("IP Protocol: {n} ({p})"));
        }
        if let Some(p) = a.l4_src_port {
            v.push(format!("L4 Source Port: {p}"));
        }
        if let Some(p) = a.l4_dst_port {
            v.push(format!("L4 Destination Port: {p}"));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_any_case() {
        assert_eq!(
            parse_mac("52:54:00:AA:bb:01"),
            Ok([0x52, 0x54, 0, 0xaa, 0xbb, 1])
        );
        assert!(parse_mac("zz:54:00:aa:bb:01").is_err());
        assert!(parse_mac("52:54:00:aa:bb").is_err());
        assert!(parse_mac("52:54:00:aa:bb:011").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_eth_type("0x0800"), Ok(0x800));
        assert_eq!(parse_eth_type("2048"), Ok(0x800));
        assert!(parse_eth_type("0x1ffff").is_err());
        assert!(parse_eth_type("foo").is_err());
        assert_eq!(parse_proto("6"), Ok(6));
        assert!(parse_proto("256").is_err());
        assert_eq!(parse_port_any("0"), Ok(0));
        assert!(parse_port_any("70000").is_err());
        assert!(parse_port_any("-1").is_err());
    }

    #[test]
    fn and_of_fields_and_missing_fields() {
        let f = Filter::from_args(&FilterArgs {
            eth_src: Some([0x52, 0x54, 0, 0xaa, 0xbb, 1]),
            ip_proto: Some(1),
            ..Default::default()
        });
        let mut x = Fields {
            eth_src: Some([0x52, 0x54, 0, 0xaa, 0xbb, 1]),
            ip_proto: Some(1),
            ..Default::default()
        };
        assert!(f.check(&x).is_ok());
        x.ip_proto = Some(6);
        assert_eq!(f.check(&x).unwrap_err().reason, "ip_proto_mismatch");
        x.ip_proto = None;
        assert_eq!(f.check(&x).unwrap_err().reason, "ip_proto_missing");
        assert_eq!(f.describe()[1], "IP Protocol: ICMP (1)");
    }
}
