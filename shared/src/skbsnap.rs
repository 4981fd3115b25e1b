//! The "skb snapshot at hook X" engine of the bpftrace-port tools
//! (packet-drop-and-bpftrace.md B.0; BPF side: shared/bpf/skbsnap.h): the
//! common flags (`--dev`, `--src/--dst`, `--proto`, `--sport/--dport`,
//! `--match`, `--no-stack`, `--max-events`, `--include-dhcp`, `--mode`), the
//! `.rodata` configuration, the record mirror and its text/JSON rendering.
//! GSO type bit names come from the running kernel's BTF (`SKB_GSO_*`).

use std::net::Ipv4Addr;

use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use crate::btf::KernelBtf;
use crate::cli::{parse_ifname, parse_ipv4, parse_port};

pub const MAX_DEVS: usize = 8;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum Match {
    /// gso_size != 0 and gso_type == 0
    #[default]
    #[value(name = "gso-anomaly")]
    GsoAnomaly,
    /// gso_type != 0
    Gso,
    /// every skb
    All,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum Mode {
    /// kprobe/fentry hooks if the kernel has them, else tracepoint mode
    #[default]
    Auto,
    /// function hooks (fentry, else kprobe)
    Kprobe,
    /// stable tracepoints only (some hooks substituted or skipped)
    Tracepoint,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum SnapProto {
    Tcp,
    Udp,
    Icmp,
    All,
}

/// Flags of every snapshot tool.
#[derive(Args, Debug, Clone)]
pub struct SnapArgs {
    /// Only skbs on this device (repeatable; default every device)
    #[arg(long = "dev", value_name = "NAME", value_parser = parse_ifname)]
    pub devs: Vec<String>,
    /// IPv4 source address
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub src: Option<Ipv4Addr>,
    /// IPv4 destination address
    #[arg(long, value_name = "IP", value_parser = parse_ipv4)]
    pub dst: Option<Ipv4Addr>,
    /// L4 protocol
    #[arg(long, value_enum, default_value = "all")]
    pub proto: SnapProto,
    /// TCP/UDP source port
    #[arg(long, value_name = "N", value_parser = parse_port, allow_hyphen_values = true)]
    pub sport: Option<u16>,
    /// TCP/UDP destination port
    #[arg(long, value_name = "N", value_parser = parse_port, allow_hyphen_values = true)]
    pub dport: Option<u16>,
    /// Which skbs to report
    #[arg(long = "match", value_enum, default_value = "gso-anomaly")]
    pub matching: Match,
    /// Do not capture kernel stacks
    #[arg(long)]
    pub no_stack: bool,
    /// Stop after N events
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_events: Option<u32>,
    /// Also report DHCP (UDP port 67/68), skipped by default as in the originals
    #[arg(long)]
    pub include_dhcp: bool,
    /// kprobe (function hooks), tracepoint, or auto
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: Mode,
}

impl SnapArgs {
    /// Exit 2 on a bad combination; warn for devices not in this netns.
    pub fn validate(&self) {
        if self.devs.len() > MAX_DEVS {
            crate::cli::usage_error(format!("at most {MAX_DEVS} --dev"));
        }
        for d in &self.devs {
            if crate::netdev::ifindex(d).is_none() {
                eprintln!(
                    "warning: device {d} is not in this network namespace (it may be in another)"
                );
            }
        }
    }

    pub fn cfg(&self) -> SnapCfg {
        let mut c = SnapCfg {
            matching: match self.matching {
                Match::GsoAnomaly => 0,
                Match::Gso => 1,
                Match::All => 2,
            },
            include_dhcp: u8::from(self.include_dhcp),
            stacks: u8::from(!self.no_stack),
            ndevs: self.devs.len() as u8,
            l4proto: match self.proto {
                SnapProto::Tcp => 6,
                SnapProto::Udp => 17,
                SnapProto::Icmp => 1,
                SnapProto::All => 0,
            },
            saddr: self.src.map(|a| a.octets()).unwrap_or([0; 4]),
            daddr: self.dst.map(|a| a.octets()).unwrap_or([0; 4]),
            sport: self.sport.unwrap_or(0),
            dport: self.dport.unwrap_or(0),
            max_events: self.max_events.unwrap_or(0),
            ..Default::default()
        };
        for (i, d) in self.devs.iter().enumerate() {
            let n = d.len().min(15);
            c.devs[i][..n].copy_from_slice(&d.as_bytes()[..n]);
        }
        c
    }
}

/// Mirror of `struct snap_cfg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SnapCfg {
    pub matching: u8,
    pub include_dhcp: u8,
    pub stacks: u8,
    pub ndevs: u8,
    pub l4proto: u8,
    pub pad: [u8; 3],
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub max_events: u32,
    pub devs: [[u8; 16]; MAX_DEVS],
}
const _: () = assert!(std::mem::size_of::<SnapCfg>() == 152);
// SAFETY: plain old data.
unsafe impl plain::Plain for SnapCfg {}

impl SnapCfg {
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: repr(C) POD.
        unsafe { plain::as_bytes(self) }
    }
}

