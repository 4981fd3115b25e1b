//! Conntrack records from `shared/bpf/conntrack.h` and their names: ctinfo
//! (`enum ip_conntrack_info`), nf_conn status bits (from the running kernel's
//! BTF `enum ip_conntrack_status`), zone directions, the 128-bit label, TCP
//! socket states, and OVS's `ovs_conntrack_info` of a ct() action.

use serde_json::{json, Value};

use crate::btf::KernelBtf;

/// Mirror of `struct ct_snap` (shared/bpf/conntrack.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CtSnap {
    pub nfct: u64,
    pub ct: u64,
    pub status: u64,
    pub ctinfo: u8,
    pub status_err: i8,
    pub zone_err: i8,
    pub dir_err: i8,
    pub zone_id: u16,
    pub zone_flags: u8,
    pub zone_dir: u8,
    pub label_err: i8,
    /// 1: from skb->_nfct, 2: from an nf_conn argument, 0: not read.
    pub has_nfct: u8,
    pub pad: [u8; 6],
    pub label: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<CtSnap>() == 56);
// SAFETY: plain old data.
unsafe impl plain::Plain for CtSnap {}

/// Mirror of `struct ovs_ct_snap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OvsCtSnap {
    pub ct: u64,
    pub zone_id: u16,
    pub zone_flags: u8,
    pub zone_dir: u8,
    pub commit: u8,
    pub err: i8,
    pub dir_err: i8,
    pub key_valid: u8,
    pub key_ct_state: u8,
    pub pad: u8,
    pub key_ct_zone: u16,
    pub pad2: u32,
}
const _: () = assert!(std::mem::size_of::<OvsCtSnap>() == 24);
// SAFETY: plain old data.
unsafe impl plain::Plain for OvsCtSnap {}

/// `enum ip_conntrack_info` (uapi; 5 is unused, the originals called it RELATED_REPLY).
pub fn ctinfo_name(v: u8) -> &'static str {
    match v {
        0 => "IP_CT_ESTABLISHED",
        1 => "IP_CT_RELATED",
        2 => "IP_CT_NEW",
        3 => "IP_CT_ESTABLISHED_REPLY",
        4 => "IP_CT_RELATED_REPLY",
        7 => "IP_CT_UNTRACKED",
        _ => "UNKNOWN_VALUE",
    }
}

/// TCP socket states (`skc_state`), 0xff = no socket.
pub fn tcp_state_name(s: u8) -> String {
    const N: [&str; 12] = [
        "TCP_ESTABLISHED",
        "TCP_SYN_SENT",
        "TCP_SYN_RECV",
        "TCP_FIN_WAIT1",
        "TCP_FIN_WAIT2",
        "TCP_TIME_WAIT",
        "TCP_CLOSE",
        "TCP_CLOSE_WAIT",
        "TCP_LAST_ACK",
        "TCP_LISTEN",
        "TCP_CLOSING",
        "TCP_NEW_SYN_RECV",
    ];
    match s {
        1..=12 => N[s as usize - 1].to_string(),
        _ => format!("UNKNOWN_STATE({s})"),
    }
}

/// TCP header flag names of the flag byte (FIN SYN RST PSH ACK URG ECE CWR).
pub fn tcp_flag_names(f: u8) -> Vec<&'static str> {
    const N: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
    (0..8).filter(|b| f & (1 << b) != 0).map(|b| N[b]).collect()
}

/// Status bit names of the running kernel (`IPS_*_BIT` of `enum ip_conntrack_status`).
pub struct StatusBits {
    names: Vec<(u32, String)>,
}

/// Bit 11: a conntrack template (OVS ct() zone/helper templates).
pub const IPS_TEMPLATE_BIT: u32 = 11;

impl StatusBits {
    pub fn load(btf: &KernelBtf) -> Self {
        let members = btf.enum_members("ip_conntrack_status").unwrap_or_default();
        Self::from_members(&members)
    }

