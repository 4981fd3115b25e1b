//! Hook plans: each hook point of a tool lists the ways to reach it, best first
//! (tp_btf, classic tracepoint, fentry, kprobe). At start the running kernel is
//! probed (BTF, tracefs, kallsyms function names, a real fentry test load), the
//! first usable way is chosen, the other programs are not loaded (autoload off),
//! and `--explain` prints the plan with the reason every other way was refused.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use libbpf_rs::{Link, Object, OpenObject};

use crate::btf::KernelBtf;
use crate::cli::AttachMode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    TpBtf,
    Tracepoint,
    Fentry,
    Kprobe,
    /// `raw_tp/NAME`: the raw tracepoint (arguments as in tp_btf, read
    /// through `ctx->args[]`); needs no BTF for the tracepoint itself.
    RawTp,
    /// `uprobe`/`uretprobe`: checked for the uprobe PMU only; the tool
    /// resolves the file and offset at run time and attaches it itself
    /// (shared::uprobe), so `Plan::attach` leaves it alone.
    Uprobe,
    /// A BPF `perf_event` program on software perf events the tool opens
    /// itself (shared::perf); checked for the software PMU only.
    PerfEvent,
    /// A BPF netfilter link (kernel >= 6.4): target `FAMILY:HOOK:PRIORITY`,
    /// e.g. `ipv4:PRE_ROUTING:-201` (see shared::nflink). Attached in the
    /// network namespace of the tool (and in more with `nflink::attach_in`).
    Netfilter,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::TpBtf => "tp_btf",
            Kind::Tracepoint => "tracepoint",
            Kind::Fentry => "fentry",
            Kind::Kprobe => "kprobe",
            Kind::RawTp => "raw_tp",
            Kind::Uprobe => "uprobe",
            Kind::PerfEvent => "perf_event",
            Kind::Netfilter => "netfilter",
        }
    }
    /// The `--attach` mode that selects this kind; `None` for kinds that
    /// have no alternative (uprobes, perf events) and are never refused.
    fn mode(self) -> Option<AttachMode> {
        match self {
            Kind::TpBtf => Some(AttachMode::TpBtf),
            Kind::Tracepoint => Some(AttachMode::Tracepoint),
            Kind::Fentry => Some(AttachMode::Fentry),
            Kind::Kprobe => Some(AttachMode::Kprobe),
            Kind::RawTp => Some(AttachMode::RawTp),
            Kind::Uprobe | Kind::PerfEvent | Kind::Netfilter => None,
        }
    }
    /// Attached by the tool itself (targets known only at run time).
    pub fn attached_by_tool(self) -> bool {
        matches!(self, Kind::Uprobe | Kind::PerfEvent)
    }
}

