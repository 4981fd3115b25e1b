//! Structured stack frames and their formats (BCC, bpftrace, JSON), with
//! kernel frames from kallsyms and user frames from a snapshot of the
//! process's mappings. The snapshot is taken the first time a process is
//! remembered, so frames still resolve after it exited (as long as its files
//! are there); files are read by path (through /proc/PID/root while it lives).

use std::collections::HashMap;
use std::path::PathBuf;

use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer as Blaze};
use serde_json::json;

use crate::ksyms::Kallsyms;

/// One resolved frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub addr: u64,
    pub func: Option<String>,
    pub offset: u64,
    pub module: Option<String>,
}

impl Frame {
    pub fn unknown(addr: u64) -> Self {
        Frame {
            addr,
            func: None,
            offset: 0,
            module: None,
        }
    }

    /// BCC style: `func` or `func+0x1a` (with offset); `[unknown]`.
    pub fn bcc(&self, with_offset: bool) -> String {
        match &self.func {
            Some(f) if with_offset => format!("{f}+0x{:x}", self.offset),
            Some(f) => f.clone(),
            None => "[unknown]".into(),
        }
    }

    /// bpftrace style: `func+26` (decimal offset); unknown: `0x7f3a...`.
    pub fn bpftrace(&self) -> String {
        match &self.func {
            Some(f) => format!("{f}+{}", self.offset),
            None => format!("0x{:x}", self.addr),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "addr": format!("0x{:x}", self.addr),
            "func": self.func,
            "offset": self.offset,
            "module": self.module,
            "file": null,
            "line": null,
        })
    }
}

struct Mapping {
    start: u64,
    end: u64,
    file_off: u64,
    path: PathBuf,
    shown: String,
}

/// All kernel text symbols, sorted (about 12 bytes per symbol plus names),
/// for tools that resolve many stacks and must answer fast (a report at
/// Ctrl-C): one kallsyms pass up front instead of one per batch.
struct KernelIndex {
    addrs: Vec<u64>,
    name_at: Vec<u32>,
    /// "name\tmodule\n" or "name\n" per symbol.
    names: String,
}

impl KernelIndex {
    fn load() -> Option<KernelIndex> {
        let text = std::fs::read_to_string("/proc/kallsyms").ok()?;
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
                continue;
            }
            let m = it
                .next()
                .map(|m| m.trim_start_matches('[').trim_end_matches(']'));
            rows.push((addr, n, m));
        }
        if rows.is_empty() {
            return None;
        }
        rows.sort_by_key(|r| r.0);
        let mut idx = KernelIndex {
            addrs: Vec::with_capacity(rows.len()),
            name_at: Vec::with_capacity(rows.len()),
            names: String::new(),
        };
        for (a, n, m) in rows {
            idx.addrs.push(a);
            idx.name_at.push(idx.names.len() as u32);
            idx.names.push_str(n);
            if let Some(m) = m {
                idx.names.push('\t');
                idx.names.push_str(m);
            }
            idx.names.push('\n');
        }
        idx.names.shrink_to_fit();
        Some(idx)
    }

    fn resolve(&self, addr: u64) -> Option<(&str, u64, Option<&str>)> {
        let i = match self.addrs.binary_search(&addr) {
            Ok(i) => i,
            Err(0) => return None,
            Err(i) => i - 1,
        };
        let start = self.name_at[i] as usize;
        let end = start + self.names[start..].find('\n')?;
        let entry = &self.names[start..end];
        let (name, module) = match entry.split_once('\t') {
            Some((n, m)) => (n, Some(m)),
            None => (entry, None),
        };
        Some((name, addr - self.addrs[i], module))
    }
}

/// BPF's own frames at the top of a kernel stack (program, tracepoint glue).
fn is_bpf_glue(name: &str, module: Option<&str>) -> bool {
    module == Some("bpf")
        || name.starts_with("bpf_prog_")
        || name.starts_with("bpf_trace_run")
        || name.starts_with("__bpf_trace_")
        || name.starts_with("__traceiter_")
        || name.starts_with("perf_trace_")
        || name.starts_with("trace_event_raw_event_")
        || name.starts_with("bpf_trampoline_")
        || name.starts_with("__bpf_prog_enter")
}

