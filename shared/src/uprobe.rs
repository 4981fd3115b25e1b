//! Uprobe targets: find the library (or executable) that defines a symbol,
//! turn the symbol into a file offset, and attach uprobes/uretprobes to it.
//!
//! Discovery order: `--lib PATH`; else, with a PID, the files mapped in
//! `/proc/PID/maps` (read through `/proc/PID/root` so containers work); else
//! each library name in the ld.so cache (`ldconfig -p`) and the usual library
//! folders. Symbols match by name ignoring `@VERSION`, `NAME` or `__NAME`; all
//! matches must share one address. Uprobes attach to the inode, so symlinks are
//! resolved first.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use blazesym::inspect::source::{Elf, Source};
use blazesym::inspect::Inspector;
use blazesym::SymType;
use libbpf_rs::{Link, ProgramMut};

/// A resolved uprobe target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UprobeTarget {
    /// The file as the user knows it (canonical path, or the path in the
    /// target's mount namespace for `-p`).
    pub path: PathBuf,
    /// The path this process opens to attach (may go through /proc/PID/root).
    pub open_path: PathBuf,
    /// The symbol name found (e.g. `pthread_rwlock_wrlock` or `__pthread_rwlock_wrlock`).
    pub symbol: String,
    /// Virtual address in the ELF file.
    pub addr: u64,
    /// File offset (what the kernel's uprobe takes).
    pub offset: u64,
}

impl UprobeTarget {
    /// `path:symbol+0xoffset` (shown once on stderr and in the attached line).
    pub fn describe(&self) -> String {
        format!(
            "{}:{}+0x{:x}",
            self.path.display(),
            self.symbol,
            self.offset
        )
    }
}

/// The usual library folders searched after the ld.so cache.
pub const LIB_DIRS: &[&str] = &[
    "/lib64",
    "/usr/lib64",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib",
    "/usr/lib",
];

/// Is `path` a readable ELF file? Errors name the problem.
pub fn check_elf(path: &Path) -> Result<(), String> {
    let mut f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if f.metadata().map(|m| !m.is_file()).unwrap_or(true) {
        return Err(format!("{}: not a regular file", path.display()));
    }
    let mut magic = [0u8; 4];
    if f.read_exact(&mut magic).is_err() || &magic != b"\x7fELF" {
        return Err(format!("{}: not an ELF file", path.display()));
    }
    Ok(())
}

/// Find function `name` (or `__name`) in the ELF file `path`: (symbol, address, file offset).
pub fn find_symbol(path: &Path, name: &str) -> Result<(String, u64, u64), String> {
    check_elf(path)?;
    let mut elf = Elf::new(path);
    elf.debug_syms = false;
    let src = Source::Elf(elf);
    let inspector = Inspector::new();
    let alias = format!("__{name}");
    let found = inspector
        .lookup(&src, &[name, alias.as_str()])
        .map_err(|e| format!("{}: cannot read symbols: {e}", path.display()))?;
    let mut hits: Vec<(String, u64, u64)> = Vec::new();
    for list in &found {
        for s in list {
            if s.sym_type != SymType::Function || s.addr == 0 {
                continue;
            }
            let Some(off) = s.file_offset else { continue };
            hits.push((s.name.to_string(), s.addr, off));
        }
    }
    if hits.is_empty() {
        return Err(format!(
            "symbol {name} not found in {} (.dynsym/.symtab)",
            path.display()
        ));
    }
    let addrs: BTreeSet<u64> = hits.iter().map(|h| h.1).collect();
    if addrs.len() > 1 {
        return Err(format!(
            "symbol {name} is ambiguous in {}: {} different addresses",
            path.display(),
            addrs.len()
        ));
    }
    // Prefer the plain name over the __ alias (same address anyway).
    hits.sort_by_key(|h| h.0.starts_with("__"));
    Ok(hits.swap_remove(0))
}

/// Paths of `name` in the ld.so cache (`ldconfig -p`), then in the usual folders.
pub fn library_candidates(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for ldconfig in ["/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"] {
        let Ok(o) = std::process::Command::new(ldconfig)
            .arg("-p")
            .stderr(std::process::Stdio::null())
            .output()
        else {
            continue;
        };
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            // "	libc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6"
            let l = line.trim();
            if l.split_whitespace().next() == Some(name) {
                if let Some((_, p)) = l.rsplit_once("=> ") {
                    out.push(PathBuf::from(p.trim()));
                }
            }
        }
        break;
    }
    for d in LIB_DIRS {
        out.push(Path::new(d).join(name));
    }
    let mut seen = BTreeSet::new();
    out.into_iter()
        .filter_map(|p| fs::canonicalize(&p).ok())
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

