//! Drop-reason names from the running kernel's `enum skb_drop_reason` (their
//! numbers differ between kernels: NETFILTER_DROP is 7 on 6.1, 8 on 6.12).

use std::collections::HashMap;

use crate::btf::KernelBtf;

pub struct DropReasons {
    names: HashMap<u32, String>,
}

impl DropReasons {
    pub fn load(btf: &KernelBtf) -> Self {
        Self::from_members(btf.enum_members("skb_drop_reason").unwrap_or_default())
    }

    pub fn from_members(members: Vec<(String, i64)>) -> Self {
        let names = members
            .into_iter()
            .filter_map(|(n, v)| {
                let short = n
                    .strip_prefix("SKB_DROP_REASON_")
                    .or_else(|| n.strip_prefix("SKB_"))?;
                Some((v as u32, short.to_string()))
            })
            .collect();
        DropReasons { names }
    }

    /// Whether this kernel names its drop reasons at all (>= 5.17).
    pub fn available(&self) -> bool {
        !self.names.is_empty()
    }

    pub fn name(&self, code: u32) -> String {
        self.names
            .get(&code)
            .cloned()
            .unwrap_or_else(|| format!("UNKNOWN({code})"))
    }

    /// The value of a reason by name, e.g. "NOT_SPECIFIED".
    pub fn code(&self, name: &str) -> Option<u32> {
        self.names.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_members() {
        let r = DropReasons::from_members(vec![
            ("SKB_NOT_DROPPED_YET".into(), 0),
            ("SKB_CONSUMED".into(), 1),
            ("SKB_DROP_REASON_NOT_SPECIFIED".into(), 2),
            ("SKB_DROP_REASON_NETFILTER_DROP".into(), 8),
        ]);
        assert_eq!(r.name(8), "NETFILTER_DROP");
        assert_eq!(r.name(2), "NOT_SPECIFIED");
        assert_eq!(r.name(99), "UNKNOWN(99)");
        assert_eq!(r.code("NETFILTER_DROP"), Some(8));
        assert!(r.available());
    }

    #[test]
    fn running_kernel_has_netfilter_drop() {
        let btf = KernelBtf::load();
        if !btf.available() {
            return;
        }
        let r = DropReasons::load(&btf);
        if r.available() {
            assert!(r.code("NETFILTER_DROP").is_some());
        }
    }
}