/// Bound on the cached user stacks (cleared when reached).
const USER_CACHE_LIMIT: usize = 65536;

/// Kernel and user symbolization with per-process map snapshots.
pub struct Symbolizer {
    blaze: Blaze,
    ksyms: Kallsyms,
    kindex: Option<KernelIndex>,
    procs: HashMap<u32, Option<Vec<Mapping>>>,
    ucache: HashMap<(u32, Vec<u64>), Vec<Frame>>,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

fn snapshot(pid: u32) -> Option<Vec<Mapping>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.splitn(6, char::is_whitespace);
        let (Some(range), Some(perms), Some(off)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let path = it.nth(2).map(str::trim).unwrap_or("");
        if !perms.contains('x') || !path.starts_with('/') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end), Ok(file_off)) = (
            u64::from_str_radix(a, 16),
            u64::from_str_radix(b, 16),
            u64::from_str_radix(off, 16),
        ) else {
            continue;
        };
        let shown = path.trim_end_matches(" (deleted)").to_string();
        let via_root = PathBuf::from(format!("/proc/{pid}/root{shown}"));
        // Keep a path that outlives the process: the plain path if it is the
        // same file, else the one through /proc/PID/root (containers).
        let plain = PathBuf::from(&shown);
        let same = match (std::fs::metadata(&plain), std::fs::metadata(&via_root)) {
            (Ok(a), Ok(b)) => {
                use std::os::unix::fs::MetadataExt;
                a.dev() == b.dev() && a.ino() == b.ino()
            }
            _ => false,
        };
        out.push(Mapping {
            start,
            end,
            file_off,
            path: if same { plain } else { via_root },
            shown,
        });
    }
    Some(out)
}

impl Symbolizer {
    pub fn new() -> Self {
        Symbolizer {
            blaze: Blaze::new(),
            ksyms: Kallsyms::new(),
            kindex: None,
            procs: HashMap::new(),
            ucache: HashMap::new(),
        }
    }

    /// Snapshot the mappings of `pid` now if not done yet (call when a process
    /// is first seen, before it may exit).
    pub fn remember(&mut self, pid: u32) {
        if pid != 0 && !matches!(self.procs.get(&pid), Some(Some(_))) {
            let s = snapshot(pid);
            self.procs.insert(pid, s);
        }
    }

    /// Forget a snapshot (e.g. to re-read the maps of a long-running process
    /// that loaded new libraries).
    pub fn forget(&mut self, pid: u32) {
        self.procs.remove(&pid);
    }

    /// Load every kernel text symbol now (one kallsyms pass, a few MB), so
    /// that later `kernel()` calls never scan kallsyms again. For tools that
    /// resolve many stacks and must print fast at Ctrl-C.
    pub fn preload_kernel(&mut self) {
        if self.kindex.is_none() {
            self.kindex = KernelIndex::load();
        }
    }

    /// User frames of process `pid`, leaf first (cached per pid and stack).
    pub fn user(&mut self, pid: u32, addrs: &[u64]) -> Vec<Frame> {
        let key = (pid, addrs.to_vec());
        if let Some(f) = self.ucache.get(&key) {
            return f.clone();
        }
        let frames = self.user_uncached(pid, addrs);
        if self.ucache.len() >= USER_CACHE_LIMIT {
            self.ucache.clear();
        }
        self.ucache.insert(key, frames.clone());
        frames
    }

