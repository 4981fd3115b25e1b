//! Five-tuple flow rules of the conntrack/OVS family: up to
//! [`MAX_FLOW_RULES`] IPv4 rules, OR'ed, each matching a packet in either
//! direction (`shared/bpf/flowrules.h` does the matching in the kernel), the
//! strict JSON rules-file loader (`--filters-file`), and the small word
//! parsers those tools share (`--stack true|false`, `--proto tcp|17`).

use std::net::Ipv4Addr;
use std::path::Path;

use serde_json::Value;

use crate::cli::Protocol;

/// Rules the BPF side holds (`filter_rules[]` in `.rodata`).
pub const MAX_FLOW_RULES: usize = 10;

/// One rule; `None`/0 fields match anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowRule {
    pub src_ip: Option<Ipv4Addr>,
    pub dst_ip: Option<Ipv4Addr>,
    pub protocol: Protocol,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Mirror of `struct flow5_rule` (shared/bpf/flowrules.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawFlowRule {
    /// Network order as in the IP header (the bytes of the address).
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub pad: [u8; 3],
}
const _: () = assert!(std::mem::size_of::<RawFlowRule>() == 16);
// SAFETY: plain old data.
unsafe impl plain::Plain for RawFlowRule {}

impl FlowRule {
    pub fn raw(&self) -> RawFlowRule {
        RawFlowRule {
            saddr: self.src_ip.map(|a| a.octets()).unwrap_or([0; 4]),
            daddr: self.dst_ip.map(|a| a.octets()).unwrap_or([0; 4]),
            sport: self.src_port,
            dport: self.dst_port,
            proto: self.protocol.number(),
            pad: [0; 3],
        }
    }

    pub fn is_any(&self) -> bool {
        *self == FlowRule::default()
    }

    /// `src_ip=10.0.0.1 dst_ip=any protocol=tcp src_port=any dst_port=5201`
    pub fn describe(&self) -> String {
        let ip = |a: Option<Ipv4Addr>| a.map(|x| x.to_string()).unwrap_or_else(|| "any".into());
        let port = |p: u16| {
            if p == 0 {
                "any".to_string()
            } else {
                p.to_string()
            }
        };
        format!(
            "src_ip={} dst_ip={} protocol={} src_port={} dst_port={}",
            ip(self.src_ip),
            ip(self.dst_ip),
            self.protocol.name(),
            port(self.src_port),
            port(self.dst_port)
        )
    }

    /// The rule as user space applies it (tests; the kernel does the same in
    /// flowrules.h): forward or reverse direction, ports only for TCP/UDP.
    pub fn matches(&self, s: Ipv4Addr, d: Ipv4Addr, proto: u8, sp: u16, dp: u16) -> bool {
        let r = self.raw();
        let (s, d) = (s.octets(), d.octets());
        if r.proto != 0 && r.proto != proto {
            return false;
        }
        let ports = proto == 6 || proto == 17;
        let any = [0u8; 4];
        let one = |a: [u8; 4], b: [u8; 4], pa: u16, pb: u16| {
            (r.saddr == any || r.saddr == a)
                && (r.daddr == any || r.daddr == b)
                && (!ports || ((r.sport == 0 || r.sport == pa) && (r.dport == 0 || r.dport == pb)))
        };
        one(s, d, sp, dp) || one(d, s, dp, sp)
    }
}

/// The `.rodata` contents: `filter_rules[MAX_FLOW_RULES]` and `num_filters`.
/// An empty list, or one all-any rule, matches everything (count 0).
pub fn raw_rules(rules: &[FlowRule]) -> ([RawFlowRule; MAX_FLOW_RULES], u32) {
    let mut out = [RawFlowRule::default(); MAX_FLOW_RULES];
    if rules.iter().any(FlowRule::is_any) {
        return (out, 0);
    }
    for (i, r) in rules.iter().take(MAX_FLOW_RULES).enumerate() {
        out[i] = r.raw();
    }
    (out, rules.len().min(MAX_FLOW_RULES) as u32)
}

/// The bytes of the rule array for `bpf::set_rodata`.
pub fn rules_bytes(rules: &[RawFlowRule; MAX_FLOW_RULES]) -> Vec<u8> {
    rules
        .iter()
        // SAFETY: repr(C) plain data.
        .flat_map(|r| unsafe { plain::as_bytes(r) }.to_vec())
        .collect()
}

fn field_ip(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    i: usize,
) -> Result<Option<Ipv4Addr>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<Ipv4Addr>()
            .map(|a| (!a.is_unspecified()).then_some(a))
            .map_err(|_| format!("rule {i}: {key} '{s}' is not an IPv4 address")),
        Some(v) => Err(format!("rule {i}: {key} must be a string, not {v}")),
    }
}

