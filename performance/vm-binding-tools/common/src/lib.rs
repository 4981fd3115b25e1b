//! What the VM CPU binding tools share: the roots they read (`--sysfs-root`,
//! `--cgroup-root`, `--proc-root`, so tests run on fake trees), NUMA nodes and
//! hyper-thread siblings from sysfs, the `machine.slice` cpuset (cgroup v1 or
//! v2) and the vCPU cpusets of every libvirt QEMU scope, the "free CPUs" rule
//! (machine.slice minus CPUs exclusively pinned to one vCPU), threads by name
//! from /proc, and running external commands (virsh, the other tools) with a
//! dry-run mode. No BPF: these tools only read /proc, sysfs and cgroupfs and
//! call sched_setaffinity(2), migrate_pages(2) and virsh.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Args;
use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ctrl-C or SIGTERM arrived since `Roots::announce`.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub use shared::vmhost::{comma_cpus, format_cpus};

/// Flags every binding tool has.
#[derive(Args, Debug, Clone)]
pub struct Roots {
    /// Root of sysfs (NUMA nodes, CPU topology, net devices); tests use a fake tree
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    pub sysfs_root: PathBuf,
    /// Root of the cgroup file system (machine.slice, VM scopes)
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
    /// Root of procfs (processes and threads by name)
    #[arg(long, value_name = "DIR", default_value = "/proc")]
    pub proc_root: PathBuf,
    /// One JSON object per line on stdout
    #[arg(long)]
    pub json: bool,
    /// Print what the tool reads and what it may change, then exit
    #[arg(long)]
    pub explain: bool,
    /// Accepted for the common tool interface; this tool runs once and ends
    #[arg(long, value_name = "SECS", value_parser = shared::cli::parse_duration, hide = true)]
    pub duration: Option<Duration>,
}

impl Roots {
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sysfs_root.join(rel)
    }

    /// `--explain` text: the files read and the actions.
    pub fn explain(&self, what: &[&str]) -> ! {
        println!("Plan (no BPF: this tool reads files and runs commands):");
        println!("  sysfs root:  {}", self.sysfs_root.display());
        println!("  cgroup root: {}", self.cgroup_root.display());
        println!("  proc root:   {}", self.proc_root.display());
        for w in what {
            println!("  {w}");
        }
        std::process::exit(0)
    }

    /// The line every tool prints once it starts working (stderr). From here
    /// on Ctrl-C / SIGTERM only set a flag (see `interrupted`): a tool ends
    /// its current step and exits 0.
    pub fn announce(&self, what: &str) {
        let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
        eprintln!("Attached: nothing (no BPF programs); {what}");
    }
}

/// Read a file as trimmed text.
pub fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

// ---- topology -----------------------------------------------------------------

/// NUMA node id -> its CPUs (from node*/cpulist). Nodes without a cpulist
/// file map to None.
pub fn numa_nodes(r: &Roots) -> BTreeMap<u32, Option<Vec<u32>>> {
    let mut out = BTreeMap::new();
    let dir = r.sys("devices/system/node");
    if let Ok(d) = fs::read_dir(&dir) {
        for e in d.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_prefix("node")
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let cpus =
                read_trim(&e.path().join("cpulist")).map(|s| shared::proc::parse_sys_cpulist(&s));
            out.insert(id, cpus);
        }
    }
    out
}

