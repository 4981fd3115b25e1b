//! The BPF object life cycle shared by every tool: root check, hook plan and
//! `--explain`, the perf-buffer fallback, `.rodata` configuration by variable
//! name, load and attach with one-line errors.

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};

use libbpf_rs::btf::types::DataSec;
use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{AsRawLibbpf, Btf, Link, MapType, OpenObject, PrintLevel};

use crate::btf::KernelBtf;
use crate::cli::CommonArgs;
use crate::hooks::{HookPoint, Kernel, Plan};
use crate::{die, EXIT_RUNTIME};

/// libbpf's own messages (verifier logs included) only with --verbose.
pub fn init_libbpf_logging(verbose: bool) {
    if verbose {
        libbpf_rs::set_print(Some((PrintLevel::Info, |_lvl, msg: String| {
            eprint!("libbpf: {msg}")
        })));
    } else {
        libbpf_rs::set_print(None);
    }
}

pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        die(
            EXIT_RUNTIME,
            "must run as root (needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN)",
        );
    }
}

/// Probe the kernel and resolve the hook plan. Prints it and exits 0 on
/// `--explain`; exits 1 with the reason when a required hook is missing.
pub fn plan(common: &CommonArgs, hooks: &'static [HookPoint]) -> (Kernel, Plan) {
    init_libbpf_logging(common.verbose);
    let mut kernel = Kernel::probe();
    if !common.explain {
        require_root();
        if !kernel.btf.available() {
            die(EXIT_RUNTIME, "kernel BTF (/sys/kernel/btf/vmlinux) not found: this tool needs a kernel built with CONFIG_DEBUG_INFO_BTF");
        }
    }
    let plan = Plan::resolve(&mut kernel, hooks, common.attach, common.explain);
    if common.explain {
        print!("{}", plan.explain());
        if let Err(e) = plan.check() {
            println!("Result: this tool would fail here: {e}");
        } else {
            println!("Result: would attach {}", plan.summary());
        }
        std::process::exit(0);
    }
    if let Err(e) = plan.check() {
        die(EXIT_RUNTIME, e);
    }
    (kernel, plan)
}

/// How events reach user space on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    RingBuf,
    PerfBuf,
}

pub fn ringbuf_supported() -> bool {
    // SAFETY: plain libbpf probe call.
    unsafe {
        libbpf_sys::libbpf_probe_bpf_map_type(libbpf_sys::BPF_MAP_TYPE_RINGBUF, std::ptr::null())
            == 1
    }
}

/// Before load: keep only the chosen programs, and switch `events` to a perf
/// buffer where the kernel has no ring buffer.
pub fn prepare(obj: &mut OpenObject, plan: &Plan) -> Channel {
    plan.set_autoload(obj);
    if ringbuf_supported() {
        return Channel::RingBuf;
    }
    for mut m in obj.maps_mut() {
        if m.name().to_string_lossy() == "events" {
            let _ = m.set_type(MapType::PerfEventArray);
            let _ = m.set_key_size(4);
            let _ = m.set_value_size(4);
            let _ = m.set_max_entries(0);
        }
    }
    if let Err(e) = set_rodata(obj, "use_perfbuf", &[1]) {
        die(EXIT_RUNTIME, e);
    }
    Channel::PerfBuf
}

/// Fill `PREFIX_LO` / `PREFIX_HI`, the rodata arrays of `DECLARE_FN_RANGES`
/// (shared/bpf/fnrange.h), with up to `FN_RANGES_MAX` (4) address ranges
/// from [`crate::ksyms::function_ranges`]; the rest stay 0 (unused).
pub fn set_function_ranges(
    obj: &mut OpenObject,
    prefix: &str,
    ranges: &[(u64, u64)],
) -> Result<(), String> {
    const FN_RANGES_MAX: usize = 4;
    let mut lo = [0u8; FN_RANGES_MAX * 8];
    let mut hi = [0u8; FN_RANGES_MAX * 8];
    for (i, (a, b)) in ranges.iter().take(FN_RANGES_MAX).enumerate() {
        lo[i * 8..i * 8 + 8].copy_from_slice(&a.to_ne_bytes());
        hi[i * 8..i * 8 + 8].copy_from_slice(&b.to_ne_bytes());
    }
    set_rodata(obj, &format!("{prefix}_LO"), &lo)?;
    set_rodata(obj, &format!("{prefix}_HI"), &hi)
}

/// Write `bytes` into the `.rodata` variable `var` (a `const volatile` global)
/// before load. The size must match the variable's.
pub fn set_rodata(obj: &mut OpenObject, var: &str, bytes: &[u8]) -> Result<(), String> {
    // SAFETY: the object pointer is valid for the life of `obj`; the BTF is
    // owned by the object and only read here.
    let (offset, size) = unsafe {
        let raw = obj.as_libbpf_object().as_ptr();
        let btf_ptr = libbpf_sys::bpf_object__btf(raw);
        if btf_ptr.is_null() {
            return Err("BPF object has no BTF".into());
        }
        let btf = Btf::from_bpf_object(&*raw)
            .map_err(|e| e.to_string())?
            .ok_or("BPF object has no BTF")?;
        find_var(&btf, ".rodata", var)
            .ok_or_else(|| format!("no .rodata variable {var} in the BPF object"))?
    };
    if size != bytes.len() {
        return Err(format!(
            "size of {var}: object has {size} bytes, user space {} bytes",
            bytes.len()
        ));
    }
    for mut m in obj.maps_mut() {
        if m.name().to_string_lossy().ends_with(".rodata") {
            let data = m.initial_value_mut().ok_or("no .rodata contents")?;
            data[offset..offset + size].copy_from_slice(bytes);
            return Ok(());
        }
    }
    Err("BPF object has no .rodata map".into())
}

