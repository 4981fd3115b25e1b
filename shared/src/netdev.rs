//! Interface names: lookup in this network namespace, or in any named one
//! (`ip netns`), so a tool can watch a device that lives in a container's netns.

use std::fs;
use std::os::fd::AsFd;

/// ifindex of `name` in the current network namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

/// Where an interface was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Here(u32),
    /// In the named netns `ip netns` lists.
    InNetns(String, u32),
}

/// Find `name` here or in a named netns (/run/netns/*).
pub fn find(name: &str) -> Option<Found> {
    if let Some(i) = ifindex(name) {
        return Some(Found::Here(i));
    }
    let dir = fs::read_dir("/run/netns").ok()?;
    for e in dir.flatten() {
        let ns = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let name = name.to_string();
        // setns affects only the calling thread: do it in a throw-away one.
        let r = std::thread::spawn(move || {
            let f = fs::File::open(&path).ok()?;
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
            ifindex(&name)
        })
        .join()
        .ok()
        .flatten();
        if let Some(i) = r {
            return Some(Found::InNetns(ns, i));
        }
    }
    None
}

/// Interface names of this netns.
pub fn list() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_exists() {
        assert_eq!(find("lo"), Some(Found::Here(1)));
        assert!(find("no-such-if0").is_none());
    }
}