/// Hyper-thread siblings of `cpu` (itself included), sorted.
pub fn siblings(r: &Roots, cpu: u32) -> Vec<u32> {
    let p = r.sys(&format!(
        "devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"
    ));
    let mut v = read_trim(&p)
        .map(|s| shared::proc::parse_sys_cpulist(&s))
        .unwrap_or_default();
    if !v.contains(&cpu) {
        v.push(cpu);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Online CPUs (devices/system/cpu/online).
pub fn online_cpus(r: &Roots) -> Vec<u32> {
    read_trim(&r.sys("devices/system/cpu/online"))
        .map(|s| shared::proc::parse_sys_cpulist(&s))
        .unwrap_or_default()
}

/// `cpus` grouped by physical core: each group is a CPU's siblings that are in
/// `cpus`, groups ordered by their lowest CPU.
pub fn ht_groups(r: &Roots, cpus: &[u32]) -> Vec<Vec<u32>> {
    let mut done: Vec<u32> = Vec::new();
    let mut out = Vec::new();
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    for &c in &sorted {
        if done.contains(&c) {
            continue;
        }
        let g: Vec<u32> = siblings(r, c)
            .into_iter()
            .filter(|s| sorted.contains(s))
            .collect();
        done.extend(&g);
        out.push(g);
    }
    out
}

// ---- cgroups ------------------------------------------------------------------

/// The machine.slice cpuset: which file it came from, its text, its CPUs.
#[derive(Clone, Debug)]
pub struct Slice {
    pub dir: PathBuf,
    pub file: PathBuf,
    pub text: String,
    pub cpus: Vec<u32>,
    pub v2: bool,
}

/// cgroup v1 (`cpuset/machine.slice/cpuset.cpus`) or v2
/// (`machine.slice/cpuset.cpus.effective`).
pub fn machine_slice(r: &Roots) -> Result<Slice, String> {
    let v1 = r.cgroup_root.join("cpuset/machine.slice");
    let v2 = r.cgroup_root.join("machine.slice");
    let cands = [
        (v1.clone(), v1.join("cpuset.cpus"), false),
        (v2.clone(), v2.join("cpuset.cpus.effective"), true),
        (v2.clone(), v2.join("cpuset.cpus"), true),
    ];
    for (dir, file, v2) in cands {
        if let Some(text) = read_trim(&file) {
            let cpus = shared::proc::parse_sys_cpulist(&text);
            return Ok(Slice {
                dir,
                file,
                text,
                cpus,
                v2,
            });
        }
    }
    Err(format!(
        "machine.slice cpuset not found ({} or {}): is this a libvirt host?",
        v1.join("cpuset.cpus").display(),
        v2.join("cpuset.cpus.effective").display()
    ))
}

/// A libvirt QEMU scope and the cpuset of each of its vCPUs.
#[derive(Clone, Debug)]
pub struct VmScope {
    pub name: String,
    pub vcpus: BTreeMap<u32, Vec<u32>>,
    pub texts: BTreeMap<u32, String>,
}

impl VmScope {
    /// Exclusive: every vCPU is pinned to exactly one CPU. (The original
    /// called a VM exclusive when vcpu0's cpuset had no comma, so a range
    /// like `4-7` counted.)
    pub fn exclusive(&self) -> bool {
        !self.vcpus.is_empty() && self.vcpus.values().all(|c| c.len() == 1)
    }
    pub fn cpus(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.vcpus.values().flatten().copied().collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Every `machine-qemu*` scope under machine.slice with its vCPU cpusets
/// (`vcpuN/` directly under the scope, or under `libvirt/`).
pub fn vm_scopes(slice: &Slice) -> Vec<VmScope> {
    let mut out = Vec::new();
    let Ok(d) = fs::read_dir(&slice.dir) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = d
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("machine-qemu"))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for scope in dirs {
        let mut vm = VmScope {
            name: scope.file_name().unwrap().to_string_lossy().into_owned(),
            vcpus: BTreeMap::new(),
            texts: BTreeMap::new(),
        };
        for base in [scope.clone(), scope.join("libvirt")] {
            let Ok(d) = fs::read_dir(&base) else { continue };
            for e in d.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                let Some(i) = n.strip_prefix("vcpu").and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if let Some(t) = read_trim(&e.path().join("cpuset.cpus")) {
                    vm.vcpus.insert(i, shared::proc::parse_sys_cpulist(&t));
                    vm.texts.insert(i, t);
                }
            }
        }
        out.push(vm);
    }
    out
}

/// CPUs of machine.slice not exclusively pinned to a vCPU.
pub fn available(slice: &Slice, vms: &[VmScope]) -> Vec<u32> {
    let used: Vec<u32> = vms
        .iter()
        .filter(|v| v.exclusive())
        .flat_map(|v| v.cpus())
        .collect();
    slice
        .cpus
        .iter()
        .copied()
        .filter(|c| !used.contains(c))
        .collect()
}

// ---- processes ----------------------------------------------------------------

/// A thread (or process) found in /proc.
#[derive(Clone, Debug)]
pub struct Task {
    pub tgid: u32,
    pub tid: u32,
    pub comm: String,
    pub cmd: String,
}

fn numeric_dirs(p: &Path) -> Vec<u32> {
    let mut v: Vec<u32> = fs::read_dir(p)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Command line of process `pid` (space separated), or `[comm]` for kernel threads.
pub fn cmdline(r: &Roots, pid: u32, comm: &str) -> String {
    let raw = fs::read(r.proc_root.join(format!("{pid}/cmdline"))).unwrap_or_default();
    let s: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if s.is_empty() {
        format!("[{comm}]")
    } else {
        s.join(" ")
    }
}

/// Every thread whose name (comm) satisfies `pred`.
pub fn find_threads(r: &Roots, pred: &dyn Fn(&str) -> bool) -> Vec<Task> {
    let mut out = Vec::new();
    for pid in numeric_dirs(&r.proc_root) {
        let tids = {
            let t = numeric_dirs(&r.proc_root.join(format!("{pid}/task")));
            if t.is_empty() {
                vec![pid]
            } else {
                t
            }
        };
        for tid in tids {
            let p = if tid == pid {
                r.proc_root.join(format!("{pid}/comm"))
            } else {
                r.proc_root.join(format!("{pid}/task/{tid}/comm"))
            };
            let Some(comm) = fs::read_to_string(&p)
                .ok()
                .map(|s| s.trim_end_matches('\n').to_string())
            else {
                continue;
            };
            if pred(&comm) {
                out.push(Task {
                    tgid: pid,
                    tid,
                    cmd: cmdline(r, pid, &comm),
                    comm,
                });
            }
        }
    }
    out
}

/// Processes whose command line contains `needle`.
pub fn find_cmdline(r: &Roots, needle: &str) -> Vec<(u32, String)> {
    numeric_dirs(&r.proc_root)
        .into_iter()
        .filter_map(|pid| {
            let c = cmdline(r, pid, "");
            c.contains(needle).then_some((pid, c))
        })
        .collect()
}

// ---- commands -----------------------------------------------------------------

/// Run `prog args`: its stdout, or an error line with its stderr.
pub fn run(prog: &str, args: &[String]) -> Result<String, String> {
    let out = Command::new(prog)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "{prog} {} failed ({}): {}",
            args.join(" "),
            out.status,
            err.trim()
        ))
    }
}

/// Shell-quoted command for dry-run and log lines.
pub fn show_cmd(prog: &str, args: &[String]) -> String {
    std::iter::once(prog.to_string())
        .chain(args.iter().map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$;&|<>*?".contains(c))
            {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.clone()
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Strings from &str for command arguments.
pub fn sv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// The path of a sibling tool: `name` beside this binary if it exists there,
/// else `name` (found on PATH).
pub fn beside_me(name: &str) -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| name.to_string())
}

/// Hex CPU mask of any size (taskset's format, no 64-CPU limit).
pub fn hex_mask(cpus: &[u32]) -> String {
    let max = cpus.iter().max().copied().unwrap_or(0) as usize;
    let mut nibbles = vec![0u8; max / 4 + 1];
    for &c in cpus {
        nibbles[c as usize / 4] |= 1 << (c % 4);
    }
    let s: String = nibbles.iter().rev().map(|n| format!("{n:x}")).collect();
    let t = s.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(hex_mask(&[0]), "1");
        assert_eq!(hex_mask(&[0, 1]), "3");
        assert_eq!(hex_mask(&[4, 100]), "10000000000000000000000010");
        assert_eq!(show_cmd("a", &sv(&["b c", "d"])), "a 'b c' d");
    }
}
