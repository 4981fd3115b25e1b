//! Pieces of the VM-host tools (vm-network, virtio-network, vm-binding-tools):
//! libvirt UUIDs, the `vm_pairs.txt` file, cpuset strings and CPU masks,
//! interface lists and the tun/tap check. Every parser returns a one-line
//! message; callers turn it into exit 2 before any BPF object is opened.

use std::fs;
use std::path::Path;

/// A libvirt domain UUID in canonical 8-4-4-4-12 hex form.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// One line of a pairs file: two libvirt UUIDs, or two interface names
/// (sender tap, receiver tap) with an optional free-text label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PairLine {
    Uuids {
        line: usize,
        a: String,
        b: String,
    },
    Devs {
        line: usize,
        send: String,
        recv: String,
        label: Option<String>,
    },
}

impl PairLine {
    pub fn line(&self) -> usize {
        match self {
            PairLine::Uuids { line, .. } | PairLine::Devs { line, .. } => *line,
        }
    }
}

/// Parse a `vm_pairs.txt` text: blank lines and `#` lines ignored; per line
/// two UUIDs, or two interface names plus an optional label; the same UUID
/// (or device) twice anywhere is an error. `uuids_only` refuses device lines.
pub fn parse_pairs(text: &str, file: &str, uuids_only: bool) -> Result<Vec<PairLine>, String> {
    let mut out = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = l.split_ascii_whitespace().collect();
        let (a, b) = match f.len() {
            2 | 3 => (f[0], f[1]),
            _ => {
                return Err(format!(
                    "{file}:{n}: expected two fields (two VM UUIDs, or sender and receiver tap), got {}",
                    f.len()
                ))
            }
        };
        let (ua, ub) = (is_uuid(a), is_uuid(b));
        let entry = if ua && ub {
            if f.len() == 3 {
                return Err(format!("{file}:{n}: a UUID line has exactly two fields"));
            }
            PairLine::Uuids {
                line: n,
                a: a.to_ascii_lowercase(),
                b: b.to_ascii_lowercase(),
            }
        } else if uuids_only || ua || ub {
            let bad = if !ua { a } else { b };
            return Err(format!("{file}:{n}: '{bad}' is not a VM UUID"));
        } else {
            for d in [a, b] {
                crate::cli::parse_ifname(d).map_err(|e| format!("{file}:{n}: '{d}': {e}"))?;
            }
            PairLine::Devs {
                line: n,
                send: a.to_string(),
                recv: b.to_string(),
                label: f.get(2).map(|s| s.to_string()),
            }
        };
        for k in [a.to_ascii_lowercase(), b.to_ascii_lowercase()] {
            if seen.contains(&k) {
                return Err(format!("{file}:{n}: '{k}' appears twice in the file"));
            }
            seen.push(k);
        }
        out.push(entry);
    }
    Ok(out)
}

/// Read and parse a pairs file.
pub fn read_pairs(path: &Path, uuids_only: bool) -> Result<Vec<PairLine>, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_pairs(&text, &path.display().to_string(), uuids_only)
}

/// Format a CPU set the kernel's way: `0-3,8,10-11`.
pub fn format_cpus(cpus: &[u32]) -> String {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}-{}", v[i], v[j])
        } else {
            v[i].to_string()
        });
        i = j + 1;
    }
    parts.join(",")
}