/// Mirror of `struct tun_ring` (shared/bpf/tun.h).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct TunRing {
    pub tun: u64,
    pub tfile: u64,
    pub qptr: u64,
    pub size: i32,
    pub producer: i32,
    pub consumer_head: i32,
    pub consumer_tail: i32,
    pub numqueues: u32,
    pub queue: u16,
    pub queue_index: u16,
    pub ok: u8,
    pub full: u8,
    pub pad: [u8; 6],
}
const _: () = assert!(std::mem::size_of::<TunRing>() == 56);
// SAFETY: plain old data.
unsafe impl plain::Plain for TunRing {}

impl TunRing {
    /// (used, util%): used = (producer - consumer_tail) mod size; a full ring is 100%.
    pub fn used(&self) -> (i32, u64) {
        if self.ok == 0 || self.size <= 0 {
            return (0, 0);
        }
        if self.full != 0 {
            return (self.size, 100);
        }
        let u = (self.producer - self.consumer_tail).rem_euclid(self.size);
        (u, u as u64 * 100 / self.size as u64)
    }
}

/// Mirror of `struct skb_snap`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct Snap {
    pub ts_ns: u64,
    pub skb: u64,
    pub features: u64,
    pub hw_features: u64,
    pub wanted_features: u64,
    pub hw_enc_features: u64,
    pub gso_partial_features: u64,
    pub hook: u32,
    pub cpu: u32,
    pub pid: u32,
    pub tid: u32,
    pub comm: [u8; 16],
    pub dev: [u8; 16],
    pub kstack_id: i32,
    pub ifindex: u32,
    pub len: u32,
    pub data_len: u32,
    pub ignore_df: u8,
    pub cloned: u8,
    pub encapsulation: u8,
    pub ip_summed: u8,
    pub pkt_type: u8,
    pub inner_protocol_type: u8,
    pub queue_mapping: u16,
    pub network_header: u16,
    pub transport_header: u16,
    pub inner_network_header: u16,
    pub inner_transport_header: u16,
    pub inner_protocol: u16,
    pub gso_size: u16,
    pub gso_segs: u16,
    pub nr_frags: u8,
    pub has_frag_list: u8,
    pub gso_type: u32,
    pub dataref: u32,
    pub frag_max_size: u16,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    pub l4proto: u8,
    pub family: u8,
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub sk_saddr: [u8; 4],
    pub sk_daddr: [u8; 4],
    pub sk_dport: u16,
    pub has_sk: u8,
    pub pad: u8,
    pub ring: TunRing,
}
const _: () = assert!(std::mem::size_of::<Snap>() == 248);
// SAFETY: plain old data.
unsafe impl plain::Plain for Snap {}

/// `SKB_GSO_*` bit names from the kernel's BTF (bit -> name without prefix).
#[derive(Clone, Debug, Default)]
pub struct GsoNames(pub Vec<(u32, String)>);