/// Files mapped by process `pid`, in map order, without duplicates.
pub fn mapped_files(pid: u32) -> Result<Vec<PathBuf>, String> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| format!("cannot read /proc/{pid}/maps: {e}"))?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut it = line.splitn(6, char::is_whitespace);
        let path = it.nth(5).map(str::trim).unwrap_or("");
        if !path.starts_with('/') || path.ends_with(" (deleted)") {
            continue;
        }
        if seen.insert(path.to_string()) {
            out.push(PathBuf::from(path));
        }
    }
    Ok(out)
}

/// Resolve the target of a uprobe on `symbol`: explicit `lib`, else the files
/// mapped by `pid`, else `default_libs` (names such as `libpthread.so.0`,
/// `libc.so.6`) through the ld.so cache and the usual folders.
pub fn resolve(
    lib: Option<&Path>,
    pid: Option<u32>,
    symbol: &str,
    default_libs: &[&str],
) -> Result<UprobeTarget, String> {
    if let Some(lib) = lib {
        let canon = fs::canonicalize(lib).map_err(|e| format!("{}: {e}", lib.display()))?;
        let (sym, addr, offset) = find_symbol(&canon, symbol)?;
        return Ok(UprobeTarget {
            path: canon.clone(),
            open_path: canon,
            symbol: sym,
            addr,
            offset,
        });
    }
    if let Some(pid) = pid {
        for f in mapped_files(pid)? {
            let open = PathBuf::from(format!("/proc/{pid}/root{}", f.display()));
            if check_elf(&open).is_err() {
                continue;
            }
            if let Ok((sym, addr, offset)) = find_symbol(&open, symbol) {
                return Ok(UprobeTarget {
                    path: f,
                    open_path: open,
                    symbol: sym,
                    addr,
                    offset,
                });
            }
        }
        return Err(format!(
            "process {pid} maps no file that defines {symbol} (statically linked?)"
        ));
    }
    let mut tried = Vec::new();
    for name in default_libs {
        for p in library_candidates(name) {
            if let Ok((sym, addr, offset)) = find_symbol(&p, symbol) {
                return Ok(UprobeTarget {
                    path: p.clone(),
                    open_path: p,
                    symbol: sym,
                    addr,
                    offset,
                });
            }
            tried.push(p.display().to_string());
        }
    }
    Err(format!(
        "symbol {symbol} not found in any of: {} (use --lib)",
        if tried.is_empty() {
            default_libs.join(", ")
        } else {
            tried.join(", ")
        }
    ))
}

/// Attach `prog` as a uprobe (or uretprobe) on `t`, for process `pid` or all (-1).
pub fn attach(
    prog: &ProgramMut<'_>,
    retprobe: bool,
    pid: Option<u32>,
    t: &UprobeTarget,
) -> Result<Link, String> {
    let pid = pid.map(|p| p as i32).unwrap_or(-1);
    prog.attach_uprobe(retprobe, pid, &t.open_path, t.offset as usize)
        .map_err(|e| {
            format!(
                "attaching {} to {}: {e}",
                if retprobe { "uretprobe" } else { "uprobe" },
                t.describe()
            )
        })
}

/// The program called `name` in `obj`.
pub fn prog_mut<'o>(obj: &'o mut libbpf_rs::Object, name: &str) -> Option<ProgramMut<'o>> {
    obj.progs_mut().find(|p| p.name().to_string_lossy() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libc_defines_malloc() {
        let libs = library_candidates("libc.so.6");
        if libs.is_empty() {
            return; // not a glibc system
        }
        let t = resolve(None, None, "malloc", &["libc.so.6"]).unwrap();
        assert!(t.offset > 0);
        assert!(t.path.to_string_lossy().contains("libc"));
        assert!(resolve(None, None, "no_such_symbol_xyz", &["libc.so.6"]).is_err());
    }

    #[test]
    fn non_elf_is_refused() {
        let e = find_symbol(Path::new("/proc/self/status"), "x").unwrap_err();
        assert!(e.contains("not"), "{e}");
        assert!(check_elf(Path::new("/nonexistent/x")).is_err());
    }

    #[test]
    fn own_maps_list_files() {
        let me = std::process::id();
        let files = mapped_files(me).unwrap();
        assert!(!files.is_empty());
    }
}
