//! Kernel symbolization from /proc/kallsyms (function+offset, [module]).
//! Loaded on first use into three flat vectors (about 12 bytes per symbol plus
//! the names), so a tool that never prints a stack never pays for it.

use std::fs;

#[derive(Default)]
pub struct Kallsyms {
    addrs: Vec<u64>,
    name_at: Vec<u32>,
    names: String,
    loaded: bool,
}

impl Kallsyms {
    pub fn new() -> Self {
        Self::default()
    }

    fn load(&mut self) {
        self.loaded = true;
        let Ok(text) = fs::read_to_string("/proc/kallsyms") else {
            return;
        };
        self.parse(&text);
    }

    /// Parse kallsyms text: text symbols only, sorted by address.
    pub fn parse(&mut self, text: &str) {
        self.loaded = true;
        let mut rows: Vec<(u64, &str, Option<&str>)> = Vec::new();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(a), Some(t), Some(n)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            if !matches!(t, "t" | "T" | "w" | "W") {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(a, 16) else {
                continue;
            };
            if addr == 0 {
                continue; // kptr_restrict hides addresses
            }
            let module = it
                .next()
                .map(|m| m.trim_start_matches('[').trim_end_matches(']'));
            rows.push((addr, n, module));
        }
        rows.sort_by_key(|r| r.0);
        self.addrs = Vec::with_capacity(rows.len());
        self.name_at = Vec::with_capacity(rows.len());
        self.names = String::with_capacity(rows.iter().map(|r| r.1.len() + 1).sum());
        for (a, n, m) in rows {
            self.addrs.push(a);
            self.name_at.push(self.names.len() as u32);
            self.names.push_str(n);
            if let Some(m) = m {
                self.names.push_str(" [");
                self.names.push_str(m);
                self.names.push(']');
            }
            self.names.push('\n');
        }
        self.names.shrink_to_fit();
    }

    /// (name, offset, module) of the symbol containing `addr`.
    pub fn resolve(&mut self, addr: u64) -> Option<(&str, u64, Option<&str>)> {
        if !self.loaded {
            self.load();
        }
        let i = match self.addrs.binary_search(&addr) {
            Ok(i) => i,
            Err(0) => return None,
            Err(i) => i - 1,
        };
        let start = self.name_at[i] as usize;
        let end = self.names[start..].find('\n').map(|e| start + e)?;
        let entry = &self.names[start..end];
        let (name, module) = match entry.split_once(" [") {
            Some((n, m)) => (n, Some(m.trim_end_matches(']'))),
            None => (entry, None),
        };
        Some((name, addr - self.addrs[i], module))
    }

    /// `name+0xoff` or `name+0xoff [module]`, `0xaddr` when unknown.
    pub fn format(&mut self, addr: u64) -> String {
        match self.resolve(addr) {
            Some((n, off, Some(m))) => format!("{n}+0x{off:x} [{m}]"),
            Some((n, off, None)) => format!("{n}+0x{off:x}"),
            None => format!("0x{addr:x}"),
        }
    }

    /// A kernel stack as printed: BPF's own frames at the top (the program and
    /// the tracepoint/trampoline glue that ran it) are left out.
    pub fn format_stack(&mut self, addrs: &[u64]) -> Vec<String> {
        let frames: Vec<String> = addrs.iter().map(|&a| self.format(a)).collect();
        let skip = frames.iter().take_while(|f| is_bpf_glue(f)).count();
        frames[skip..].to_vec()
    }

    /// Just the function name (for matching), if known.
    pub fn name(&mut self, addr: u64) -> Option<String> {
        self.resolve(addr).map(|(n, _, _)| n.to_string())
    }
}

fn is_bpf_glue(frame: &str) -> bool {
    frame.ends_with(" [bpf]")
        || frame.starts_with("bpf_prog_")
        || frame.starts_with("bpf_trace_run")
        || frame.starts_with("__bpf_trace_")
        || frame.starts_with("__traceiter_")
        || frame.starts_with("perf_trace_")
        || frame.starts_with("trace_event_raw_event_")
        || frame.starts_with("bpf_trampoline_")
        || frame.starts_with("__bpf_prog_enter")
        || frame.starts_with("0x")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_offsets_and_modules() {
        let mut k = Kallsyms::new();
        k.parse(
            "ffffffff81000000 T _stext\nffffffff81001000 t icmp_rcv\nffffffff81000800 T kfree_skb_reason\n\
             ffffffff81002000 D some_data\nffffffffc0001000 t ovs_vport_receive\t[openvswitch]\n",
        );
        assert_eq!(k.format(0xffffffff81001010), "icmp_rcv+0x10");
        assert_eq!(k.format(0xffffffff81000800), "kfree_skb_reason+0x0");
        assert_eq!(
            k.format(0xffffffffc0001004),
            "ovs_vport_receive+0x4 [openvswitch]"
        );
        assert_eq!(k.format(0x10), "0x10");
        assert_eq!(k.name(0xffffffff81001001).as_deref(), Some("icmp_rcv"));
        assert_eq!(
            k.format_stack(&[0x10, 0xffffffff81000800, 0xffffffff81001010]),
            vec!["kfree_skb_reason+0x0", "icmp_rcv+0x10"]
        );
    }
}