    fn user_uncached(&mut self, pid: u32, addrs: &[u64]) -> Vec<Frame> {
        self.remember(pid);
        let mut frames: Vec<Frame> = addrs.iter().map(|&a| Frame::unknown(a)).collect();
        let Some(Some(maps)) = self.procs.get(&pid) else {
            return frames;
        };
        // Group by mapping file: (path, shown) -> [(index, file offset)]
        let mut by_file: HashMap<(PathBuf, String), Vec<(usize, u64)>> = HashMap::new();
        for (i, &a) in addrs.iter().enumerate() {
            if let Some(m) = maps.iter().find(|m| a >= m.start && a < m.end) {
                by_file
                    .entry((m.path.clone(), m.shown.clone()))
                    .or_default()
                    .push((i, a - m.start + m.file_off));
            }
        }
        for ((path, shown), items) in by_file {
            let mut elf = Elf::new(&path);
            elf.debug_syms = false;
            let src = Source::Elf(elf);
            let offs: Vec<u64> = items.iter().map(|x| x.1).collect();
            let Ok(syms) = self.blaze.symbolize(&src, Input::FileOffset(&offs)) else {
                for (i, _) in &items {
                    frames[*i].module = Some(shown.clone());
                }
                continue;
            };
            for ((i, _), s) in items.iter().zip(syms) {
                frames[*i].module = Some(shown.clone());
                if let Symbolized::Sym(sym) = s {
                    frames[*i].func = Some(sym.name.to_string());
                    frames[*i].offset = sym.offset as u64;
                }
            }
        }
        frames
    }

    /// Resolve many kernel addresses in one pass over kallsyms (call with
    /// every address of a report before `kernel()`: each pass costs ~50 ms).
    pub fn prefetch_kernel(&mut self, addrs: &[u64]) {
        if self.kindex.is_none() {
            self.ksyms.prefetch(addrs);
        }
    }

    /// Kernel frames, leaf first, without BPF's own frames at the top.
    pub fn kernel(&mut self, addrs: &[u64]) -> Vec<Frame> {
        if let Some(idx) = &self.kindex {
            let skip = addrs
                .iter()
                .take_while(|&&a| match idx.resolve(a) {
                    Some((n, _, m)) => is_bpf_glue(n, m),
                    None => true,
                })
                .count();
            return addrs[skip..]
                .iter()
                .map(|&a| match idx.resolve(a) {
                    Some((n, off, m)) => Frame {
                        addr: a,
                        func: Some(n.to_string()),
                        offset: off,
                        module: Some(m.unwrap_or("kernel").to_string()),
                    },
                    None => Frame::unknown(a),
                })
                .collect();
        }
        let kept = self.ksyms.format_stack(addrs).len();
        let skip = addrs.len() - kept;
        addrs[skip..]
            .iter()
            .map(|&a| match self.ksyms.resolve(a) {
                Some((n, off, m)) => Frame {
                    addr: a,
                    func: Some(n.to_string()),
                    offset: off,
                    module: Some(m.unwrap_or("kernel").to_string()),
                },
                None => Frame::unknown(a),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let f = Frame {
            addr: 0x1000,
            func: Some("writer_a".into()),
            offset: 22,
            module: Some("/usr/bin/x".into()),
        };
        assert_eq!(f.bcc(false), "writer_a");
        assert_eq!(f.bcc(true), "writer_a+0x16");
        assert_eq!(f.bpftrace(), "writer_a+22");
        let u = Frame::unknown(0x7f00);
        assert_eq!(u.bcc(true), "[unknown]");
        assert_eq!(u.bpftrace(), "0x7f00");
        assert_eq!(u.to_json()["func"], serde_json::Value::Null);
    }

    #[inline(never)]
    fn here() -> u64 {
        here as fn() -> u64 as usize as u64
    }

    #[test]
    fn own_function_resolves() {
        let mut s = Symbolizer::new();
        let a = here() + 1;
        let f = s.user(std::process::id(), &[a]);
        assert_eq!(f.len(), 1);
        assert!(f[0].module.is_some(), "{:?}", f[0]);
    }

    #[test]
    fn kernel_index_agrees_with_kallsyms() {
        let mut s = Symbolizer::new();
        s.preload_kernel();
        let Some(idx) = &s.kindex else {
            return; // no kallsyms addresses here (not root, kptr_restrict)
        };
        let mut k = Kallsyms::new();
        for &a in idx.addrs.iter().step_by(idx.addrs.len() / 50 + 1) {
            let probe = a + 1;
            let mine = idx.resolve(probe).map(|(n, o, _)| (n.to_string(), o));
            let theirs = k.resolve(probe).map(|(n, o, _)| (n.to_string(), o));
            // Several symbols may share an address: compare offsets only then.
            assert_eq!(
                mine.as_ref().map(|m| m.1),
                theirs.as_ref().map(|t| t.1),
                "{probe:x}"
            );
        }
    }
}
