//! Process lookups: name -> tgids with pidof semantics, existence checks,
//! comm of a thread and of its thread-group leader, CPU topology files.

use std::fs;

/// `/proc/PID/comm` without the newline.
pub fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end_matches('\n').to_string())
}

/// Comm of the thread-group leader of thread `tid`.
pub fn leader_comm(tid: u32) -> Option<String> {
    let tgid = tgid_of(tid)?;
    comm(tgid)
}

/// The tgid of thread `tid` (from /proc/TID/status).
pub fn tgid_of(tid: u32) -> Option<u32> {
    let s = fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Does process (or thread) `pid` exist?
pub fn exists(pid: u32) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Processes whose comm equals `name` or whose argv[0] basename does (pidof).
pub fn pidof(name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.filter_map(Result::ok) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if comm(pid).as_deref() == Some(name) {
            out.push(pid);
            continue;
        }
        if let Ok(cmd) = fs::read(format!("/proc/{pid}/cmdline")) {
            let argv0 = cmd.split(|&b| b == 0).next().unwrap_or(&[]);
            let argv0 = String::from_utf8_lossy(argv0);
            let base = argv0.rsplit('/').next().unwrap_or("");
            if !base.is_empty() && base == name {
                out.push(pid);
            }
        }
    }
    out.sort_unstable();
    out
}

/// Threads of process `pid` (from /proc/PID/task).
pub fn threads(pid: u32) -> Vec<u32> {
    let mut v: Vec<u32> = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Parse a kernel CPU list file format (`0-3,8-11`), lenient (sysfs input).
pub fn parse_sys_cpulist(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for item in s.trim().split(',').filter(|x| !x.is_empty()) {
        match item.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(a) = item.trim().parse() {
                    out.push(a)
                }
            }
        }
    }
    out
}

/// CPUs in /sys/devices/system/cpu/{possible,online}.
pub fn cpus_possible() -> Vec<u32> {
    fs::read_to_string("/sys/devices/system/cpu/possible")
        .map(|s| parse_sys_cpulist(&s))
        .unwrap_or_else(|_| (0..num_cpus_fallback()).collect())
}

pub fn cpus_online() -> Vec<u32> {
    fs::read_to_string("/sys/devices/system/cpu/online")
        .map(|s| parse_sys_cpulist(&s))
        .unwrap_or_else(|_| cpus_possible())
}

fn num_cpus_fallback() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Hyper-thread siblings of `cpu` (including itself), sorted.
pub fn thread_siblings(cpu: u32) -> Vec<u32> {
    let p = format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list");
    let mut v = fs::read_to_string(p)
        .map(|s| parse_sys_cpulist(&s))
        .unwrap_or_default();
    if !v.contains(&cpu) {
        v.push(cpu);
    }
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpulists() {
        assert_eq!(parse_sys_cpulist("0-3,8\n"), vec![0, 1, 2, 3, 8]);
        assert!(!cpus_possible().is_empty());
        assert!(thread_siblings(0).contains(&0));
    }

    #[test]
    fn finds_itself() {
        let me = std::process::id();
        assert!(exists(me));
        assert!(!exists(0));
        let c = comm(me).unwrap();
        assert!(pidof(&c).contains(&me));
        assert_eq!(tgid_of(me), Some(me));
    }
}
