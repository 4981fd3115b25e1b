//! `set-process-cpu-mem-affinitity` (the original's name, typo kept): pin every
//! thread whose name is exactly PATTERN (e.g. a VM's `vhost-<qemu pid>`
//! workers) to a CPU list, or to the free CPUs of a NUMA node, and with `-m`
//! move the process's memory to that node.

use clap::Parser;
use serde_json::json;
use vm_binding_common as vb;

#[derive(Parser, Debug)]
#[command(
    name = "set-process-cpu-mem-affinitity",
    about = "Pin threads named exactly PATTERN (e.g. vhost-<qemu pid>) to a CPU list or a NUMA node's free CPUs",
    after_help = "Exactly one of -p/-g and one of -n/-c. Threads are matched by their name (comm) exactly, \
or by a regular expression with -E; every thread of /proc/PID/task is looked at (vhost workers can be threads)."
)]
struct Args {
    /// Thread name to pin, matched exactly (e.g. vhost-3355256)
    #[arg(short = 'p', value_name = "PATTERN")]
    pattern: Option<String>,
    /// Guest UUID: pin the vhost threads of the QEMU process whose command line has guest=UUID (or -uuid UUID)
    #[arg(short = 'g', value_name = "GUEST_UUID")]
    guest: Option<String>,
    /// NUMA node: pin to the node's machine.slice CPUs not exclusively used by VMs
    #[arg(short = 'n', value_name = "NODE")]
    node: Option<String>,
    /// Explicit CPU list, e.g. 0,2,4 or 8-11
    #[arg(short = 'c', value_name = "CPU_LIST")]
    cpus: Option<String>,
    /// PATTERN is a regular expression (matched against the whole thread name)
    #[arg(short = 'E')]
    regex: bool,
    /// Also move the process's memory to the NUMA node(s) of the CPUs (migrate_pages)
    #[arg(short = 'm')]
    migrate: bool,
    /// Print what would change; change nothing
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    roots: vb::Roots,
}

fn usage(msg: impl std::fmt::Display) -> ! {
    shared::cli::usage_error(msg)
}

/// Cpus_allowed_list of a thread, from <proc>/PID/task/TID/status.
fn allowed(r: &vb::Roots, t: &vb::Task) -> Vec<u32> {
    let p = r
        .proc_root
        .join(format!("{}/task/{}/status", t.tgid, t.tid));
    let p2 = r.proc_root.join(format!("{}/status", t.tid));
    let s = std::fs::read_to_string(&p)
        .or_else(|_| std::fs::read_to_string(&p2))
        .unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| shared::proc::parse_sys_cpulist(v.trim()))
        .unwrap_or_default()
}

fn get_affinity(tid: u32) -> Result<Vec<u32>, String> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(tid as i32))
        .map_err(|e| format!("sched_getaffinity({tid}): {e}"))?;
    Ok((0..nix::sched::CpuSet::count() as u32)
        .filter(|&c| set.is_set(c as usize).unwrap_or(false))
        .collect())
}

fn set_affinity(tid: u32, cpus: &[u32]) -> Result<(), String> {
    let mut set = nix::sched::CpuSet::new();
    for &c in cpus {
        set.set(c as usize).map_err(|e| format!("CPU {c}: {e}"))?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid as i32), &set)
        .map_err(|e| format!("sched_setaffinity({tid}): {e}"))
}

