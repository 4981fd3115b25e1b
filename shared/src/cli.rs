//! Command-line pieces every tool flattens into its own clap parser, and the
//! parsers that turn bad input into one-line errors with exit status 2.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

use crate::{die, EXIT_USAGE};

/// Parse the command line; any clap error becomes its first line on stderr and
/// exit status 2 (help and version still print in full and exit 0).
pub fn parse<T: Parser>() -> T {
    crate::runner::stop_flag();
    match T::try_parse() {
        Ok(v) => v,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    std::process::exit(0)
                }
                _ => {
                    let text = e.render().to_string();
                    let first = text
                        .lines()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("error: bad command line");
                    eprintln!("{}", first.trim_end());
                    std::process::exit(EXIT_USAGE)
                }
            }
        }
    }
}

/// Report a semantic command-line error (after clap) and exit 2.
pub fn usage_error(msg: impl std::fmt::Display) -> ! {
    die(EXIT_USAGE, msg)
}

/// How to reach a hook: `auto` takes the first one the running kernel has.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum AttachMode {
    Auto,
    #[value(name = "tp_btf")]
    TpBtf,
    Tracepoint,
    Fentry,
    Kprobe,
    #[value(name = "raw_tp")]
    RawTp,
}

/// Flags of every BPF tool.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Stop after SECS seconds (default: run until Ctrl-C)
    #[arg(long, value_name = "SECS", value_parser = parse_duration, allow_hyphen_values = true)]
    pub duration: Option<Duration>,

    /// One JSON object per event on stdout; banners go to stderr
    #[arg(long)]
    pub json: bool,

    /// Print the hook plan (what attaches where, and why) and exit without attaching
    #[arg(long)]
    pub explain: bool,

    /// Force one way of attaching instead of the best available
    #[arg(long, value_enum, default_value_t = AttachMode::Auto, value_name = "MODE")]
    pub attach: AttachMode,

    /// Show libbpf/verifier messages, start-up time and memory
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

/// `--log-file PATH`: append output to a file instead of stdout.
#[derive(Args, Debug, Clone)]
pub struct LogFileArg {
    /// Append output to PATH instead of stdout
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// L4 protocol filter.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum Protocol {
    #[default]
    All,
    Icmp,
    Tcp,
    Udp,
}

impl Protocol {
    /// IP protocol number, 0 for `all`.
    pub fn number(self) -> u8 {
        match self {
            Protocol::All => 0,
            Protocol::Icmp => 1,
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Protocol::All => "all",
            Protocol::Icmp => "icmp",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// Packet 5-tuple filter of the drop family (`--src --dst --protocol --src-port --dst-port`).
#[derive(Args, Debug, Clone, Default)]
pub struct PacketFilterArgs {
    /// Source IP address to match (default: any)
    #[arg(long, value_name = "IP", value_parser = parse_ip)]
    pub src: Option<IpAddr>,

    /// Destination IP address to match (default: any)
    #[arg(long, value_name = "IP", value_parser = parse_ip)]
    pub dst: Option<IpAddr>,

    /// L4 protocol to match; with a port filter and `all`, only TCP/UDP match
    #[arg(long, value_enum, default_value_t = Protocol::All)]
    pub protocol: Protocol,

    /// TCP/UDP source port to match (1-65535)
    #[arg(long, value_name = "PORT", value_parser = parse_port, allow_hyphen_values = true)]
    pub src_port: Option<u16>,

    /// TCP/UDP destination port to match (1-65535)
    #[arg(long, value_name = "PORT", value_parser = parse_port, allow_hyphen_values = true)]
    pub dst_port: Option<u16>,
}

impl PacketFilterArgs {
    /// Exit 2 when a port filter is given with `--protocol icmp` (no ports to match).
    pub fn require_ports_with_l4(&self) {
        if self.protocol == Protocol::Icmp && (self.src_port.is_some() || self.dst_port.is_some()) {
            usage_error(
                "invalid value for '--src-port/--dst-port': ports need --protocol tcp, udp or all",
            );
        }
    }

    /// Exit 2 unless every address given is IPv4.
    pub fn require_ipv4(&self) {
        for (flag, a) in [("--src", self.src), ("--dst", self.dst)] {
            if let Some(IpAddr::V6(v6)) = a {
                usage_error(format!(
                    "invalid value '{v6}' for '{flag}': this tool traces IPv4 only"
                ));
            }
        }
    }
}

pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.trim()
        .parse::<IpAddr>()
        .map_err(|_| "not an IPv4 or IPv6 address".to_string())
}

pub fn parse_ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.trim()
        .parse::<Ipv4Addr>()
        .map_err(|_| "not an IPv4 address (a.b.c.d, each 0-255)".to_string())
}

pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        Ok(_) => Err("port must be 1-65535 (omit the flag to match any port)".into()),
        Err(_) => Err("not a port number".into()),
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && n <= 365.0 * 86400.0 => Ok(Duration::from_secs_f64(n)),
        Ok(_) => Err("must be a positive number of seconds".into()),
        Err(_) => Err("not a number of seconds".into()),
    }
}

