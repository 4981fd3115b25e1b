//! `binding`: shut down one libvirt VM, set its NUMA memory policy (and, in
//! non-exclusive mode, its virtio queue count), start it again and pin its
//! vCPUs — every step through `virsh`, logged as `[<run id> StepN/M]: ...`.
//! The original's platform pieces (management DB, SR-IOV service) are an
//! optional `--sriov-hook CMD` here.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use vm_binding_common as vb;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum CpuMode {
    #[value(name = "exclusive")]
    Exclusive,
    #[value(name = "non_exclusive")]
    NonExclusive,
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" => Ok(true),
        "false" | "0" | "no" | "n" => Ok(false),
        _ => Err("expected True or False".into()),
    }
}

fn parse_queues(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        _ => Err("queues must be 1-256".into()),
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "binding",
    about = "Shut down, re-configure (NUMA memory, virtio queues) and restart one libvirt VM with pinned vCPUs"
)]
struct Args {
    /// libvirt domain UUID (or name)
    #[arg(long = "vm_uuid", value_name = "STR")]
    vm_uuid: String,
    /// exclusive: vCPU i on the i-th CPU (CPU count = vCPU count); non_exclusive: every vCPU on the whole list
    #[arg(long = "cpu_mode", value_enum, default_value_t = CpuMode::Exclusive)]
    cpu_mode: CpuMode,
    /// CPU set, e.g. 2,3,18,19 or 8-11
    #[arg(long, value_name = "CPUSET")]
    cpus: String,
    /// NUMA node(s) for the VM's memory (virsh numatune --nodeset)
    #[arg(long = "mem_numa_node", value_name = "STR")]
    mem_numa_node: String,
    /// Destroy instead of a graceful shutdown
    #[arg(long = "force_shutdown", value_name = "BOOL", default_value = "False", value_parser = parse_bool, action = clap::ArgAction::Set)]
    force_shutdown: bool,
    /// virtio queues per interface (non_exclusive mode)
    #[arg(long, value_name = "INT", default_value = "4", value_parser = parse_queues)]
    queues: u32,
    /// Command called as `CMD release UUID` before shutdown and `CMD allocate UUID` before start (SR-IOV VFs)
    #[arg(long = "sriov-hook", value_name = "CMD")]
    sriov_hook: Option<String>,
    /// Also append the log to this file
    #[arg(long = "log-file", value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// virsh to run
    #[arg(long, value_name = "PATH", default_value = "virsh")]
    virsh: String,
    /// Seconds to wait for each state change (shut off, running)
    #[arg(long, value_name = "SECS", default_value = "300")]
    state_timeout: u64,
    /// Print the virsh commands that change the VM instead of running them
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    roots: vb::Roots,
}

const INTERRUPTED: &str = "interrupted";

struct Log {
    id: String,
    file: Option<std::fs::File>,
    total: usize,
    json: bool,
}

impl Log {
    fn step(&mut self, n: usize, msg: &str) {
        let l = format!("[{} Step{}/{}]:{}", self.id, n, self.total, msg);
        if self.json {
            println!(
                "{}",
                serde_json::json!({"type": "step", "run": self.id, "step": n, "of": self.total, "msg": msg})
            );
        } else {
            eprintln!("{l}");
        }
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{} {l}", shared::time::now_datetime());
        }
    }
}

struct Ctx<'a> {
    a: &'a Args,
    log: Log,
}