fn field_port(obj: &serde_json::Map<String, Value>, key: &str, i: usize) -> Result<u16, String> {
    let n = match obj.get(key) {
        None | Some(Value::Null) => return Ok(0),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    match n {
        Some(p) if (0..=65535).contains(&p) => Ok(p as u16),
        _ => Err(format!(
            "rule {i}: {key} must be a port number 0-65535 (0 = any), not {}",
            obj[key]
        )),
    }
}

/// Parse the text of a rules file: a JSON array of objects with the optional
/// keys `src_ip dst_ip protocol src_port dst_port`. Anything else (another
/// top level, unknown keys, an unknown protocol, more than `max` rules) is an
/// error naming the rule.
pub fn parse_rules(text: &str, max: usize) -> Result<Vec<FlowRule>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Array(items) = v else {
        return Err("the top level must be a JSON array of rules".into());
    };
    if items.len() > max {
        return Err(format!(
            "{} rules given, at most {max} are supported",
            items.len()
        ));
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let i = i + 1;
        let Value::Object(obj) = item else {
            return Err(format!("rule {i} is not a JSON object"));
        };
        for k in obj.keys() {
            if !["src_ip", "dst_ip", "protocol", "src_port", "dst_port"].contains(&k.as_str()) {
                return Err(format!(
                    "rule {i}: unknown key '{k}' (known: src_ip, dst_ip, protocol, src_port, dst_port)"
                ));
            }
        }
        let protocol = match obj.get("protocol") {
            None | Some(Value::Null) => Protocol::All,
            Some(Value::String(s)) => {
                parse_protocol_word(s).map_err(|e| format!("rule {i}: protocol {e}"))?
            }
            Some(v) => return Err(format!("rule {i}: protocol must be a string, not {v}")),
        };
        out.push(FlowRule {
            src_ip: field_ip(obj, "src_ip", i)?,
            dst_ip: field_ip(obj, "dst_ip", i)?,
            protocol,
            src_port: field_port(obj, "src_port", i)?,
            dst_port: field_port(obj, "dst_port", i)?,
        });
    }
    Ok(out)
}

/// Read and parse a rules file; errors name the flag and exit 2 in the caller.
pub fn load_rules_file(path: &Path, max: usize) -> Result<Vec<FlowRule>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_rules(&text, max).map_err(|e| format!("{}: {e}", path.display()))
}

/// `tcp|udp|icmp|all` (any case).
pub fn parse_protocol_word(s: &str) -> Result<Protocol, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "all" | "" => Ok(Protocol::All),
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        "icmp" => Ok(Protocol::Icmp),
        _ => Err(format!("'{s}' is not one of tcp, udp, icmp, all")),
    }
}

/// `true/false/1/0/yes/no/on/off` (any case), for `--stack`.
pub fn parse_bool_word(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("use true/false, 1/0 or yes/no".into()),
    }
}

/// A port 0-65535 where 0 means any (`--src-port`/`--dst-port` of the
/// conntrack tools, whose originals used 0 for "any").
pub fn parse_port_or_any(s: &str) -> Result<u16, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if (0..=65535).contains(&n) => Ok(n as u16),
        Ok(_) => Err("port must be 0-65535 (0 = any)".into()),
        Err(_) => Err("not a port number".into()),
    }
}