/// A positive whole number of seconds (intervals).
pub fn parse_interval(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n > 0 => Ok(n as u64),
        Ok(_) => Err("must be a positive whole number".into()),
        Err(_) => Err("not a whole number".into()),
    }
}

/// Interface names are 1-15 bytes, no '/' or whitespace (IFNAMSIZ-1).
pub fn parse_ifname(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 15 {
        return Err("interface names are 1-15 bytes".into());
    }
    if s.contains('/') || s.chars().any(char::is_whitespace) {
        return Err("interface names have no '/' or spaces".into());
    }
    Ok(s.to_string())
}

/// The well-known EtherTypes by the names `--type` accepts.
pub const ETHERTYPE_NAMES: &[(&str, u16)] = &[
    ("arp", 0x0806),
    ("rarp", 0x8035),
    ("ipv4", 0x0800),
    ("ipv6", 0x86DD),
    ("lldp", 0x88CC),
    ("flow_control", 0x8808),
];

/// An EtherType filter (`--type`): every frame, one EtherType, or "other" (none
/// of the well-known ones in [`ETHERTYPE_NAMES`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum EtherTypeFilter {
    #[default]
    All,
    Other,
    Is(u16),
}

impl EtherTypeFilter {
    /// The value the originals showed: 0 for all, 0xffff for other.
    pub fn value(self) -> u16 {
        match self {
            EtherTypeFilter::All => 0,
            EtherTypeFilter::Other => 0xffff,
            EtherTypeFilter::Is(t) => t,
        }
    }

    /// `all`, `other`, a well-known name, or `0x....`.
    pub fn name(self) -> String {
        match self {
            EtherTypeFilter::All => "all".into(),
            EtherTypeFilter::Other => "other".into(),
            EtherTypeFilter::Is(t) => ethertype_name(t)
                .map(str::to_string)
                .unwrap_or_else(|| format!("0x{t:04x}")),
        }
    }
}

/// The `--type` name of a well-known EtherType.
pub fn ethertype_name(t: u16) -> Option<&'static str> {
    ETHERTYPE_NAMES
        .iter()
        .find(|(_, v)| *v == t)
        .map(|(n, _)| *n)
}

