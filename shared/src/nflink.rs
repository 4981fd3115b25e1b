//! BPF netfilter links (`BPF_PROG_TYPE_NETFILTER`, kernel >= 6.4): a program
//! run as a netfilter hook at a chosen family, hook and priority, e.g. right
//! before and right after conntrack (`NF_IP_PRI_CONNTRACK` -200 -/+ 1).
//!
//! A hook target is written `FAMILY:HOOK[,HOOK...]:PRIORITY[<|>]`
//! (`ipv4:PRE_ROUTING,LOCAL_OUT:-201<`: one link per hook). The kernel allows
//! one BPF link per hook and priority; with `<` (`>`) a taken priority is
//! retried one lower (higher) at a time, so two tools can run side by side.
//! Netfilter hooks belong to a network namespace: a link sees only packets of
//! the namespace it was attached in (the tool's own, or one given with
//! [`attach_in`]).

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use libbpf_rs::{Link, NetfilterOpts, ProgramMut};

/// Netfilter's IPv4 conntrack priority (`NF_IP_PRI_CONNTRACK`).
pub const NF_IP_PRI_CONNTRACK: i32 = -200;
/// IPv4 defragmentation priority (`NF_IP_PRI_CONNTRACK_DEFRAG`).
pub const NF_IP_PRI_CONNTRACK_DEFRAG: i32 = -400;

const HOOKS: &[(&str, i32)] = &[
    ("PRE_ROUTING", 0),
    ("LOCAL_IN", 1),
    ("FORWARD", 2),
    ("LOCAL_OUT", 3),
    ("POST_ROUTING", 4),
];

/// A parsed `FAMILY:HOOK[,HOOK...]:PRIORITY` target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NfTarget {
    /// NFPROTO_IPV4 (2) or NFPROTO_IPV6 (10).
    pub pf: i32,
    pub hooks: Vec<i32>,
    pub priority: i32,
    /// -1 / +1: on EBUSY try the next lower / higher priority; 0: do not.
    pub step: i32,
}

/// Priorities tried after a busy one (`<`/`>` targets).
const RETRIES: i32 = 16;

impl NfTarget {
    pub fn parse(s: &str) -> Result<NfTarget, String> {
        let mut it = s.split(':');
        let (Some(fam), Some(hook), Some(prio), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(format!(
                "bad netfilter target {s} (want FAMILY:HOOK:PRIORITY)"
            ));
        };
        let pf = match fam {
            "ipv4" => 2,
            "ipv6" => 10,
            _ => return Err(format!("bad netfilter family {fam}")),
        };
        let hooks = hook
            .split(',')
            .map(|h| {
                HOOKS
                    .iter()
                    .find(|(n, _)| *n == h)
                    .map(|(_, v)| *v)
                    .ok_or_else(|| format!("bad netfilter hook {h}"))
            })
            .collect::<Result<Vec<i32>, String>>()?;
        let (prio, step) = match prio.as_bytes().last() {
            Some(b'<') => (&prio[..prio.len() - 1], -1),
            Some(b'>') => (&prio[..prio.len() - 1], 1),
            _ => (prio, 0),
        };
        let priority = prio
            .parse::<i32>()
            .map_err(|_| format!("bad netfilter priority {prio}"))?;
        Ok(NfTarget {
            pf,
            hooks,
            priority,
            step,
        })
    }
}

/// `PRE_ROUTING`, `LOCAL_OUT`, ... for a hook number.
pub fn hook_name(hook: i32) -> &'static str {
    HOOKS
        .iter()
        .find(|(_, v)| *v == hook)
        .map(|(n, _)| *n)
        .unwrap_or("?")
}

/// Can this kernel load netfilter programs?
pub fn supported() -> bool {
    // SAFETY: plain libbpf probe call.
    unsafe {
        libbpf_sys::libbpf_probe_bpf_prog_type(
            libbpf_sys::BPF_PROG_TYPE_NETFILTER,
            std::ptr::null(),
        ) == 1
    }
}

/// Can netfilter programs read the current task (pid, comm)? Newer kernels
/// give them these helpers; where not, a program that calls them does not load.
pub fn task_helpers() -> bool {
    let probe = |f| {
        // SAFETY: plain libbpf probe call.
        unsafe {
            libbpf_sys::libbpf_probe_bpf_helper(
                libbpf_sys::BPF_PROG_TYPE_NETFILTER,
                f,
                std::ptr::null(),
            ) == 1
        }
    };
    probe(libbpf_sys::BPF_FUNC_get_current_pid_tgid) && probe(libbpf_sys::BPF_FUNC_get_current_comm)
}

