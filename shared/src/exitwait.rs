//! "Nothing left loaded when the tool has exited."
//!
//! Closing the last descriptor of a BPF link does not free its program at once:
//! since 6.9 the kernel puts the program only after an RCU grace period, and on a
//! busy host with lazy RCU (CONFIG_RCU_LAZY) that can take hundreds of
//! milliseconds. A script that runs a tool and then checks `bpftool prog` (or
//! starts the next tool and measures overhead) would see our programs still
//! there. So at exit the tool closes its descriptors, asks the kernel to run
//! pending RCU callbacks, and waits (bounded) until its own program IDs are gone.

use std::sync::Mutex;
use std::time::{Duration, Instant};

static PROG_IDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// How long exit may wait for the kernel; Ctrl-C must still end the tool
/// within a second.
const WAIT_LIMIT: Duration = Duration::from_millis(700);
/// Waiting this long without the programs going away: flush RCU callbacks.
const BARRIER_AFTER: Duration = Duration::from_millis(15);

extern "C" {
    fn atexit(cb: extern "C" fn()) -> libc::c_int;
}

/// The BPF program IDs this process holds, from its descriptors' fdinfo
/// (program descriptors and link descriptors both name a `prog_id`).
fn held_prog_ids() -> Vec<u32> {
    let mut ids = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return ids;
    };
    for ent in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(ent.path()) else {
            continue;
        };
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("prog_id:") {
                if let Ok(id) = v.trim().parse::<u32>() {
                    if id != 0 && !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
        }
    }
    ids
}

/// Remember the programs this process has loaded and, once per process, arrange
/// to wait for them at exit. Called when a tool announces it is attached.
pub fn arm() {
    let ids = held_prog_ids();
    if ids.is_empty() {
        return;
    }
    let mut held = PROG_IDS.lock().unwrap_or_else(|e| e.into_inner());
    let first = held.is_empty();
    for id in ids {
        if !held.contains(&id) {
            held.push(id);
        }
    }
    if first {
        // SAFETY: registers a plain function; it runs once, from exit().
        unsafe {
            atexit(wait_unloaded_at_exit);
        }
    }
}

fn prog_alive(id: u32) -> bool {
    // SAFETY: plain syscall wrappers on an integer ID / descriptor.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd >= 0 {
        unsafe { libc::close(fd) };
        true
    } else {
        false
    }
}

extern "C" fn wait_unloaded_at_exit() {
    let ids = match PROG_IDS.lock() {
        Ok(g) => g.clone(),
        Err(e) => e.into_inner().clone(),
    };
    // The process is ending: its descriptors (programs, links, maps, perf
    // events) would be closed right after this anyway; close them now so the
    // kernel can start freeing. Standard streams stay open.
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let fds: Vec<i32> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|&fd| fd > 2)
            .collect();
        for fd in fds {
            unsafe { libc::close(fd) };
        }
    }
    let start = Instant::now();
    let mut barrier_asked = false;
    loop {
        if !ids.iter().any(|&id| prog_alive(id)) {
            return;
        }
        if start.elapsed() >= WAIT_LIMIT {
            return;
        }
        if !barrier_asked && start.elapsed() >= BARRIER_AFTER {
            barrier_asked = true;
            // rcu_barrier() runs every pending (also lazy) RCU callback; it can
            // block, so it runs beside the bounded wait, never in its way.
            std::thread::spawn(|| {
                let _ = std::fs::write("/sys/module/rcutree/parameters/do_rcu_barrier", "1");
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