/// An IP protocol: `tcp`, `udp`, `icmp` or a number 0-255 (`--proto`).
pub fn parse_ip_proto(s: &str) -> Result<u8, String> {
    let t = s.trim().to_ascii_lowercase();
    match t.as_str() {
        "tcp" => return Ok(6),
        "udp" => return Ok(17),
        "icmp" => return Ok(1),
        _ => {}
    }
    match t.parse::<i64>() {
        Ok(n) if (0..=255).contains(&n) => Ok(n as u8),
        Ok(_) => Err("protocol numbers are 0-255".into()),
        Err(_) => Err("use tcp, udp, icmp or a protocol number 0-255".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn words() {
        assert_eq!(parse_bool_word("TRUE"), Ok(true));
        assert_eq!(parse_bool_word("no"), Ok(false));
        assert_eq!(parse_bool_word("0"), Ok(false));
        assert!(parse_bool_word("maybe").is_err());
        assert_eq!(parse_ip_proto("icmp"), Ok(1));
        assert_eq!(parse_ip_proto("47"), Ok(47));
        assert_eq!(parse_ip_proto("0"), Ok(0));
        assert!(parse_ip_proto("256").is_err());
        assert!(parse_ip_proto("foo").is_err());
        assert!(parse_protocol_word("sctp").is_err());
        assert_eq!(parse_port_or_any("0"), Ok(0));
        assert!(parse_port_or_any("70000").is_err());
        assert!(parse_port_or_any("-1").is_err());
    }

    #[test]
    fn rules_file() {
        let r = parse_rules(
            r#"[{"src_ip":"10.0.0.1","dst_ip":"10.0.0.2","protocol":"TCP","dst_port":9900},
                {"dst_port":"9901"}]"#,
            10,
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].src_ip, Some(ip("10.0.0.1")));
        assert_eq!(r[0].protocol, Protocol::Tcp);
        assert_eq!(r[1].dst_port, 9901);
        assert!(parse_rules("{}", 10).is_err());
        assert!(parse_rules("[1]", 10).is_err());
        assert!(parse_rules(r#"[{"protocol":"sctp"}]"#, 10).is_err());
        assert!(parse_rules(r#"[{"src_ip":"1.2.3"}]"#, 10).is_err());
        assert!(parse_rules(r#"[{"dst_port":70000}]"#, 10).is_err());
        assert!(parse_rules(r#"[{"dport":1}]"#, 10).is_err());
        assert!(parse_rules("not json", 10).is_err());
        let eleven = format!("[{}]", ["{}"; 11].join(","));
        assert!(parse_rules(&eleven, 10).unwrap_err().contains("at most 10"));
        assert_eq!(parse_rules("[]", 10).unwrap().len(), 0);
    }

    #[test]
    fn bidirectional_match() {
        let r = FlowRule {
            src_ip: Some(ip("10.0.0.1")),
            dst_ip: Some(ip("10.0.0.2")),
            protocol: Protocol::Tcp,
            src_port: 0,
            dst_port: 5201,
        };
        assert!(r.matches(ip("10.0.0.1"), ip("10.0.0.2"), 6, 40000, 5201));
        assert!(r.matches(ip("10.0.0.2"), ip("10.0.0.1"), 6, 5201, 40000));
        assert!(!r.matches(ip("10.0.0.2"), ip("10.0.0.1"), 6, 40000, 5201));
        assert!(!r.matches(ip("10.0.0.1"), ip("10.0.0.2"), 1, 0, 0));
        let icmp_any_port = FlowRule {
            dst_port: 80,
            ..Default::default()
        };
        assert!(icmp_any_port.matches(ip("1.1.1.1"), ip("2.2.2.2"), 1, 0, 0));
        let (raw, n) = raw_rules(&[r, FlowRule::default()]);
        assert_eq!(n, 0);
        assert_eq!(raw[0], RawFlowRule::default());
        let (raw, n) = raw_rules(&[r]);
        assert_eq!(n, 1);
        assert_eq!(raw[0].saddr, [10, 0, 0, 1]);
        assert_eq!(rules_bytes(&raw).len(), 160);
    }
}