    pub fn from_members(members: &[(String, i64)]) -> Self {
        let mut names: Vec<(u32, String)> = Vec::new();
        for (n, v) in members {
            let Some(short) = n.strip_prefix("IPS_").and_then(|s| s.strip_suffix("_BIT")) else {
                continue;
            };
            if short.starts_with("__") || !(0..64).contains(v) {
                continue;
            }
            match names.iter_mut().find(|(b, _)| *b == *v as u32) {
                Some((_, name)) => {
                    name.push('/');
                    name.push_str(short);
                }
                None => names.push((*v as u32, short.to_string())),
            }
        }
        names.sort();
        StatusBits { names }
    }

    /// Names of the set bits (`BIT<n>` for bits the kernel does not name).
    pub fn flags(&self, status: u64) -> Vec<String> {
        (0..64u32)
            .filter(|b| status & (1u64 << b) != 0)
            .map(|b| {
                self.names
                    .iter()
                    .find(|(n, _)| *n == b)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_else(|| format!("BIT{b}"))
            })
            .collect()
    }

    /// `TEMPLATE|...` or `NOT_TEMPLATE|CONFIRMED|...` (the originals printed only the first word).
    pub fn describe(&self, status: u64) -> String {
        let mut parts = Vec::new();
        if status & (1 << IPS_TEMPLATE_BIT) == 0 {
            parts.push("NOT_TEMPLATE".to_string());
        }
        parts.extend(self.flags(status));
        parts.join("|")
    }
}

/// Zone direction bits (`NF_CT_ZONE_DIR_ORIG` 1, `NF_CT_ZONE_DIR_REPL` 2; 3 = both, the default).
pub fn zone_dir_name(d: u8) -> &'static str {
    match d {
        0 => "NONE",
        1 => "ORIG",
        2 => "REPL",
        3 => "ORIG|REPL",
        _ => "?",
    }
}

/// The label as the kernel's 16 bytes read as a little-endian u128.
pub fn label_hex(l: &[u8; 16]) -> String {
    format!("0x{:032x}", u128::from_le_bytes(*l))
}

impl CtSnap {
    /// The conntrack entry, if the skb had one.
    pub fn conn(&self) -> Option<u64> {
        (self.ct != 0).then_some(self.ct)
    }

    /// Why there is no status: `_nfct=0`, `MaskedPtrNULL`, ...
    pub fn status_error(&self) -> Option<&'static str> {
        match self.status_err {
            0 => None,
            -1 => Some("Init/NULL"),
            -2 => Some("ReadFail"),
            -3 => Some("MaskedPtrNULL"),
            -4 => Some("_nfct=0"),
            -5 => Some("StatusReadFail"),
            _ => Some("?"),
        }
    }

    pub fn zone_error(&self) -> Option<&'static str> {
        match self.zone_err {
            0 => None,
            -1 => Some("Init"),
            -2 => Some("ReadFail"),
            -3 => Some("NoZones"),
            _ => Some("?"),
        }
    }

    pub fn dir_error(&self) -> Option<&'static str> {
        match self.dir_err {
            0 => None,
            -1 => Some("Init"),
            -2 => Some("ReadFail"),
            -3 => Some("NoCfg"),
            _ => Some("?"),
        }
    }

    /// The label, when the conntrack has a labels extension.
    pub fn label(&self) -> Option<String> {
        (self.label_err == 0).then(|| label_hex(&self.label))
    }

    /// The `skb_ct` JSON object of the conntrack family (null + `*_err` instead of sentinels).
    pub fn json(&self, bits: &StatusBits) -> Value {
        let mut v = json!({
            "nfct": format!("0x{:x}", self.nfct),
            "ct": format!("0x{:x}", self.ct),
            "ctinfo": if self.has_nfct == 1 && self.nfct != 0 { json!(self.ctinfo) } else { Value::Null },
            "ctinfo_name": if self.has_nfct == 1 && self.nfct != 0 { json!(ctinfo_name(self.ctinfo)) } else { Value::Null },
            "status": Value::Null,
            "status_flags": Value::Null,
            "zone_id": Value::Null,
            "zone_dir": Value::Null,
            "label": self.label(),
        });
        match self.status_error() {
            None => {
                v["status"] = json!(format!("0x{:x}", self.status));
                v["status_flags"] = json!(bits.flags(self.status));
            }
            Some(e) => v["status_err"] = json!(e),
        }
        match self.zone_error() {
            None => v["zone_id"] = json!(self.zone_id),
            Some(e) if self.conn().is_some() => v["zone_err"] = json!(e),
            Some(_) => {}
        }
        match self.dir_error() {
            None => v["zone_dir"] = json!(self.zone_dir),
            Some(e) if self.conn().is_some() => v["zone_dir_err"] = json!(e),
            Some(_) => {}
        }
        if self.label_err == -2 {
            v["label_err"] = json!("ReadFail");
        }
        v
    }
}