/// Extra condition on a candidate, checked against the running kernel.
#[derive(Clone, Copy, Debug)]
pub enum Need {
    None,
    /// tp_btf: the tracepoint has at least N arguments.
    ArgsAtLeast(usize),
    /// tp_btf: the tracepoint has fewer than N arguments.
    ArgsBelow(usize),
    /// Only when the named hook point (listed earlier) has no usable way:
    /// a substitute that would duplicate a better hook's events.
    Unless(&'static str),
    /// fentry/kprobe: parameter N of the function is called NAME in the
    /// kernel's BTF (vmlinux or module), so the program reads the right
    /// argument on this kernel. A function BTF does not describe passes.
    Param(usize, &'static str),
    /// fentry/kprobe: the function has a parameter called NAME at any
    /// position, for tools that read the position from BTF at start
    /// (`KernelBtf::func_params_any`) and pass it to BPF. Unlike `Param`, a
    /// function BTF does not describe is refused: its positions are unknown.
    /// Like `Param`, refuses a kprobe on an `.isra` clone.
    Named(&'static str),
    /// A file must exist (e.g. `/proc/sys/net/netfilter/nf_conntrack_max`:
    /// conntrack is loaded).
    Exists(&'static str),
    /// Every condition of the list.
    All(&'static [Need]),
}

impl Need {
    /// The hook points this condition says must be untraced.
    fn unless(&self) -> Vec<&'static str> {
        match self {
            Need::Unless(h) => vec![h],
            Need::All(l) => l.iter().flat_map(|n| n.unless()).collect(),
            _ => Vec::new(),
        }
    }
}

/// One way to reach a hook point: the program (by its name in the BPF object)
/// and its target (tracepoint `name`, `category/name`, or kernel function).
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub kind: Kind,
    pub prog: &'static str,
    pub target: &'static str,
    pub need: Need,
    /// What this way gives up compared with the best one ("" when nothing).
    pub loses: &'static str,
    /// More programs loaded and attached together with `prog`, to the same
    /// target (e.g. the kprobe entry half of a kretprobe).
    pub with: &'static [&'static str],
}

impl Candidate {
    pub const fn new(kind: Kind, prog: &'static str, target: &'static str) -> Self {
        Candidate {
            kind,
            prog,
            target,
            need: Need::None,
            loses: "",
            with: &[],
        }
    }
    pub const fn with(mut self, progs: &'static [&'static str]) -> Self {
        self.with = progs;
        self
    }
    pub const fn need(mut self, need: Need) -> Self {
        self.need = need;
        self
    }
    pub const fn loses(mut self, what: &'static str) -> Self {
        self.loses = what;
        self
    }
}

/// A place the tool must (or would like to) observe.
#[derive(Clone, Copy, Debug)]
pub struct HookPoint {
    pub name: &'static str,
    pub required: bool,
    pub candidates: &'static [Candidate],
}

/// What the running kernel offers, probed lazily and cached.
pub struct Kernel {
    pub btf: KernelBtf,
    kprobe_syms: HashMap<String, Option<String>>,
    fentry: Option<Result<(), String>>,
    tracefs: Option<Option<PathBuf>>,
}

impl Kernel {
    pub fn probe() -> Self {
        Kernel {
            btf: KernelBtf::load(),
            kprobe_syms: HashMap::new(),
            fentry: None,
            tracefs: None,
        }
    }

    /// The tracefs `events` folder, mounting tracefs if the host has not.
    pub fn tracefs_events(&mut self) -> Option<PathBuf> {
        if let Some(t) = &self.tracefs {
            return t.clone();
        }
        let found = find_tracefs_events().or_else(|| {
            let _ = fs::create_dir_all("/sys/kernel/tracing");
            let _ = nix::mount::mount(
                Some("tracefs"),
                "/sys/kernel/tracing",
                Some("tracefs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            );
            find_tracefs_events()
        });
        self.tracefs = Some(found.clone());
        found
    }

    /// Is there a kprobe-able text symbol `func` (or a compiler-suffixed
    /// `func.constprop.0`-style clone)? Returns the name to attach to.
    pub fn kprobe_symbol(&mut self, func: &str) -> Result<String, String> {
        if !Path::new("/sys/bus/event_source/devices/kprobe").exists() {
            return Err("kernel has no kprobe support (CONFIG_KPROBES off)".into());
        }
        if !self.kprobe_syms.contains_key(func) {
            let found = find_text_symbols(&[func]).remove(func).flatten();
            self.kprobe_syms.insert(func.to_string(), found);
        }
        self.kprobe_syms[func]
            .clone()
            .ok_or_else(|| format!("no function {func} in /proc/kallsyms"))
    }

    /// Resolve the kprobe targets of all these functions in one pass over
    /// /proc/kallsyms (a pass takes a while on big kernels and slow machines).
    pub fn prefetch_kprobe_symbols(&mut self, funcs: &[&str]) {
        let missing: Vec<&str> = funcs
            .iter()
            .copied()
            .filter(|f| !self.kprobe_syms.contains_key(*f))
            .collect();
        if missing.is_empty() || !Path::new("/sys/bus/event_source/devices/kprobe").exists() {
            return;
        }
        for (f, found) in find_text_symbols(&missing) {
            self.kprobe_syms.insert(f, found);
        }
    }

    /// fentry needs BPF trampolines: proven by loading and attaching a trivial
    /// program, once.
    pub fn fentry_usable(&mut self, func: &str) -> Result<(), String> {
        if !self.btf.has_func(func) {
            return Err(format!("no function {func} in kernel BTF"));
        }
        if self.fentry.is_none() {
            self.fentry = Some(crate::bpf::probe_fentry(&self.btf, func));
        }
        self.fentry.clone().unwrap()
    }

    /// `Need::Param` and `Need::Named` conditions against the function's BTF prototype.
    fn check_params(&self, c: &Candidate) -> Result<(), String> {
        let mut wanted = Vec::new();
        collect_params(&c.need, &mut wanted);
        let mut named = Vec::new();
        collect_named(&c.need, &mut named);
        if wanted.is_empty() && named.is_empty() {
            return Ok(());
        }
        let Some(params) = self.btf.func_params_any(c.target) else {
            if named.is_empty() {
                return Ok(());
            }
            return Err(format!(
                "no BTF prototype of {} on this kernel (argument positions unknown)",
                c.target
            ));
        };
        let missing: Vec<&str> = named
            .iter()
            .copied()
            .filter(|n| !params.iter().any(|p| p == n))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{} has parameters ({}) here: no parameter called {}",
                c.target,
                params.join(", "),
                missing.join(", ")
            ));
        }
        for (i, name) in wanted {
            if params.get(i).map(String::as_str) != Some(name) {
                return Err(format!(
                    "{} has parameters ({}) here: argument {} is not {name}",
                    c.target,
                    params.join(", "),
                    i + 1
                ));
            }
        }
        Ok(())
    }