/// A CPU list as the comma list taskset prints: `0,2,4`.
pub fn comma_cpus(cpus: &[u32]) -> String {
    cpus.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// CPU mask in the sysfs format of rps_cpus/xps_cpus: 32-bit hex words, most
/// significant first, comma separated, at least `min_words` words.
pub fn cpu_mask_words(cpus: &[u32], min_words: usize) -> String {
    let top = cpus.iter().max().map(|m| *m as usize / 32 + 1).unwrap_or(1);
    let n = top.max(min_words).max(1);
    let mut words = vec![0u32; n];
    for &c in cpus {
        words[c as usize / 32] |= 1 << (c % 32);
    }
    words
        .iter()
        .rev()
        .map(|w| format!("{w:08x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parse a sysfs CPU mask (`00000000,0000ff00`, leading words optional).
pub fn parse_cpu_mask_words(s: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    let words: Vec<&str> = s.trim().split(',').collect();
    for (i, w) in words.iter().rev().enumerate() {
        let v = u32::from_str_radix(w.trim(), 16).ok()?;
        for b in 0..32 {
            if v & (1 << b) != 0 {
                cpus.push(i as u32 * 32 + b);
            }
        }
    }
    Some(cpus)
}

/// Split a device list given as comma and/or space separated names (a flag
/// may also be repeated); each name is validated.
pub fn parse_iface_list(items: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for it in items {
        for n in it
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let n = crate::cli::parse_ifname(n).map_err(|e| format!("'{n}': {e}"))?;
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    Ok(out)
}

/// Is `name` a tun/tap device of this network namespace (it has `tun_flags`)?
pub fn is_tun(name: &str) -> bool {
    Path::new(&format!("/sys/class/net/{name}/tun_flags")).exists()
}

/// Names of the tun/tap devices of this network namespace.
pub fn tun_devices() -> Vec<String> {
    crate::netdev::list()
        .into_iter()
        .filter(|n| is_tun(n))
        .collect()
}

/// ifindex of `name` or the spec's one-line error: `interface 'X' not found`.
pub fn ifindex_or_err(name: &str) -> Result<u32, String> {
    crate::cli::parse_ifname(name).map_err(|e| format!("interface '{name}': {e}"))?;
    crate::netdev::ifindex(name).ok_or_else(|| format!("interface '{name}' not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        assert!(is_uuid("0b1c3d5e-1111-2222-3333-444455556666"));
        assert!(!is_uuid("0b1c3d5e-1111-2222-3333-44445555666"));
        assert!(!is_uuid("0b1c3d5e11112222333344445555666600000"));
        assert!(!is_uuid("vnet48"));
    }

    #[test]
    fn pairs_files() {
        let u1 = "0b1c3d5e-1111-2222-3333-444455556666";
        let u2 = "0b1c3d5e-1111-2222-3333-444455556667";
        let t = format!("# comment\n\n{u1} {u2}\nvnet48 vnet45 web-db\n");
        let p = parse_pairs(&t, "f", false).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].line(), 3);
        assert!(
            matches!(&p[1], PairLine::Devs { send, label: Some(l), .. } if send == "vnet48" && l == "web-db")
        );
        assert!(parse_pairs(&t, "f", true).unwrap_err().contains("f:4"));
        assert!(parse_pairs(&format!("{u1} {u1}\n"), "f", false)
            .unwrap_err()
            .contains("twice"));
        assert!(parse_pairs(&format!("{u1} vnet1\n"), "f", false).is_err());
        assert!(parse_pairs("a\n", "f", false).unwrap_err().contains("f:1"));
        assert!(parse_pairs(&format!("{u1} {u2} x\n"), "f", false).is_err());
    }

    #[test]
    fn cpus_and_masks() {
        assert_eq!(format_cpus(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_cpus(&[5]), "5");
        assert_eq!(format_cpus(&[]), "");
        assert_eq!(
            cpu_mask_words(&[8, 9, 10, 11, 12, 13, 14, 15], 2),
            "00000000,0000ff00"
        );
        assert_eq!(cpu_mask_words(&[0, 33], 1), "00000002,00000001");
        assert_eq!(parse_cpu_mask_words("00000002,00000001"), Some(vec![0, 33]));
        assert_eq!(
            parse_iface_list(&["a,b".into(), "c d".into(), "a".into()]).unwrap(),
            vec!["a", "b", "c", "d"]
        );
        assert!(parse_iface_list(&["a234567890123456".into()]).is_err());
    }
}