/// Attach `prog` at `target` in the tool's network namespace (one link per hook).
pub fn attach(prog: &ProgramMut<'_>, target: &str) -> Result<Vec<Link>, String> {
    let t = NfTarget::parse(target)?;
    let mut links = Vec::new();
    for &hook in &t.hooks {
        let mut prio = t.priority;
        let link = loop {
            let r = prog.attach_netfilter_with_opts(NetfilterOpts {
                protocol_family: t.pf,
                hooknum: hook,
                priority: prio,
                flags: 0,
                ..Default::default()
            });
            match r {
                Ok(l) => break l,
                // Another BPF link holds this priority (EBUSY): the next one.
                Err(e)
                    if t.step != 0
                        && (prio - t.priority).abs() < RETRIES
                        && format!("{e:#}").contains("busy") =>
                {
                    prio += t.step
                }
                Err(e) => return Err(format!("{} priority {prio}: {e:#}", hook_name(hook))),
            }
        };
        links.push(link);
    }
    Ok(links)
}

/// Attach `prog` at `target` inside the network namespace `netns` (a file
/// such as `/run/netns/NAME` or `/proc/PID/ns/net`). The calling thread
/// enters the namespace for the attach only.
pub fn attach_in(prog: &ProgramMut<'_>, target: &str, netns: &Path) -> Result<Vec<Link>, String> {
    let own = File::open("/proc/thread-self/ns/net").map_err(|e| format!("own netns: {e}"))?;
    let other = File::open(netns).map_err(|e| format!("{}: {e}", netns.display()))?;
    nix::sched::setns(other.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("entering {}: {}", netns.display(), e.desc()))?;
    let res = attach(prog, target);
    if let Err(e) = nix::sched::setns(own.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET) {
        crate::die(
            crate::EXIT_RUNTIME,
            format!(
                "cannot return to the tool's own network namespace: {}",
                e.desc()
            ),
        );
    }
    res
}

/// The namespace files of `--netns` values: a name under /run/netns, a path,
/// or `all` (every named namespace that exists now).
pub fn netns_files(names: &[String]) -> Result<Vec<(String, PathBuf)>, String> {
    let mut out = Vec::new();
    for n in names {
        if n == "all" {
            let mut all: Vec<_> = std::fs::read_dir("/run/netns")
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            all.sort();
            for a in all {
                out.push((a.clone(), Path::new("/run/netns").join(a)));
            }
            continue;
        }
        let p = if n.contains('/') {
            PathBuf::from(n)
        } else {
            Path::new("/run/netns").join(n)
        };
        if !p.exists() {
            return Err(format!(
                "no network namespace {n} ({} does not exist)",
                p.display()
            ));
        }
        out.push((n.clone(), p));
    }
    out.dedup_by(|a, b| a.1 == b.1);
    Ok(out)
}

/// Attach every netfilter program of the plan also inside `netns`.
pub fn attach_plan_in(
    plan: &crate::hooks::Plan,
    obj: &mut libbpf_rs::Object,
    netns: &Path,
) -> Result<Vec<Link>, String> {
    let mut links = Vec::new();
    for r in &plan.hooks {
        let Some((c, target)) = &r.chosen else {
            continue;
        };
        if c.kind != crate::hooks::Kind::Netfilter {
            continue;
        }
        for name in std::iter::once(c.prog).chain(c.with.iter().copied()) {
            let prog = obj
                .progs_mut()
                .find(|p| p.name().to_string_lossy() == name)
                .ok_or_else(|| format!("program {name} missing from the BPF object"))?;
            links.extend(
                attach_in(&prog, target, netns).map_err(|e| format!("{}: {e}", r.hook.name))?,
            );
        }
    }
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = NfTarget::parse("ipv4:PRE_ROUTING:-201").unwrap();
        assert_eq!((t.pf, t.hooks.clone(), t.priority), (2, vec![0], -201));
        assert_eq!(hook_name(0), "PRE_ROUTING");
        let t = NfTarget::parse("ipv4:PRE_ROUTING,LOCAL_OUT:-199>").unwrap();
        assert_eq!((t.hooks.clone(), t.priority, t.step), (vec![0, 3], -199, 1));
        assert_eq!(NfTarget::parse("ipv4:LOCAL_IN:-201<").unwrap().step, -1);
        for bad in [
            "ipv4:PRE_ROUTING,X:1",
            "ipv4:PRE_ROUTING",
            "ipx:LOCAL_IN:0",
            "ipv4:IN:0",
            "ipv4:LOCAL_IN:x",
        ] {
            assert!(NfTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