    fn check(&mut self, c: &Candidate) -> Result<String, String> {
        check_exists(&c.need)?;
        match c.kind {
            Kind::TpBtf => {
                if !self.btf.available() {
                    return Err("kernel has no BTF (/sys/kernel/btf/vmlinux)".into());
                }
                let n = self
                    .btf
                    .tp_btf_args(c.target)
                    .ok_or_else(|| format!("no tracepoint {} in kernel BTF", c.target))?;
                check_args(&c.need, n)?;
                Ok(c.target.to_string())
            }
            Kind::Tracepoint => {
                let events = self.tracefs_events().ok_or("tracefs not available")?;
                if events.join(c.target).is_dir() {
                    Ok(c.target.to_string())
                } else {
                    Err(format!(
                        "no tracepoint {} in {}",
                        c.target,
                        events.display()
                    ))
                }
            }
            Kind::Fentry => {
                self.check_params(c)?;
                self.fentry_usable(c.target).map(|_| c.target.to_string())
            }
            Kind::Kprobe => {
                let sym = self.kprobe_symbol(c.target)?;
                let mut wanted = Vec::new();
                collect_params(&c.need, &mut wanted);
                let mut named = Vec::new();
                collect_named(&c.need, &mut named);
                if sym.contains(".isra") && !(wanted.is_empty() && named.is_empty()) {
                    // IPA-SRA clones take other (removed, reordered) arguments.
                    return Err(format!(
                        "only the compiler clone {sym} exists; its arguments differ from {}'s",
                        c.target
                    ));
                }
                self.check_params(c)?;
                Ok(sym)
            }
            Kind::RawTp => {
                if self.btf.tp_btf_args(c.target).is_some() {
                    return Ok(c.target.to_string());
                }
                let events = self.tracefs_events().ok_or("tracefs not available")?;
                let found = fs::read_dir(&events)
                    .map(|d| {
                        d.filter_map(Result::ok)
                            .any(|e| e.path().join(c.target).is_dir())
                    })
                    .unwrap_or(false);
                if found {
                    Ok(c.target.to_string())
                } else {
                    Err(format!("no raw tracepoint {}", c.target))
                }
            }
            Kind::Uprobe => {
                if Path::new("/sys/bus/event_source/devices/uprobe").exists() {
                    Ok(c.target.to_string())
                } else {
                    Err("kernel has no uprobe support (no uprobe PMU)".into())
                }
            }
            Kind::PerfEvent => {
                if Path::new("/sys/bus/event_source/devices/software").exists() {
                    Ok(c.target.to_string())
                } else {
                    Err("kernel has no software perf events".into())
                }
            }
            Kind::Netfilter => {
                crate::nflink::NfTarget::parse(c.target)?;
                if crate::nflink::supported() {
                    Ok(c.target.to_string())
                } else {
                    Err("kernel has no BPF netfilter links (needs >= 6.4, CONFIG_NETFILTER_BPF_LINK)".into())
                }
            }
        }
    }
}