impl Ctx<'_> {
    fn virsh(&self, args: &[&str]) -> Result<String, String> {
        vb::run(&self.a.virsh, &vb::sv(args))
    }
    /// A state-changing command: retried 3 times; printed only in dry-run.
    fn change(&mut self, step: usize, args: &[&str]) -> Result<(), String> {
        self.check_interrupt(step)?;
        let shown = vb::show_cmd(&self.a.virsh, &vb::sv(args));
        if self.a.dry_run {
            self.log.step(step, &format!("dry run: {shown}"));
            return Ok(());
        }
        let mut last = String::new();
        for _ in 0..3 {
            match self.virsh(args) {
                Ok(_) => {
                    self.log.step(step, &format!("ok: {shown}"));
                    return Ok(());
                }
                Err(e) => {
                    last = e;
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        Err(last)
    }
    /// Stop between steps on Ctrl-C / SIGTERM (exit 0 with a note).
    fn check_interrupt(&mut self, step: usize) -> Result<(), String> {
        if vb::interrupted() {
            self.log.step(
                step,
                "interrupted: stopping before this step; the VM may be half re-configured",
            );
            return Err(INTERRUPTED.into());
        }
        Ok(())
    }
    fn state(&self) -> Result<String, String> {
        Ok(self
            .virsh(&["domstate", &self.a.vm_uuid])?
            .trim()
            .to_ascii_lowercase())
    }
    fn wait_state(&mut self, step: usize, want: &str) -> Result<(), String> {
        if self.a.dry_run {
            self.log
                .step(step, &format!("dry run: would wait for state '{want}'"));
            return Ok(());
        }
        let t0 = Instant::now();
        loop {
            let s = self.state()?;
            if s == want {
                self.log.step(step, &format!("state is {s}"));
                return Ok(());
            }
            self.check_interrupt(step)?;
            if t0.elapsed() > Duration::from_secs(self.a.state_timeout) {
                return Err(format!(
                    "VM still '{s}' after {} s (want '{want}')",
                    self.a.state_timeout
                ));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    fn hook(&mut self, step: usize, what: &str) -> Result<(), String> {
        let Some(cmd) = self.a.sriov_hook.clone() else {
            return Ok(());
        };
        let args = vec![what.to_string(), self.a.vm_uuid.clone()];
        if self.a.dry_run {
            self.log
                .step(step, &format!("dry run: {}", vb::show_cmd(&cmd, &args)));
            return Ok(());
        }
        let mut last = String::new();
        for _ in 0..3 {
            match vb::run(&cmd, &args) {
                Ok(_) => {
                    self.log.step(step, &format!("sriov hook {what} done"));
                    return Ok(());
                }
                Err(e) => {
                    last = e;
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        Err(last)
    }
}

/// Set `<driver queues='Q'/>` on every virtio interface of a domain XML.
fn set_queues(xml: &str, q: u32) -> String {
    let mut out = String::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<interface") {
        out.push_str(&rest[..i]);
        let end = rest[i..]
            .find("</interface>")
            .map(|e| i + e + "</interface>".len())
            .unwrap_or(rest.len());
        let mut block = rest[i..end].to_string();
        if block.contains("<model type='virtio'") || block.contains("<model type=\"virtio\"") {
            if let Some(d) = block.find("<driver") {
                let close = block[d..].find('>').map(|c| d + c).unwrap_or(block.len());
                let tag = &block[d..close];
                let mut new_tag: String = tag
                    .split(' ')
                    .filter(|p| !p.starts_with("queues="))
                    .collect::<Vec<_>>()
                    .join(" ");
                let self_closing = new_tag.ends_with('/');
                if self_closing {
                    new_tag.pop();
                    new_tag = format!("{} queues='{q}'/", new_tag.trim_end());
                } else {
                    new_tag = format!("{new_tag} queues='{q}'");
                }
                block.replace_range(d..close, &new_tag);
            } else if let Some(m) = block.find("<model") {
                let close = block[m..]
                    .find('>')
                    .map(|c| m + c + 1)
                    .unwrap_or(block.len());
                block.insert_str(close, &format!("<driver queues='{q}'/>"));
            }
        }
        out.push_str(&block);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn main() {
    let a: Args = shared::cli::parse();
    if a.roots.explain {
        a.roots.explain(&[
            "reads: virsh vcpucount U --config --maximum, virsh domstate U",
            "exclusive: shutdown (destroy with --force_shutdown) -> numatune --mode interleave --config -> start -> vcpupin i CPU_i",
            "non_exclusive: as exclusive, plus dumpxml/define with <driver queues=Q> before start; every vCPU on the whole list",
            "--sriov-hook CMD: CMD release U before shutdown, CMD allocate U before start",
            "--dry-run prints the virsh commands that change the VM",
        ]);
    }
    let cpus = shared::args::parse_cpu_list(&a.cpus).unwrap_or_else(|e| {
        shared::cli::usage_error(format!("invalid value '{}' for '--cpus': {e}", a.cpus))
    });
    let nodeset = a.mem_numa_node.trim();
    if shared::args::parse_cpu_list(nodeset).is_err() {
        shared::cli::usage_error(format!(
            "invalid value '{nodeset}' for '--mem_numa_node': not a node set"
        ));
    }
    if a.vm_uuid.trim().is_empty() {
        shared::cli::usage_error("--vm_uuid is empty");
    }
    let file = a.log_file.as_ref().map(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap_or_else(|e| {
                shared::cli::usage_error(format!(
                    "invalid value '{}' for '--log-file': {e}",
                    p.display()
                ))
            })
    });
    let id = vb::read_trim(std::path::Path::new("/proc/sys/kernel/random/uuid"))
        .unwrap_or_else(|| "run".into());
    let exclusive = a.cpu_mode == CpuMode::Exclusive;
    let total = if exclusive { 5 } else { 6 };
    let mut c = Ctx {
        a: &a,
        log: Log {
            id,
            file,
            total,
            json: a.roots.json,
        },
    };

    // Precheck: the domain and its vCPU count (read-only).
    let n: usize = match c.virsh(&["vcpucount", &a.vm_uuid, "--config", "--maximum"]) {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| {
            shared::die(
                shared::EXIT_RUNTIME,
                format!("virsh vcpucount printed '{}'", s.trim()),
            )
        }),
        Err(e) => shared::die(shared::EXIT_RUNTIME, format!("VM {}: {e}", a.vm_uuid)),
    };
    if exclusive && n != cpus.len() {
        shared::cli::usage_error(format!(
            "exclusive mode needs one CPU per vCPU: VM {} has {n} vCPUs, --cpus has {} CPUs",
            a.vm_uuid,
            cpus.len()
        ));
    }
    a.roots.announce(&format!(
        "re-binding VM {} ({n} vCPUs) to CPUs {}",
        a.vm_uuid,
        vb::comma_cpus(&cpus)
    ));
    let res = (|| -> Result<(), String> {
        let u = a.vm_uuid.as_str();
        // Step 1: shut down.
        let st = c.state()?;
        if st == "shut off" {
            c.log.step(1, "VM already shut off");
        } else {
            c.hook(1, "release")?;
            if a.force_shutdown {
                c.change(1, &["destroy", u])?;
            } else {
                c.change(1, &["shutdown", u])?;
            }
            c.wait_state(1, "shut off")?;
        }
        // Step 2: NUMA memory.
        c.change(
            2,
            &[
                "numatune",
                u,
                "--nodeset",
                nodeset,
                "--mode",
                "interleave",
                "--config",
            ],
        )?;
        let mut step = 3;
        if !exclusive {
            let xml = c.virsh(&["dumpxml", u, "--inactive"])?;
            let new = set_queues(&xml, a.queues);
            let path = std::env::temp_dir().join(format!("binding-{}.xml", std::process::id()));
            std::fs::write(&path, new).map_err(|e| format!("{}: {e}", path.display()))?;
            let p = path.display().to_string();
            let r = c.change(step, &["define", &p]);
            if !a.dry_run {
                let _ = std::fs::remove_file(&path);
            }
            r?;
            step += 1;
        }
        // SR-IOV VFs back, then start.
        if c.a.sriov_hook.is_some() {
            c.hook(step, "allocate")?;
        } else {
            c.log.step(step, "no SR-IOV hook: nothing to re-attach");
        }
        step += 1;
        c.change(step, &["start", u])?;
        c.wait_state(step, "running")?;
        step += 1;
        // Pin.
        for i in 0..n {
            let cpu = if exclusive {
                vb::comma_cpus(&cpus[i..=i])
            } else {
                vb::comma_cpus(&cpus)
            };
            c.change(step, &["vcpupin", u, &i.to_string(), &cpu])?;
        }
        Ok(())
    })();
    if let Err(e) = res {
        if e == INTERRUPTED {
            return;
        }
        shared::die(shared::EXIT_RUNTIME, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_in_xml() {
        let x = "<domain><interface type='bridge'><model type='virtio'/><driver name='vhost'/></interface>\
                 <interface type='bridge'><model type='virtio'/></interface><interface type='network'><model type='e1000'/></interface></domain>";
        let y = set_queues(x, 4);
        assert!(y.contains("<driver name='vhost' queues='4'/>"), "{y}");
        assert!(
            y.contains("<model type='virtio'/><driver queues='4'/>"),
            "{y}"
        );
        assert!(!y.contains("e1000'/><driver"));
    }
}