fn find_var(btf: &Btf<'_>, section: &str, var: &str) -> Option<(usize, usize)> {
    let sec = btf.type_by_name::<DataSec>(section)?;
    for v in sec.iter() {
        let t = btf.type_by_id::<libbpf_rs::btf::BtfType>(v.ty)?;
        if t.name()
            .map(|n| n.to_string_lossy() == var)
            .unwrap_or(false)
        {
            return Some((v.offset as usize, v.size));
        }
    }
    None
}

/// Open a skeleton (`XSkelBuilder::default()`) into `storage`; exit 1 on failure.
pub fn open<'o, B: SkelBuilder<'o>>(
    builder: B,
    storage: &'o mut MaybeUninit<OpenObject>,
) -> B::Output {
    builder
        .open(storage)
        .unwrap_or_else(|e| die(EXIT_RUNTIME, format!("opening the BPF object: {e}")))
}

/// Load the object; on failure one line (the verifier log only with --verbose).
pub fn load<'o, T: OpenSkel<'o>>(open: T) -> T::Output {
    match open.load() {
        Ok(s) => s,
        Err(e) => die(
            EXIT_RUNTIME,
            format!("loading the BPF programs failed: {e} (run with --verbose for libbpf's log)"),
        ),
    }
}

/// Attach what the plan chose; warnings for optional hooks go to stderr.
pub fn attach<'o, S: Skel<'o>>(plan: &Plan, skel: &mut S) -> Vec<Link> {
    match plan.attach(skel.object_mut()) {
        Ok((links, warnings)) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
            links
        }
        Err(e) => die(EXIT_RUNTIME, e),
    }
}

/// vmlinux functions to prove trampolines work on when the hook itself is in
/// a module (its BTF id is not in vmlinux).
const FENTRY_PROBE_FALLBACK: &[&str] = &["icmp_rcv", "ip_rcv", "tcp_v4_rcv", "netif_rx"];

/// Can this kernel run fentry programs (BPF trampolines)? Loads and attaches a
/// two-instruction program to `func` (or, for a module function, to a common
/// vmlinux function) and removes it again.
pub fn probe_fentry(btf: &KernelBtf, func: &str) -> Result<(), String> {
    let raw = btf.raw().ok_or("no kernel BTF")?;
    let find = |f: &str| -> i32 {
        let Ok(c) = CString::new(f) else { return -1 };
        // SAFETY: valid BTF pointer and NUL-terminated name.
        unsafe {
            libbpf_sys::btf__find_by_name_kind(
                raw.as_libbpf_object().as_ptr(),
                c.as_ptr(),
                libbpf_sys::BTF_KIND_FUNC,
            )
        }
    };
    let mut id = find(func);
    if id < 0 && btf.module_of_func(func).is_some() {
        id = FENTRY_PROBE_FALLBACK
            .iter()
            .map(|f| find(f))
            .find(|&i| i >= 0)
            .unwrap_or(-1);
    }
    // SAFETY: FFI calls with valid pointers; fds are wrapped to be closed.
    unsafe {
        if id < 0 {
            return Err(format!("no function {func} in kernel BTF"));
        }
        let mut insns: [libbpf_sys::bpf_insn; 2] = std::mem::zeroed();
        insns[0].code = 0xb7; // r0 = 0
        insns[1].code = 0x95; // exit
        let mut opts: libbpf_sys::bpf_prog_load_opts = std::mem::zeroed();
        opts.sz = std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _;
        opts.expected_attach_type = libbpf_sys::BPF_TRACE_FENTRY;
        opts.attach_btf_id = id as u32;
        let fd = libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_TRACING,
            c"probe_fentry".as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr(),
            2,
            &opts as *const _ as *mut _,
        );
        if fd < 0 {
            return Err(format!(
                "kernel refuses fentry programs ({})",
                nix::errno::Errno::from_raw(-fd).desc()
            ));
        }
        let _prog = OwnedFd::from_raw_fd(fd);
        let link =
            libbpf_sys::bpf_link_create(fd, 0, libbpf_sys::BPF_TRACE_FENTRY, std::ptr::null());
        if link < 0 {
            return Err(format!(
                "kernel cannot attach fentry programs ({})",
                nix::errno::Errno::from_raw(-link).desc()
            ));
        }
        drop(OwnedFd::from_raw_fd(link));
    }
    Ok(())
}

/// `attach` for the tools whose probes are each optional (the conntrack/OVS
/// family): every hook that is not traced prints
/// `WARN: cannot attach <hook>: <why>` on stderr; exit 1 when nothing at all
/// attached. Returns the links and the names of the hooks that attached.
pub fn attach_or_warn<'o, S: Skel<'o>>(
    plan: &Plan,
    skel: &mut S,
) -> (Vec<Link>, Vec<&'static str>) {
    match plan.attach_detailed(skel.object_mut()) {
        Ok((links, missed)) => {
            for (hook, why) in &missed {
                eprintln!("WARN: cannot attach {hook}: {why}");
            }
            let attached = plan
                .hooks
                .iter()
                .filter(|r| r.chosen.is_some() && !missed.iter().any(|(h, _)| *h == r.hook.name))
                .map(|r| r.hook.name)
                .collect();
            let by_tool = plan.hooks.iter().any(|r| {
                r.chosen
                    .as_ref()
                    .is_some_and(|(c, _)| c.kind.attached_by_tool())
            });
            if links.is_empty() && !by_tool {
                die(EXIT_RUNTIME, "no probe could be attached (see --explain)");
            }
            (links, attached)
        }
        Err(e) => die(EXIT_RUNTIME, e),
    }
}