fn check_exists(n: &Need) -> Result<(), String> {
    match n {
        Need::Exists(p) if !Path::new(p).exists() => Err(format!("{p} does not exist")),
        Need::All(l) => l.iter().try_for_each(check_exists),
        _ => Ok(()),
    }
}

fn collect_params(n: &Need, out: &mut Vec<(usize, &'static str)>) {
    match n {
        Need::Param(i, name) => out.push((*i, name)),
        Need::All(l) => l.iter().for_each(|x| collect_params(x, out)),
        _ => {}
    }
}

fn collect_named(n: &Need, out: &mut Vec<&'static str>) {
    match n {
        Need::Named(name) => out.push(name),
        Need::All(l) => l.iter().for_each(|x| collect_named(x, out)),
        _ => {}
    }
}

/// `Need::ArgsAtLeast/ArgsBelow` (also inside `Need::All`) for a tracepoint with `n` arguments.
fn check_args(need: &Need, n: usize) -> Result<(), String> {
    match *need {
        Need::ArgsAtLeast(k) if n < k => Err(format!(
            "tracepoint has {n} arguments, this program needs {k}"
        )),
        Need::ArgsBelow(k) if n >= k => Err(format!(
            "tracepoint has {n} arguments; a richer program is used"
        )),
        Need::All(l) => l.iter().try_for_each(|x| check_args(x, n)),
        _ => Ok(()),
    }
}

fn find_tracefs_events() -> Option<PathBuf> {
    [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_dir())
}

/// For each function: its text symbol, or its first suffixed clone
/// (`func.isra.0`), from one pass over kallsyms.
fn find_text_symbols(funcs: &[&str]) -> HashMap<String, Option<String>> {
    let mut out: HashMap<String, Option<String>> =
        funcs.iter().map(|f| (f.to_string(), None)).collect();
    let mut exact: std::collections::HashSet<String> = Default::default();
    let Ok(f) = fs::File::open("/proc/kallsyms") else {
        return out;
    };
    for line in BufReader::new(f).lines().map_while(Result::ok) {
        let mut it = line.split_whitespace();
        let (Some(_addr), Some(ty), Some(name)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if !matches!(ty, "t" | "T") {
            continue;
        }
        let base = name.split('.').next().unwrap_or(name);
        let Some(slot) = out.get_mut(base) else {
            continue;
        };
        if name == base {
            *slot = Some(name.to_string());
            exact.insert(base.to_string());
        } else if slot.is_none()
            && !exact.contains(base)
            && (name.contains(".constprop") || name.contains(".isra") || name.contains(".llvm."))
        {
            // Whole-function clones only: `.cold`/`.part` are pieces of a body.
            *slot = Some(name.to_string());
        }
    }
    out
}

/// Optional hooks that are not traced: (hook, why).
pub type Missed = Vec<(&'static str, String)>;

/// The decision for one hook point.
pub struct Resolved {
    pub hook: &'static HookPoint,
    /// The chosen candidate and its resolved target (e.g. a suffixed symbol).
    pub chosen: Option<(&'static Candidate, String)>,
    pub refused: Vec<(&'static Candidate, String)>,
}

pub struct Plan {
    pub hooks: Vec<Resolved>,
}

impl Plan {
    /// Choose a way for every hook. `probe_all` (for --explain) also checks the
    /// ways after the chosen one, so the plan shows what a fallback would find.
    pub fn resolve(
        kernel: &mut Kernel,
        hooks: &'static [HookPoint],
        mode: AttachMode,
        probe_all: bool,
    ) -> Plan {
        let kprobes: Vec<&str> = hooks
            .iter()
            .flat_map(|h| h.candidates.iter())
            .filter(|c| c.kind == Kind::Kprobe)
            .map(|c| c.target)
            .collect();
        if mode == AttachMode::Auto || mode == AttachMode::Kprobe {
            kernel.prefetch_kprobe_symbols(&kprobes);
        }
        let mut out = Vec::new();
        for hook in hooks {
            let mut r = Resolved {
                hook,
                chosen: None,
                refused: Vec::new(),
            };
            for c in hook.candidates {
                if r.chosen.is_some() && !probe_all {
                    r.refused
                        .push((c, "not probed (a better way was found first)".into()));
                    continue;
                }
                if mode != AttachMode::Auto && c.kind.mode().is_some_and(|m| m != mode) {
                    r.refused
                        .push((c, format!("not selected (--attach {})", mode_name(mode))));
                    continue;
                }
                let covered = c.need.unless().into_iter().find(|other| {
                    out.iter()
                        .any(|o: &Resolved| o.hook.name == *other && o.chosen.is_some())
                });
                if let Some(other) = covered {
                    r.refused
                        .push((c, format!("not needed: {other} is traced")));
                    continue;
                }
                match kernel.check(c) {
                    Ok(t) if r.chosen.is_none() => r.chosen = Some((c, t)),
                    Ok(t) => r.refused.push((c, format!("usable ({t}) as a fallback"))),
                    Err(e) => r.refused.push((c, e)),
                }
            }
            out.push(r);
        }
        Plan { hooks: out }
    }

    /// The chosen candidate of hook `name`.
    pub fn chosen(&self, name: &str) -> Option<&'static Candidate> {
        self.hooks
            .iter()
            .find(|r| r.hook.name == name)
            .and_then(|r| r.chosen.as_ref().map(|(c, _)| *c))
    }

    /// Do not use hook `name` after all (a tool option makes it pointless);
    /// `--explain` and the warnings show `why`.
    pub fn skip(&mut self, name: &str, why: &str) {
        if let Some(r) = self.hooks.iter_mut().find(|r| r.hook.name == name) {
            if let Some((c, _)) = r.chosen.take() {
                r.refused.insert(0, (c, format!("skipped: {why}")));
            }
        }
    }

    /// Replace the shown target of hook `name` (e.g. a uprobe's resolved
    /// `path:symbol+offset`), for `--explain` and the attached line.
    pub fn set_target(&mut self, name: &str, target: String) {
        if let Some(r) = self.hooks.iter_mut().find(|r| r.hook.name == name) {
            if let Some((_, t)) = r.chosen.as_mut() {
                *t = target;
            }
        }
    }

    /// Error when a required hook has no usable way, or nothing at all attaches.
    pub fn check(&self) -> Result<(), String> {
        for r in &self.hooks {
            if r.hook.required && r.chosen.is_none() {
                let why: Vec<String> = r
                    .refused
                    .iter()
                    .map(|(c, e)| format!("{} {}: {}", c.kind.name(), c.target, e))
                    .collect();
                return Err(format!(
                    "cannot trace {} on this kernel ({})",
                    r.hook.name,
                    why.join("; ")
                ));
            }
        }
        if self.hooks.iter().all(|r| r.chosen.is_none()) {
            return Err("no hook of this tool is available on this kernel (see --explain)".into());
        }
        Ok(())
    }

    pub fn explain(&self) -> String {
        let mut s = String::from("Hook plan for this kernel:\n");
        for r in &self.hooks {
            let req = if r.hook.required {
                "required"
            } else {
                "optional"
            };
            match &r.chosen {
                Some((c, t)) => {
                    s.push_str(&format!(
                        "  {} ({}): {} {} [program {}]\n",
                        r.hook.name,
                        req,
                        c.kind.name(),
                        t,
                        c.prog
                    ));
                    if !c.loses.is_empty() {
                        s.push_str(&format!("      note: {}\n", c.loses));
                    }
                }
                None => s.push_str(&format!("  {} ({}): NOT AVAILABLE\n", r.hook.name, req)),
            }
            for (c, why) in &r.refused {
                s.push_str(&format!("      {} {}: {}\n", c.kind.name(), c.target, why));
            }
        }
        s
    }

    /// One line: `kfree_skb via tp_btf:kfree_skb, ...`
    pub fn summary(&self) -> String {
        self.hooks
            .iter()
            .filter_map(|r| {
                r.chosen
                    .as_ref()
                    .map(|(c, t)| format!("{} via {}:{}", r.hook.name, c.kind.name(), t))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Load only the chosen programs.
    pub fn set_autoload(&self, obj: &mut OpenObject) {
        let chosen: Vec<&str> = self
            .hooks
            .iter()
            .filter_map(|r| r.chosen.as_ref())
            .flat_map(|(c, _)| std::iter::once(c.prog).chain(c.with.iter().copied()))
            .collect();
        for mut p in obj.progs_mut() {
            let name = p.name().to_string_lossy().into_owned();
            p.set_autoload(chosen.contains(&name.as_str()));
        }
    }

    /// Attach the chosen programs. A failing optional hook is a warning; a
    /// failing required hook is an error.
    pub fn attach(&self, obj: &mut Object) -> Result<(Vec<Link>, Vec<String>), String> {
        let (links, missed) = self.attach_detailed(obj)?;
        let warnings = missed
            .into_iter()
            .map(|(hook, why)| format!("{hook} not traced: {why}"))
            .collect();
        Ok((links, warnings))
    }

    /// `attach`, with each optional hook that is not traced as (hook, why).
    pub fn attach_detailed(&self, obj: &mut Object) -> Result<(Vec<Link>, Missed), String> {
        let mut links = Vec::new();
        let mut missed = Vec::new();
        for r in &self.hooks {
            if r.chosen
                .as_ref()
                .is_some_and(|(c, _)| c.kind.attached_by_tool())
            {
                continue;
            }
            let Some((c, target)) = &r.chosen else {
                let skipped = r
                    .refused
                    .iter()
                    .any(|(_, why)| why.starts_with("skipped: "));
                if !r.hook.required && !skipped {
                    let reasons: Vec<String> = r
                        .refused
                        .iter()
                        .filter(|(_, e)| !e.starts_with("not needed: "))
                        .map(|(c, e)| format!("{} {}: {e}", c.kind.name(), c.target))
                        .collect();
                    let why = if reasons.is_empty() {
                        "no usable hook on this kernel".to_string()
                    } else {
                        format!("no usable hook on this kernel ({})", reasons.join("; "))
                    };
                    if !r
                        .refused
                        .iter()
                        .any(|(c, _)| c.need.unless().iter().any(|o| self.chosen(o).is_some()))
                    {
                        missed.push((r.hook.name, why));
                    }
                }
                continue;
            };
            let mut failed = None;
            for name in std::iter::once(c.prog).chain(c.with.iter().copied()) {
                let prog = obj.progs_mut().find(|p| p.name().to_string_lossy() == name);
                let Some(prog) = prog else {
                    return Err(format!("program {name} missing from the BPF object"));
                };
                match attach_one(&prog, c.kind, target) {
                    Ok(l) => links.extend(l),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                None => {}
                Some(e) if r.hook.required => {
                    return Err(format!(
                        "attaching {} to {} {}: {e}",
                        r.hook.name,
                        c.kind.name(),
                        target
                    ))
                }
                Some(e) => missed.push((
                    r.hook.name,
                    format!("attaching {} {} failed: {e}", c.kind.name(), target),
                )),
            }
        }
        Ok((links, missed))
    }
}

/// Attach one program of a chosen candidate: kprobes to the resolved symbol
/// (a `kretprobe` section as a return probe), netfilter links by target,
/// everything else by its section.
fn attach_one(
    prog: &libbpf_rs::ProgramMut<'_>,
    kind: Kind,
    target: &str,
) -> Result<Vec<Link>, String> {
    let res = match kind {
        Kind::Kprobe => {
            let ret = prog.section().to_string_lossy().starts_with("kretprobe");
            prog.attach_kprobe(ret, target)
        }
        Kind::Netfilter => return crate::nflink::attach(prog, target),
        _ => prog.attach(),
    };
    res.map(|l| vec![l]).map_err(|e| format!("{e:#}"))
}

fn mode_name(m: AttachMode) -> &'static str {
    match m {
        AttachMode::Auto => "auto",
        AttachMode::TpBtf => "tp_btf",
        AttachMode::Tracepoint => "tracepoint",
        AttachMode::Fentry => "fentry",
        AttachMode::Kprobe => "kprobe",
        AttachMode::RawTp => "raw_tp",
    }
}
