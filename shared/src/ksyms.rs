//! Kernel symbolization from /proc/kallsyms (function+offset, [module]).
//!
//! Nothing is indexed up front: the addresses of a stack that are not in the
//! cache are resolved together in one streaming pass over /proc/kallsyms
//! (about 50 ms on a 120k-symbol kernel), and the answers are cached. Stacks of
//! drops repeat a lot, so after the first events almost every frame is a cache
//! hit, and peak memory stays at the cache, not a multi-megabyte symbol index.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};

/// (symbol start, name, module)
type Sym = (u64, String, Option<String>);

const CACHE_LIMIT: usize = 65536;

#[derive(Default)]
pub struct Kallsyms {
    cache: HashMap<u64, Option<Sym>>,
    /// Test input instead of /proc/kallsyms.
    text: Option<String>,
}

impl Kallsyms {
    pub fn new() -> Self {
        Self::default()
    }

    /// Use `text` (kallsyms format) instead of /proc/kallsyms.
    pub fn parse(&mut self, text: &str) {
        self.text = Some(text.to_string());
        self.cache.clear();
    }

    /// Resolve every address of `addrs` that is not cached yet, in one pass.
    pub fn prefetch(&mut self, addrs: &[u64]) {
        let mut missing: Vec<u64> = addrs
            .iter()
            .copied()
            .filter(|a| !self.cache.contains_key(a))
            .collect();
        if missing.is_empty() {
            return;
        }
        missing.sort_unstable();
        missing.dedup();
        if self.cache.len() + missing.len() > CACHE_LIMIT {
            self.cache.clear();
        }
        let mut best: Vec<Option<Sym>> = vec![None; missing.len()];
        let mut scan = |line: &str| {
            let mut it = line.split_whitespace();
            let (Some(a), Some(t), Some(n)) = (it.next(), it.next(), it.next()) else {
                return;
            };
            if !matches!(t, "t" | "T" | "w" | "W") {
                return;
            }
            let Ok(start) = u64::from_str_radix(a, 16) else {
                return;
            };
            if start == 0 {
                return; // kptr_restrict hides addresses
            }
            // The symbol containing an address is the last one starting at or before it.
            let upto = missing.partition_point(|&m| m < start);
            for b in best.iter_mut().skip(upto) {
                if b.as_ref().is_none_or(|(s, _, _)| *s < start) {
                    let module = it
                        .clone()
                        .next()
                        .map(|m| m.trim_start_matches('[').trim_end_matches(']').to_string());
                    *b = Some((start, n.to_string(), module));
                }
            }
        };
        match &self.text {
            Some(t) => t.lines().for_each(&mut scan),
            None => {
                if let Ok(f) = fs::File::open("/proc/kallsyms") {
                    let mut r = BufReader::with_capacity(64 * 1024, f);
                    let mut line = String::new();
                    while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
                        scan(&line);
                        line.clear();
                    }
                }
            }
        }
        for (a, b) in missing.into_iter().zip(best) {
            self.cache.insert(a, b);
        }
    }

    /// (name, offset, module) of the symbol containing `addr`.
    pub fn resolve(&mut self, addr: u64) -> Option<(&str, u64, Option<&str>)> {
        self.prefetch(&[addr]);
        match self.cache.get(&addr)? {
            Some((start, name, module)) => Some((name.as_str(), addr - start, module.as_deref())),
            None => None,
        }
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
        self.prefetch(addrs);
        let frames: Vec<String> = addrs.iter().map(|&a| self.format(a)).collect();
        let skip = frames.iter().take_while(|f| is_bpf_glue(f)).count();
        frames[skip..].to_vec()
    }

    /// Just the function name (for matching), if known.
    pub fn name(&mut self, addr: u64) -> Option<String> {
        self.resolve(addr).map(|(n, _, _)| n.to_string())
    }
}

/// Text symbols of /proc/kallsyms as (address, name, module), addresses > 0.
fn text_symbols() -> Vec<(u64, String, Option<String>)> {
    let Ok(text) = fs::read_to_string("/proc/kallsyms") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (a, t, n) = (it.next()?, it.next()?, it.next()?);
            if !matches!(t, "t" | "T") {
                return None;
            }
            let a = u64::from_str_radix(a, 16).ok().filter(|&a| a != 0)?;
            let m = it
                .next()
                .map(|m| m.trim_start_matches('[').trim_end_matches(']').to_string());
            Some((a, n.to_string(), m))
        })
        .collect()
}

/// The smallest text address above `start` (the end of the symbol at `start`).
fn next_after(sorted: &[u64], start: u64) -> u64 {
    let i = sorted.partition_point(|&a| a <= start);
    sorted.get(i).copied().unwrap_or(start + 0x1000)
}

/// Address ranges [start, end) of kernel function `name` and of its
/// compiler-split parts (`name.cold`, `name.isra.0`, ...), each up to the next
/// text symbol. Empty when kallsyms hides addresses or has no such function.
/// For checking in BPF whether a location (e.g. a kfree_skb caller) lies in it.
pub fn function_ranges(name: &str) -> Vec<(u64, u64)> {
    functions_ranges(&[name])
}

/// [`function_ranges`] of several functions from one read of /proc/kallsyms:
/// each function's ranges in address order, the functions in the order given.
pub fn functions_ranges(names: &[&str]) -> Vec<(u64, u64)> {
    let syms = text_symbols();
    let mut addrs: Vec<u64> = syms.iter().map(|s| s.0).collect();
    addrs.sort_unstable();
    addrs.dedup();
    let mut all = Vec::new();
    for name in names {
        let prefix = format!("{name}.");
        let mut out: Vec<(u64, u64)> = syms
            .iter()
            .filter(|(_, n, _)| n == name || n.starts_with(&prefix))
            .map(|(a, _, _)| (*a, next_after(&addrs, *a)))
            .collect();
        out.sort_unstable();
        out.dedup();
        all.extend(out);
    }
    all
}

/// [lowest, end of highest) text address of kernel module `module`'s
/// functions (a superset check; confirm single addresses with
/// [`Kallsyms::resolve`]). None when the module has no visible symbols.
pub fn module_text_range(module: &str) -> Option<(u64, u64)> {
    let syms = text_symbols();
    let mut addrs: Vec<u64> = syms.iter().map(|s| s.0).collect();
    addrs.sort_unstable();
    addrs.dedup();
    let mine: Vec<u64> = syms
        .iter()
        .filter(|(_, _, m)| m.as_deref() == Some(module))
        .map(|s| s.0)
        .collect();
    let lo = *mine.iter().min()?;
    let hi = *mine.iter().max()?;
    Some((lo, next_after(&addrs, hi)))
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
        // Data symbols never win: an address after some_data still belongs to icmp_rcv.
        assert_eq!(k.format(0xffffffff81002010), "icmp_rcv+0x1010");
        assert_eq!(
            k.format_stack(&[0x10, 0xffffffff81000800, 0xffffffff81001010]),
            vec!["kfree_skb_reason+0x0", "icmp_rcv+0x10"]
        );
    }

    #[test]
    fn running_kernel_resolves_a_known_function() {
        let Ok(text) = fs::read_to_string("/proc/kallsyms") else {
            return;
        };
        let Some(line) = text.lines().find(|l| l.ends_with(" T schedule")) else {
            return;
        };
        let addr = u64::from_str_radix(line.split_whitespace().next().unwrap(), 16).unwrap();
        if addr == 0 {
            return;
        }
        let mut k = Kallsyms::new();
        assert_eq!(k.format(addr + 4), "schedule+0x4");
    }
}
