//! `set-vm-pair-cpu-affinity`: for each pair of VMs in a vm_pairs.txt file,
//! plan 4 dedicated CPUs per VM (two whole HT cores when possible), then —
//! after confirmation — pin the vCPUs (`binding`), the vhost threads
//! (`set-process-cpu-mem-affinitity`) and the taps' RPS/XPS to the CPUs left
//! on each VM's NUMA node.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use vm_binding_common as vb;

#[derive(Parser, Debug)]
#[command(
    name = "set-vm-pair-cpu-affinity",
    about = "Plan 4 dedicated CPUs per VM for each VM pair, then pin vCPUs, vhost threads and tap RPS/XPS"
)]
struct Args {
    /// File with one VM pair per line: two libvirt domain UUIDs
    #[arg(value_name = "VM_PAIRS_FILE")]
    pairs_file: PathBuf,
    /// Put both VMs of a pair on the same node (pair i on node i%2)
    #[arg(long)]
    same_node: bool,
    /// Answer yes to all three questions
    #[arg(long, short = 'y')]
    yes: bool,
    /// Print the plan and stop
    #[arg(long)]
    plan_only: bool,
    /// Print every command and file write instead of doing it
    #[arg(long)]
    dry_run: bool,
    /// The binding tool (default: `binding` beside this binary, else on PATH)
    #[arg(long, value_name = "PATH")]
    binding_cmd: Option<String>,
    /// The thread pinning tool (default: `set-process-cpu-mem-affinitity` beside this binary)
    #[arg(long, value_name = "PATH")]
    affinity_cmd: Option<String>,
    /// virsh to run
    #[arg(long, value_name = "PATH", default_value = "virsh")]
    virsh: String,
    /// The Linux/OVS bridge whose VM interfaces get RPS/XPS
    #[arg(long, value_name = "NAME", default_value = "vpcbr")]
    bridge: String,
    #[command(flatten)]
    roots: vb::Roots,
}

#[derive(Clone, Debug)]
struct Vm {
    uuid: String,
    node: u32,
    cpus: Vec<u32>,
}

/// Take 4 CPUs from `free` (sorted): the first two HT cores whose two
/// siblings are both free, else the first 4 free CPUs.
fn take4(r: &vb::Roots, free: &mut Vec<u32>) -> Option<Vec<u32>> {
    let mut cores: Vec<Vec<u32>> = Vec::new();
    for &c in free.iter() {
        let s = vb::siblings(r, c);
        if s.len() == 2 && s.iter().all(|x| free.contains(x)) && !cores.contains(&s) {
            cores.push(s);
        }
    }
    cores.sort_by_key(|c| c[0]);
    let pick: Vec<u32> = if cores.len() >= 2 {
        cores[0].iter().chain(cores[1].iter()).copied().collect()
    } else if free.len() >= 4 {
        free[..4].to_vec()
    } else {
        return None;
    };
    free.retain(|c| !pick.contains(c));
    Some(pick)
}

fn ask(yes: bool, q: &str) -> bool {
    if yes {
        println!("{q} (y/n) y");
        return true;
    }
    print!("{q} (y/n) ");
    let _ = std::io::stdout().flush();
    let mut l = String::new();
    let _ = std::io::stdin().lock().read_line(&mut l);
    matches!(l.trim(), "y" | "Y" | "yes")
}

/// The taps of domain `uuid` on `bridge`, from `virsh dumpxml`.
fn taps(virsh: &str, uuid: &str, bridge: &str) -> Result<Vec<String>, String> {
    let xml = vb::run(virsh, &vb::sv(&["dumpxml", uuid]))?;
    let mut out = Vec::new();
    for block in xml.split("<interface").skip(1) {
        let block = block.split("</interface>").next().unwrap_or("");
        let head = block.split('>').next().unwrap_or("");
        if !head.contains("type='bridge'") && !head.contains("type=\"bridge\"") {
            continue;
        }
        let attr = |tag: &str, name: &str| -> Option<String> {
            let i = block.find(&format!("<{tag} "))?;
            let rest = &block[i..];
            let rest = &rest[..rest.find('>')?];
            let j = rest.find(&format!("{name}="))? + name.len() + 1;
            let q = rest[j..].chars().next()?;
            let v = &rest[j + 1..];
            Some(v[..v.find(q)?].to_string())
        };
        if attr("source", "bridge").as_deref() == Some(bridge) {
            if let Some(d) = attr("target", "dev") {
                out.push(d);
            }
        }
    }
    Ok(out)
}