/// `arp|rarp|ipv4|ipv6|lldp|flow_control|other|all` or `0xXXXX` (0x0001-0xffff).
pub fn parse_ethertype(s: &str) -> Result<EtherTypeFilter, String> {
    let s = s.trim().to_ascii_lowercase();
    match s.as_str() {
        "all" => return Ok(EtherTypeFilter::All),
        "other" => return Ok(EtherTypeFilter::Other),
        _ => {}
    }
    if let Some(t) = ETHERTYPE_NAMES.iter().find(|(n, _)| *n == s) {
        return Ok(EtherTypeFilter::Is(t.1));
    }
    let names = "arp, rarp, ipv4, ipv6, lldp, flow_control, other, all or 0xXXXX";
    let Some(hex) = s.strip_prefix("0x") else {
        return Err(format!("unknown EtherType (use {names})"));
    };
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("not a hexadecimal EtherType (0x0001-0xffff)".into());
    }
    // Leading zeros are fine; "" (all zeros) and overflows are out of range.
    match u32::from_str_radix(hex.trim_start_matches('0'), 16) {
        Ok(v) if (1..=0xffff).contains(&v) => Ok(EtherTypeFilter::Is(v as u16)),
        _ => Err("EtherType must be 0x0001-0xffff".into()),
    }
}

/// An 802.1Q VLAN id, 1-4094.
pub fn parse_vlan_id(s: &str) -> Result<u16, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if (1..=4094).contains(&n) => Ok(n as u16),
        Ok(_) => Err("VLAN ids are 1-4094".into()),
        Err(_) => Err("not a VLAN id (1-4094)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_port("80"), Ok(80));
        assert_eq!(parse_port("65535"), Ok(65535));
        assert!(parse_port("0").is_err());
        assert!(parse_port("70000").is_err());
        assert!(parse_port("-1").is_err());
        assert!(parse_port("http").is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_ip("10.0.0.1"), Ok("10.0.0.1".parse().unwrap()));
        assert!(parse_ip("fe80::1").is_ok());
        assert!(parse_ip("10.0.0.256").is_err());
        assert!(parse_ip("foo").is_err());
        assert!(parse_ipv4("::1").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("inf").is_err());
        assert!(parse_interval("0").is_err());
        assert_eq!(parse_interval("5"), Ok(5));
    }

    #[test]
    fn ifnames() {
        assert!(parse_ifname("veth0").is_ok());
        assert!(parse_ifname("").is_err());
        assert!(parse_ifname("a234567890123456").is_err());
        assert!(parse_ifname("a/b").is_err());
    }

    #[test]
    fn ethertypes() {
        assert_eq!(parse_ethertype("all"), Ok(EtherTypeFilter::All));
        assert_eq!(parse_ethertype("other"), Ok(EtherTypeFilter::Other));
        assert_eq!(parse_ethertype("arp"), Ok(EtherTypeFilter::Is(0x0806)));
        assert_eq!(parse_ethertype("IPv6"), Ok(EtherTypeFilter::Is(0x86dd)));
        assert_eq!(
            parse_ethertype("flow_control"),
            Ok(EtherTypeFilter::Is(0x8808))
        );
        assert_eq!(parse_ethertype("0x88cc"), Ok(EtherTypeFilter::Is(0x88cc)));
        assert_eq!(parse_ethertype("0XFFFF"), Ok(EtherTypeFilter::Is(0xffff)));
        assert_eq!(parse_ethertype("0x0001"), Ok(EtherTypeFilter::Is(1)));
        for bad in [
            "foo", "0xZZ", "0x", "0x10000", "0x0", "0x0000", "2054", "-1", "",
        ] {
            assert!(parse_ethertype(bad).is_err(), "{bad}");
        }
        assert_eq!(EtherTypeFilter::Is(0x88cc).name(), "lldp");
        assert_eq!(EtherTypeFilter::Is(0x1234).name(), "0x1234");
        assert_eq!(EtherTypeFilter::Other.value(), 0xffff);
    }

    #[test]
    fn vlan_ids() {
        assert_eq!(parse_vlan_id("100"), Ok(100));
        assert_eq!(parse_vlan_id("4094"), Ok(4094));
        assert!(parse_vlan_id("0").is_err());
        assert!(parse_vlan_id("4095").is_err());
        assert!(parse_vlan_id("5000").is_err());
        assert!(parse_vlan_id("x").is_err());
    }
}