impl OvsCtSnap {
    pub fn error(&self) -> Option<&'static str> {
        match self.err {
            0 => None,
            -1 => Some("Init"),
            -2 => Some("ReadFail"),
            -3 => Some("NoOvsBTF"),
            _ => Some("?"),
        }
    }

    /// The `ovs_ct` JSON object (null when the point is not an OVS one).
    pub fn json(&self) -> Value {
        if self.err == -1 {
            return Value::Null;
        }
        let mut v = json!({
            "ct": Value::Null, "commit": Value::Null, "zone_id": Value::Null, "zone_dir": Value::Null,
        });
        match self.error() {
            None => {
                v["ct"] = json!(format!("0x{:x}", self.ct));
                v["commit"] = json!(self.commit);
                v["zone_id"] = json!(self.zone_id);
                v["zone_flags"] = json!(self.zone_flags);
                if self.dir_err == 0 {
                    v["zone_dir"] = json!(self.zone_dir);
                } else {
                    v["zone_dir_err"] = json!("NoCfg");
                }
            }
            Some(e) => v["err"] = json!(e),
        }
        if self.key_valid != 0 {
            v["key_ct_state"] = json!(self.key_ct_state);
            v["key_ct_zone"] = json!(self.key_ct_zone);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(ctinfo_name(4), "IP_CT_RELATED_REPLY");
        assert_eq!(ctinfo_name(5), "UNKNOWN_VALUE");
        assert_eq!(tcp_state_name(2), "TCP_SYN_SENT");
        assert_eq!(tcp_state_name(255), "UNKNOWN_STATE(255)");
        assert_eq!(tcp_flag_names(0x12), vec!["SYN", "ACK"]);
        let mut l = [0u8; 16];
        l[0] = 1;
        assert_eq!(label_hex(&l), format!("0x{:032x}", 1));
    }

    #[test]
    fn status_bits() {
        let m: Vec<(String, i64)> = [
            ("IPS_EXPECTED_BIT", 0),
            ("IPS_EXPECTED", 1),
            ("IPS_SEEN_REPLY_BIT", 1),
            ("IPS_CONFIRMED_BIT", 3),
            ("IPS_TEMPLATE_BIT", 11),
            ("IPS_UNTRACKED_BIT", 12),
            ("IPS_NAT_CLASH_BIT", 12),
            ("__IPS_MAX_BIT", 16),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), *v))
        .collect();
        let b = StatusBits::from_members(&m);
        assert_eq!(b.describe(0x0a), "NOT_TEMPLATE|SEEN_REPLY|CONFIRMED");
        assert_eq!(b.describe(0x800), "TEMPLATE");
        assert_eq!(b.flags(0x1000), vec!["UNTRACKED/NAT_CLASH"]);
        assert_eq!(b.flags(0x20000), vec!["BIT17"]);
    }

    #[test]
    fn running_kernel_status_names() {
        let btf = KernelBtf::load();
        let b = StatusBits::load(&btf);
        if !b.names.is_empty() {
            assert_eq!(
                b.describe(0x188),
                "NOT_TEMPLATE|CONFIRMED|SRC_NAT_DONE|DST_NAT_DONE"
            );
        }
    }
}