impl GsoNames {
    pub fn load(btf: &KernelBtf) -> Self {
        let mut v: Vec<(u32, String)> = btf
            .enum_with_member("SKB_GSO_TCPV4")
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, val)| *val > 0 && (*val as u64).is_power_of_two())
            .map(|(n, val)| (val as u32, n.trim_start_matches("SKB_GSO_").to_string()))
            .collect();
        v.sort();
        GsoNames(v)
    }
    pub fn names(&self, t: u32) -> Vec<String> {
        self.0
            .iter()
            .filter(|(b, _)| t & b != 0)
            .map(|(_, n)| n.clone())
            .collect()
    }
}

fn mac(b: &[u8; 6]) -> String {
    crate::fmt::mac(b)
}

impl Snap {
    pub fn decode(data: &[u8]) -> Option<Snap> {
        let mut s = Snap::default();
        plain::copy_from_bytes(&mut s, data).ok()?;
        Some(s)
    }

    fn l4(&self) -> &'static str {
        match self.l4proto {
            6 => "tcp",
            17 => "udp",
            1 => "icmp",
            _ => "ip",
        }
    }

    /// The B.0 text block (without the stack).
    pub fn text(&self, func: &str, anomaly_line: bool, gso: &GsoNames, ring: bool) -> String {
        let mut s = format!("{func} probe\n");
        if anomaly_line {
            s.push_str(&format!(
                "unexpected gso type:{:#04x}, gso size: {}\n",
                self.gso_type, self.gso_size
            ));
        }
        let dev = crate::fmt::cstr(&self.dev);
        s.push_str(&format!(
            "skb: dev={dev} features={:#x} ignore_df={} len={} data_len={} cloned={} nh={} th={} encap={}\n",
            self.features, self.ignore_df, self.len, self.data_len, self.cloned, self.network_header,
            self.transport_header, self.encapsulation
        ));
        s.push_str(&format!(
            "     inner_nh={} inner_th={} gso_size={} gso_segs={} gso_type={:#04x} [{}] nr_frags={} dataref={}\n",
            self.inner_network_header, self.inner_transport_header, self.gso_size, self.gso_segs, self.gso_type,
            gso.names(self.gso_type).join("|"), self.nr_frags, self.dataref
        ));
        s.push_str(&format!(
            "     frag_list={} ip_summed={} frag_max_size={} queue_mapping={}\n",
            self.has_frag_list, self.ip_summed, self.frag_max_size, self.queue_mapping
        ));
        s.push_str(&format!(
            "dev features: features={:#x} hw={:#x} wanted={:#x} hw_enc={:#x} gso_partial={:#x}\n",
            self.features,
            self.hw_features,
            self.wanted_features,
            self.hw_enc_features,
            self.gso_partial_features
        ));
        if self.has_sk != 0 {
            s.push_str(&format!(
                "sock: saddr={} daddr={} dport={}\n",
                Ipv4Addr::from(self.sk_saddr),
                Ipv4Addr::from(self.sk_daddr),
                self.sk_dport
            ));
        }
        if self.family == 4 {
            s.push_str(&format!(
                "{}: {}:{} => {}:{}   MAC src: {} MAC dst: {}\n",
                self.l4(),
                Ipv4Addr::from(self.saddr),
                self.sport,
                Ipv4Addr::from(self.daddr),
                self.dport,
                mac(&self.smac),
                mac(&self.dmac)
            ));
        }
        if ring {
            let r = &self.ring;
            if r.ok != 0 {
                let (used, pct) = r.used();
                s.push_str(&format!(
                    "tun ring: queue={} size={} producer={} consumer_head={} consumer_tail={} used={used} ({pct}%) full={}\n",
                    r.queue, r.size, r.producer, r.consumer_head, r.consumer_tail, if r.full != 0 { "yes" } else { "no" }
                ));
            } else {
                s.push_str("tun ring: N/A\n");
            }
        }
        s
    }

    pub fn json(
        &self,
        func: &str,
        gso: &GsoNames,
        ring: bool,
        time: &str,
        kstack: &[String],
    ) -> Value {
        let mut v = json!({
            "func": func, "time": time, "ts_ns": self.ts_ns, "cpu": self.cpu, "pid": self.pid, "tid": self.tid,
            "comm": crate::fmt::cstr(&self.comm), "dev": crate::fmt::cstr(&self.dev), "ifindex": self.ifindex,
            "skb": format!("{:#x}", self.skb), "len": self.len, "data_len": self.data_len,
            "ignore_df": self.ignore_df, "cloned": self.cloned, "encapsulation": self.encapsulation,
            "ip_summed": self.ip_summed, "pkt_type": self.pkt_type, "queue_mapping": self.queue_mapping,
            "network_header": self.network_header, "transport_header": self.transport_header,
            "inner_network_header": self.inner_network_header, "inner_transport_header": self.inner_transport_header,
            "inner_protocol": self.inner_protocol, "inner_protocol_type": self.inner_protocol_type,
            "gso_size": self.gso_size, "gso_segs": self.gso_segs, "gso_type": self.gso_type,
            "gso_type_names": gso.names(self.gso_type), "nr_frags": self.nr_frags,
            "frag_list": self.has_frag_list, "dataref": self.dataref, "frag_max_size": self.frag_max_size,
            "features": format!("{:#x}", self.features), "hw_features": format!("{:#x}", self.hw_features),
            "wanted_features": format!("{:#x}", self.wanted_features),
            "hw_enc_features": format!("{:#x}", self.hw_enc_features),
            "gso_partial_features": format!("{:#x}", self.gso_partial_features),
            "smac": mac(&self.smac), "dmac": mac(&self.dmac), "kstack": kstack,
        });
        if self.family == 4 {
            v["proto"] = json!(self.l4());
            v["saddr"] = json!(Ipv4Addr::from(self.saddr).to_string());
            v["daddr"] = json!(Ipv4Addr::from(self.daddr).to_string());
            v["sport"] = json!(self.sport);
            v["dport"] = json!(self.dport);
        }
        if self.has_sk != 0 {
            v["sock"] = json!({"saddr": Ipv4Addr::from(self.sk_saddr).to_string(),
                "daddr": Ipv4Addr::from(self.sk_daddr).to_string(), "dport": self.sk_dport});
        }
        if ring {
            let r = &self.ring;
            v["ring"] = if r.ok != 0 {
                let (used, pct) = r.used();
                json!({"queue": r.queue, "size": r.size, "producer": r.producer, "consumer_head": r.consumer_head,
                       "consumer_tail": r.consumer_tail, "used": used, "util_pct": pct, "full": r.full != 0})
            } else {
                Value::Null
            };
        }
        v
    }
}

