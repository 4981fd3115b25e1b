//! Per-CPU counter maps (`BPF_MAP_TYPE_PERCPU_ARRAY` / `PERCPU_HASH` whose
//! values are u64 counters): read every key summed over the CPUs, and "read and
//! clear" each interval.
//!
//! [`PerCpuCounters::take`] is the race-free way: the BPF side only ever adds,
//! user space remembers the previous sums and returns the difference, so no
//! increment that lands between a read and a clear is lost. [`read_and_clear`]
//! really zeroes the map (use it for hash maps whose keys come and go).

use std::collections::HashMap;

use libbpf_rs::{MapCore, MapFlags, MapType, OpenObject};

/// Set `max_entries` of map `name` before load (e.g. one slot per queue).
pub fn set_max_entries(obj: &mut OpenObject, name: &str, n: u32) -> Result<(), String> {
    for mut m in obj.maps_mut() {
        if m.name().to_string_lossy() == name {
            return m
                .set_max_entries(n.max(1))
                .map_err(|e| format!("map {name}: setting max_entries {n}: {e}"));
        }
    }
    Err(format!("no map {name} in the BPF object"))
}

/// One key of a counter map and its u64 words summed over the CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub words: Vec<u64>,
}

impl Entry {
    /// The key as a u32 (array index).
    pub fn index(&self) -> u32 {
        key_u32(&self.key)
    }
}

/// Sum per-CPU values word-wise: each value is read as native-endian u64s.
pub fn sum_words(percpu: &[Vec<u8>]) -> Vec<u64> {
    let words = percpu.first().map(|v| v.len() / 8).unwrap_or(0);
    let mut sum = vec![0u64; words];
    for v in percpu {
        for (i, c) in v.chunks_exact(8).enumerate().take(words) {
            sum[i] = sum[i].wrapping_add(u64::from_ne_bytes(c.try_into().unwrap()));
        }
    }
    sum
}

fn keys_of(map: &dyn MapCore) -> Vec<Vec<u8>> {
    if matches!(map.map_type(), MapType::PercpuArray | MapType::Array) {
        (0..map.max_entries())
            .map(|i| i.to_ne_bytes().to_vec())
            .collect()
    } else {
        map.keys().collect()
    }
}

/// Every key of a per-CPU map with its value words summed over the CPUs
/// (array maps: every index, in order).
pub fn read_all(map: &dyn MapCore) -> Result<Vec<Entry>, String> {
    let name = map.name().to_string_lossy().into_owned();
    let mut out = Vec::new();
    for k in keys_of(map) {
        match map.lookup_percpu(&k, MapFlags::ANY) {
            Ok(Some(v)) => out.push(Entry {
                words: sum_words(&v),
                key: k,
            }),
            Ok(None) => {}
            Err(e) => return Err(format!("reading map {name}: {e}")),
        }
    }
    Ok(out)
}

/// Read every key, then remove it (hash) or zero it (array). Increments made
/// between the read and the clear of one key are lost; prefer
/// [`PerCpuCounters::take`] where the keys are stable.
pub fn read_and_clear(map: &dyn MapCore) -> Result<Vec<Entry>, String> {
    let name = map.name().to_string_lossy().into_owned();
    let all = read_all(map)?;
    let is_array = matches!(map.map_type(), MapType::PercpuArray | MapType::Array);
    let ncpu = libbpf_rs::num_possible_cpus().map_err(|e| e.to_string())?;
    let zero = vec![vec![0u8; map.value_size() as usize]; ncpu];
    for e in &all {
        let r = if is_array {
            map.update_percpu(&e.key, &zero, MapFlags::ANY)
        } else {
            map.delete(&e.key)
        };
        r.map_err(|e| format!("clearing map {name}: {e}"))?;
    }
    Ok(all)
}

/// Interval deltas of counter maps the BPF side never clears.
#[derive(Default, Debug)]
pub struct PerCpuCounters {
    last: HashMap<Vec<u8>, Vec<u64>>,
}

impl PerCpuCounters {
    pub fn new() -> Self {
        Self::default()
    }

    /// What every key counted since the previous call (the first call: since
    /// load). Keys with no change are still returned (all-zero words).
    pub fn take(&mut self, map: &dyn MapCore) -> Result<Vec<Entry>, String> {
        let now = read_all(map)?;
        Ok(now
            .into_iter()
            .map(|e| {
                let d = delta(self.last.get(&e.key).map(Vec::as_slice), &e.words);
                self.last.insert(e.key.clone(), e.words);
                Entry {
                    key: e.key,
                    words: d,
                }
            })
            .collect())
    }
}

/// `now - before` word-wise (wrapping; a missing `before` is all zeros).
pub fn delta(before: Option<&[u64]>, now: &[u64]) -> Vec<u64> {
    now.iter()
        .enumerate()
        .map(|(i, &n)| n.wrapping_sub(before.and_then(|b| b.get(i)).copied().unwrap_or(0)))
        .collect()
}

/// A u32 map key (array index) from its bytes.
pub fn key_u32(k: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    let n = k.len().min(4);
    b[..n].copy_from_slice(&k[..n]);
    u32::from_ne_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[u64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    #[test]
    fn sums_cpus() {
        let per = vec![words(&[1, 2, 3]), words(&[10, 20, 30])];
        assert_eq!(sum_words(&per), vec![11, 22, 33]);
        assert!(sum_words(&[]).is_empty());
    }

    #[test]
    fn deltas() {
        assert_eq!(delta(None, &[5, 6]), vec![5, 6]);
        assert_eq!(delta(Some(&[1, 2]), &[5, 6]), vec![4, 4]);
        assert_eq!(delta(Some(&[u64::MAX]), &[1]), vec![2]);
        assert_eq!(key_u32(&7u32.to_ne_bytes()), 7);
    }
}