fn migrate(pid: u32, nodes: &[u32]) -> Result<(), String> {
    let mut old = [0u64; 16];
    let mut new = [0u64; 16];
    for w in old.iter_mut() {
        *w = u64::MAX;
    }
    for &n in nodes {
        if n >= 1024 {
            return Err(format!("node {n} too large"));
        }
        new[n as usize / 64] |= 1 << (n % 64);
    }
    // SAFETY: migrate_pages(2) with valid node masks of 1024 bits.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_migrate_pages,
            pid as libc::c_long,
            1024 as libc::c_ulong,
            old.as_ptr(),
            new.as_ptr(),
        )
    };
    if rc < 0 {
        return Err(format!(
            "migrate_pages({pid}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn main() {
    let a: Args = shared::cli::parse();
    let r = &a.roots;
    if r.explain {
        r.explain(&[
            "reads: <proc>/*/task/*/comm (threads by name), <proc>/*/cmdline (-g), Cpus_allowed_list",
            "reads with -n: machine.slice and VM vCPU cpusets, node cpulists (as get_vm_ava_cpu)",
            "changes: CPU affinity of each matching thread (sched_setaffinity); with -m the process's memory node (migrate_pages)",
            "--dry-run changes nothing",
        ]);
    }
    // ---- validation (exit 2) ----
    let who = match (&a.pattern, &a.guest) {
        (Some(_), Some(_)) | (None, None) => {
            usage("give exactly one of -p PATTERN or -g GUEST_UUID")
        }
        (Some(p), None) => {
            if p.is_empty() {
                usage("-p: empty pattern");
            }
            None
        }
        (None, Some(g)) => {
            if !shared::vmhost::is_uuid(g) {
                usage(format!("invalid value '{g}' for '-g': not a UUID"));
            }
            Some(g.to_ascii_lowercase())
        }
    };
    if a.node.is_some() == a.cpus.is_some() {
        usage("give exactly one of -n NODE or -c CPU_LIST");
    }
    if r.proc_root != std::path::Path::new("/proc") && !a.dry_run {
        usage("--proc-root other than /proc only with --dry-run (it names no real thread)");
    }
    let nodes = vb::numa_nodes(r);
    let node: Option<u32> = a.node.as_ref().map(|n| match n.trim().parse::<u32>() {
        Ok(v) if nodes.contains_key(&v) => v,
        Ok(v) => usage(format!(
            "invalid value '{v}' for '-n': no NUMA node {v} (nodes: {:?})",
            nodes.keys().collect::<Vec<_>>()
        )),
        Err(_) => usage(format!("invalid value '{n}' for '-n': not a node number")),
    });
    let explicit: Option<Vec<u32>> = a.cpus.as_ref().map(|c| {
        let v = shared::args::parse_cpu_list(c)
            .unwrap_or_else(|e| usage(format!("invalid value '{c}' for '-c': {e}")));
        let online = vb::online_cpus(r);
        if !online.is_empty() {
            if let Some(bad) = v.iter().find(|x| !online.contains(x)) {
                usage(format!(
                    "invalid value '{c}' for '-c': CPU {bad} is not online"
                ));
            }
        }
        v
    });
    let matcher: Box<dyn Fn(&str) -> bool> = match (&a.pattern, a.regex) {
        (Some(p), true) => {
            let re = regex_lite::Regex::new(&format!("^(?:{p})$"))
                .unwrap_or_else(|e| usage(format!("invalid value '{p}' for '-p': {e}")));
            Box::new(move |s: &str| re.is_match(s))
        }
        (Some(p), false) => {
            let p = p.clone();
            Box::new(move |s: &str| s == p)
        }
        (None, _) => Box::new(|_: &str| false),
    };

    // ---- what to pin, where ----
    let mut pattern_owned = String::new();
    let matcher: Box<dyn Fn(&str) -> bool> = if let Some(g) = &who {
        let mut q = vb::find_cmdline(r, &format!("guest={g}"));
        if q.is_empty() {
            q = vb::find_cmdline(r, &format!("-uuid {g}"));
        }
        let Some((qpid, _)) = q.first() else {
            shared::die(
                shared::EXIT_RUNTIME,
                format!("no QEMU process with guest={g} on its command line"),
            );
        };
        pattern_owned = format!("vhost-{qpid}");
        eprintln!("Guest {g}: QEMU PID {qpid}, thread pattern {pattern_owned}");
        let p = pattern_owned.clone();
        Box::new(move |s: &str| s == p)
    } else {
        matcher
    };
    let cpus: Vec<u32> = match (node, explicit) {
        (_, Some(c)) => c,
        (Some(n), None) => {
            let slice =
                vb::machine_slice(r).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
            let vms = vb::vm_scopes(&slice);
            let avail = vb::available(&slice, &vms);
            let here: Vec<u32> = nodes[&n]
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|c| avail.contains(c))
                .collect();
            if here.is_empty() {
                shared::die(
                    shared::EXIT_RUNTIME,
                    format!("NUMA node {n} has no free CPU"),
                );
            }
            here
        }
        (None, None) => unreachable!(),
    };
    let mem_nodes: Vec<u32> = match node {
        Some(n) => vec![n],
        None => nodes
            .iter()
            .filter(|(_, c)| {
                c.as_ref()
                    .is_some_and(|c| c.iter().any(|x| cpus.contains(x)))
            })
            .map(|(n, _)| *n)
            .collect(),
    };
    let tasks = vb::find_threads(r, &*matcher);
    if tasks.is_empty() {
        shared::die(
            shared::EXIT_RUNTIME,
            format!(
                "no thread named '{}' found",
                a.pattern.clone().unwrap_or_else(|| pattern_owned.clone())
            ),
        );
    }
    r.announce(&format!(
        "{} thread(s) to pin to CPUs {}{}",
        tasks.len(),
        vb::comma_cpus(&cpus),
        if a.dry_run { " (dry run)" } else { "" }
    ));
    let mut failed = false;
    let mut migrated: Vec<u32> = Vec::new();
    for t in &tasks {
        let old = if r.proc_root == std::path::Path::new("/proc") {
            get_affinity(t.tid).unwrap_or_else(|_| allowed(r, t))
        } else {
            allowed(r, t)
        };
        let mut err = None;
        let new = if a.dry_run {
            cpus.clone()
        } else {
            match set_affinity(t.tid, &cpus).and_then(|_| get_affinity(t.tid)) {
                Ok(n) => n,
                Err(e) => {
                    err = Some(e);
                    old.clone()
                }
            }
        };
        let mut mig = None;
        if a.migrate && !migrated.contains(&t.tgid) {
            migrated.push(t.tgid);
            mig = Some(if a.dry_run {
                Ok(())
            } else {
                migrate(t.tgid, &mem_nodes)
            });
        }
        if r.json {
            println!(
                "{}",
                json!({"type": "pinned", "pid": t.tgid, "tid": t.tid, "comm": t.comm, "cmd": t.cmd,
                       "old": old, "new": new, "dry_run": a.dry_run, "error": err,
                       "mem_nodes": mig.as_ref().map(|_| mem_nodes.clone()),
                       "migrate_error": mig.as_ref().and_then(|m| m.clone().err())})
            );
        } else {
            println!(
                "Found process: {} (PID: {}, TID: {}, name: {})",
                t.cmd, t.tgid, t.tid, t.comm
            );
            println!(
                "pid {}'s current affinity list: {}",
                t.tid,
                vb::comma_cpus(&old)
            );
            println!(
                "pid {}'s current affinity mask: {}",
                t.tid,
                vb::hex_mask(&old)
            );
            if a.dry_run {
                println!(
                    "dry run: would set pid {}'s affinity list to {} (mask {})",
                    t.tid,
                    vb::comma_cpus(&new),
                    vb::hex_mask(&new)
                );
            } else {
                println!(
                    "pid {}'s new affinity list: {}",
                    t.tid,
                    vb::comma_cpus(&new)
                );
                println!("pid {}'s new affinity mask: {}", t.tid, vb::hex_mask(&new));
            }
            if let Some(e) = &err {
                println!("error: {e}");
            }
            match &mig {
                Some(Ok(())) if a.dry_run => println!(
                    "dry run: would migrate memory of PID {} to node(s) {:?}",
                    t.tgid, mem_nodes
                ),
                Some(Ok(())) => println!(
                    "memory of PID {} migrated to node(s) {:?}",
                    t.tgid, mem_nodes
                ),
                Some(Err(e)) => println!("error: {e}"),
                None => {}
            }
            println!("{}", "-".repeat(40));
        }
        failed |= err.is_some() || matches!(mig, Some(Err(_)));
    }
    if failed {
        std::process::exit(shared::EXIT_RUNTIME);
    }
}