/// Fill `snap_tun_devs` with this netns's tun/tap ifindexes.
pub fn refresh_tun_devs(map: &dyn libbpf_rs::MapCore) {
    let want: Vec<u32> = crate::vmhost::tun_devices()
        .iter()
        .filter_map(|n| crate::netdev::ifindex(n))
        .collect();
    let have: Vec<Vec<u8>> = map.keys().collect();
    for k in &have {
        if k.len() >= 4 && !want.contains(&u32::from_ne_bytes(k[..4].try_into().unwrap())) {
            let _ = map.delete(k);
        }
    }
    for i in want {
        let _ = map.update(&i.to_ne_bytes(), &[1], libbpf_rs::MapFlags::ANY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_usage() {
        let r = TunRing {
            ok: 1,
            size: 64,
            producer: 3,
            consumer_tail: 60,
            ..Default::default()
        };
        assert_eq!(r.used(), (7, 10));
        let f = TunRing {
            ok: 1,
            size: 64,
            full: 1,
            ..Default::default()
        };
        assert_eq!(f.used(), (64, 100));
    }

    #[test]
    fn gso_names() {
        let g = GsoNames(vec![
            (1, "TCPV4".into()),
            (2, "DODGY".into()),
            (16, "TCPV6".into()),
        ]);
        assert_eq!(g.names(3), vec!["TCPV4", "DODGY"]);
        assert!(g.names(0).is_empty());
    }
}
