//! `get_vm_ava_cpu`: which host CPUs are still free — machine.slice CPUs that
//! no VM has exclusively pinned to one of its vCPUs — per NUMA node, grouped
//! by hyper-thread core.

use clap::Parser;
use serde_json::{json, Value};
use vm_binding_common as vb;

#[derive(Parser, Debug)]
#[command(
    name = "get_vm_ava_cpu",
    about = "Free host CPUs per NUMA node and HT core: machine.slice CPUs minus those exclusively pinned to a VM vCPU"
)]
struct Args {
    #[command(flatten)]
    roots: vb::Roots,
}

fn main() {
    let a: Args = shared::cli::parse();
    let r = &a.roots;
    if r.explain {
        r.explain(&[
            "reads: <cgroup>/cpuset/machine.slice/cpuset.cpus (v1) or <cgroup>/machine.slice/cpuset.cpus.effective (v2)",
            "reads: machine-qemu*/[libvirt/]vcpuN/cpuset.cpus of every VM scope",
            "reads: <sysfs>/devices/system/node/node*/cpulist, cpu*/topology/thread_siblings_list",
            "changes: nothing",
        ]);
    }
    let slice = match vb::machine_slice(r) {
        Ok(s) => s,
        Err(e) => shared::die(shared::EXIT_RUNTIME, e),
    };
    r.announce("reading machine.slice and NUMA topology");
    let vms = vb::vm_scopes(&slice);
    let avail = vb::available(&slice, &vms);
    let nodes = vb::numa_nodes(r);

    let mut free = serde_json::Map::new();
    let mut text = String::from("VMs with exclusive CPU binding:\n");
    let mut excl = serde_json::Map::new();
    for vm in vms.iter().filter(|v| v.exclusive()) {
        text.push_str(&format!("VM: {}\n", vm.name));
        let mut m = serde_json::Map::new();
        for (i, t) in &vm.texts {
            text.push_str(&format!("  vcpu{i}: {t}\n"));
            m.insert(format!("vcpu{i}"), json!(vm.vcpus[i]));
        }
        excl.insert(vm.name.clone(), Value::Object(m));
    }
    text.push_str(&format!("{}\n", "-".repeat(54)));
    text.push_str(&format!("machine.slice cpus: {}\n", slice.text));
    text.push_str("Free CPUs by NUMA node and HT core:\n");
    for (id, cpus) in &nodes {
        match cpus {
            None => text.push_str(&format!("NUMA node {id}: no cpulist file\n")),
            Some(c) => {
                let here: Vec<u32> = c.iter().copied().filter(|x| avail.contains(x)).collect();
                let groups = vb::ht_groups(r, &here);
                if groups.is_empty() {
                    text.push_str(&format!("NUMA node {id}: no free CPU\n"));
                } else {
                    text.push_str(&format!("NUMA node {id}:\n"));
                    for g in &groups {
                        let s: Vec<String> = g.iter().map(u32::to_string).collect();
                        text.push_str(&format!("  cpu: {}\n", s.join(" ")));
                    }
                }
                free.insert(id.to_string(), json!(groups));
            }
        }
    }
    if r.json {
        println!(
            "{}",
            json!({"type": "available", "machine_slice": slice.cpus, "exclusive": excl,
                   "free": free, "available": avail})
        );
    } else {
        print!("{text}");
    }
}