fn main() {
    let a: Args = shared::cli::parse();
    let r = &a.roots;
    if r.explain {
        r.explain(&[
            "reads: VM_PAIRS_FILE, machine.slice cpuset, node*/cpulist, thread_siblings_list",
            "plans: 4 CPUs per VM (two whole HT cores first), vm1 on node0 and vm2 on node1 (--same-node: pair i on node i%2)",
            "after 'y' (or --yes): binding --vm_uuid U --cpus .. --mem_numa_node N --cpu_mode exclusive, per VM",
            "after 'y': set-process-cpu-mem-affinitity -g U -c <node's remaining CPUs>, per VM",
            "after 'y': virsh dumpxml U -> taps on --bridge; writes <sysfs>/class/net/TAP/queues/{rx-*/rps_cpus,tx-*/xps_cpus}",
            "--plan-only stops after the plan; --dry-run prints commands and writes instead of doing them",
        ]);
    }
    let pairs = shared::vmhost::read_pairs(&a.pairs_file, true)
        .unwrap_or_else(|e| shared::cli::usage_error(e));
    if pairs.is_empty() {
        shared::cli::usage_error(format!(
            "{}: no VM pair in the file",
            a.pairs_file.display()
        ));
    }
    let slice = vb::machine_slice(r).unwrap_or_else(|e| shared::die(shared::EXIT_RUNTIME, e));
    let total = slice.cpus.len();
    let need = pairs.len() * 8;
    if total < 4 + need {
        shared::die(
            shared::EXIT_RUNTIME,
            format!("Not enough CPU in machine.slice ({total} CPUs, 4 kept for others, {need} needed for {} pairs)", pairs.len()),
        );
    }
    r.announce(&format!("planning {} VM pair(s)", pairs.len()));
    let nodes = vb::numa_nodes(r);
    let mut free: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for n in [0u32, 1] {
        let mut f: Vec<u32> = nodes
            .get(&n)
            .cloned()
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| slice.cpus.contains(c))
            .collect();
        f.sort_unstable();
        if !r.json {
            println!("NUMA node {n} available CPUs: {}", vb::comma_cpus(&f));
        }
        free.insert(n, f);
    }
    let mut plan: Vec<(usize, Vm, Vm)> = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        let shared::vmhost::PairLine::Uuids { a: u1, b: u2, line } = p else {
            unreachable!()
        };
        let (n1, n2) = if a.same_node {
            ((i % 2) as u32, (i % 2) as u32)
        } else {
            (0, 1)
        };
        let mut alloc = |u: &str, n: u32| -> Vm {
            let f = free.get_mut(&n).unwrap();
            match take4(r, f) {
                Some(c) => Vm {
                    uuid: u.to_string(),
                    node: n,
                    cpus: c,
                },
                None => shared::die(
                    shared::EXIT_RUNTIME,
                    format!("Not enough CPU on node{n} for VM {u}"),
                ),
            }
        };
        let v1 = alloc(u1, n1);
        let v2 = alloc(u2, n2);
        if !r.json {
            println!("Pair {} (line {line}): {u1} {u2}", i + 1);
            println!("  -> vm1 on node{n1}, vm2 on node{n2} (4 CPU each, 2-core preference)");
            println!("  vm1 {}: CPUs {}", v1.uuid, vb::comma_cpus(&v1.cpus));
            println!("  vm2 {}: CPUs {}", v2.uuid, vb::comma_cpus(&v2.cpus));
        }
        plan.push((*line, v1, v2));
    }
    if r.json {
        let js: Vec<_> = plan
            .iter()
            .map(|(l, v1, v2)| {
                json!({"line": l, "vm1": {"uuid": v1.uuid, "node": v1.node, "cpus": v1.cpus},
                       "vm2": {"uuid": v2.uuid, "node": v2.node, "cpus": v2.cpus}})
            })
            .collect();
        println!(
            "{}",
            json!({"type": "plan", "same_node": a.same_node, "pairs": js, "remaining": free})
        );
    } else {
        println!("Remaining unallocated CPUs:");
        for (n, f) in &free {
            if f.is_empty() {
                println!("  NUMA node {n}: No unallocated CPU");
            } else {
                println!("  NUMA node {n}: CPUs: {}", vb::comma_cpus(f));
            }
        }
        println!("CPU allocation plan complete.");
    }
    if a.plan_only {
        return;
    }
    let vms: Vec<&Vm> = plan.iter().flat_map(|(_, a, b)| [a, b]).collect();
    let binding = a
        .binding_cmd
        .clone()
        .unwrap_or_else(|| vb::beside_me("binding"));
    let affinity = a
        .affinity_cmd
        .clone()
        .unwrap_or_else(|| vb::beside_me("set-process-cpu-mem-affinitity"));
    let mut failures = 0;
    let exec = |prog: &str, args: Vec<String>| -> Result<String, String> {
        if a.dry_run {
            println!("dry run: {}", vb::show_cmd(prog, &args));
            Ok(String::new())
        } else {
            vb::run(prog, &args)
        }
    };
    if ask(a.yes, "Proceed with CPU binding?") {
        for vm in &vms {
            println!("Binding VM: {}", vm.uuid);
            println!("  CPUs: {}", vb::comma_cpus(&vm.cpus));
            println!("  NUMA node: {}", vm.node);
            let args = vec![
                "--vm_uuid".into(),
                vm.uuid.clone(),
                "--cpus".into(),
                vb::comma_cpus(&vm.cpus),
                "--mem_numa_node".into(),
                vm.node.to_string(),
                "--cpu_mode".into(),
                "exclusive".into(),
            ];
            let mut ok = false;
            for attempt in 1..=3 {
                match exec(&binding, args.clone()) {
                    Ok(_) => {
                        ok = true;
                        break;
                    }
                    Err(e) => {
                        println!("  attempt {attempt} failed: {e}");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
            if ok {
                println!("  VM {} bound successfully", vm.uuid);
            } else {
                println!("  VM {} binding failed after 3 attempts", vm.uuid);
                failures += 1;
            }
        }
    }
    if ask(a.yes, "Do you want to proceed with VHOST CPU binding?") {
        for vm in &vms {
            let rest = &free[&vm.node];
            if rest.is_empty() {
                println!(
                    "VM {}: no remaining CPU on node{} for vhost threads",
                    vm.uuid, vm.node
                );
                failures += 1;
                continue;
            }
            println!(
                "VHOST binding VM {} -> CPUs {}",
                vm.uuid,
                vb::comma_cpus(rest)
            );
            if let Err(e) = exec(
                &affinity,
                vec![
                    "-g".into(),
                    vm.uuid.clone(),
                    "-c".into(),
                    vb::comma_cpus(rest),
                ],
            ) {
                println!("  failed: {e}");
                failures += 1;
            }
        }
    }
    if ask(
        a.yes,
        "Do you want to configure RPS/XPS for VM network interfaces?",
    ) {
        let mut mapped = 0;
        for vm in &vms {
            let t = match taps(&a.virsh, &vm.uuid, &a.bridge) {
                Ok(t) => t,
                Err(e) => {
                    println!("VM {}: {e}", vm.uuid);
                    continue;
                }
            };
            let mask = shared::vmhost::cpu_mask_words(&free[&vm.node], 1);
            for tap in t {
                mapped += 1;
                println!("VM {} interface {tap}: RPS/XPS mask {mask}", vm.uuid);
                let q = r.sys(&format!("class/net/{tap}/queues"));
                let mut files: Vec<PathBuf> = std::fs::read_dir(&q)
                    .map(|d| {
                        d.flatten()
                            .flat_map(|e| {
                                let n = e.file_name().to_string_lossy().into_owned();
                                if n.starts_with("rx-") {
                                    Some(e.path().join("rps_cpus"))
                                } else if n.starts_with("tx-") {
                                    Some(e.path().join("xps_cpus"))
                                } else {
                                    None
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                files.sort();
                for f in files {
                    let before = vb::read_trim(&f).unwrap_or_default();
                    println!("  {}: Before: {before}", f.display());
                    if a.dry_run {
                        println!("  dry run: would write {mask}");
                        continue;
                    }
                    match std::fs::write(&f, &mask) {
                        Ok(()) => println!(
                            "  {}: After: {}",
                            f.display(),
                            vb::read_trim(&f).unwrap_or_default()
                        ),
                        Err(e) => {
                            println!("  {}: write failed: {e}", f.display());
                            failures += 1;
                        }
                    }
                }
            }
        }
        if mapped == 0 {
            shared::die(
                shared::EXIT_RUNTIME,
                format!(
                    "no VM interface on bridge {} found (virsh dumpxml)",
                    a.bridge
                ),
            );
        }
    }
    if failures > 0 {
        std::process::exit(shared::EXIT_RUNTIME);
    }
}
