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

/// Kernel and user symbolization with per-process map snapshots.
pub struct Symbolizer {
    blaze: Blaze,
    ksyms: Kallsyms,
    procs: HashMap<u32, Option<Vec<Mapping>>>,
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
            procs: HashMap::new(),
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

    /// User frames of process `pid`, leaf first.
    pub fn user(&mut self, pid: u32, addrs: &[u64]) -> Vec<Frame> {
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
        self.ksyms.prefetch(addrs);
    }

    /// Kernel frames, leaf first, without BPF's own frames at the top.
    pub fn kernel(&mut self, addrs: &[u64]) -> Vec<Frame> {
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
}
