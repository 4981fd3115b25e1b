//! log2 histograms: u64 counts, the last bucket open-ended, printed like bcc's
//! print_log2_hist.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log2Hist {
    pub buckets: Vec<u64>,
}

/// Bucket of a value: 0 -> 0, 1 -> 1, 2..3 -> 2, 4..7 -> 3, ...
pub fn log2_bucket(v: u64) -> usize {
    (64 - v.leading_zeros()) as usize
}

impl Log2Hist {
    pub fn new(nbuckets: usize) -> Self {
        Log2Hist {
            buckets: vec![0; nbuckets.max(1)],
        }
    }

    pub fn add(&mut self, v: u64) {
        let b = log2_bucket(v).min(self.buckets.len() - 1);
        self.buckets[b] += 1;
    }

    /// Add the bucket counts of a BPF-side histogram.
    pub fn merge(&mut self, counts: &[u64]) {
        for (i, c) in counts.iter().enumerate() {
            let b = i.min(self.buckets.len() - 1);
            self.buckets[b] += c;
        }
    }

    pub fn total(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Range of bucket i: [lo, hi]; the last bucket has no upper bound.
    pub fn range(&self, i: usize) -> (u64, Option<u64>) {
        let lo = if i == 0 { 0 } else { 1u64 << (i - 1) };
        if i + 1 == self.buckets.len() {
            return (lo, None);
        }
        let hi = if i == 0 { 0 } else { (1u64 << i) - 1 };
        (lo, Some(hi))
    }

    /// Text rendering; `unit` is the column title (e.g. "usecs").
    pub fn render(&self, unit: &str) -> String {
        let last = match self.buckets.iter().rposition(|&c| c > 0) {
            Some(l) => l,
            None => return String::new(),
        };
        let first = self
            .buckets
            .iter()
            .position(|&c| c > 0)
            .unwrap_or(0)
            .min(last);
        let max = *self.buckets.iter().max().unwrap_or(&1);
        let mut out = format!("{:>26} : count    distribution\n", unit);
        for i in first..=last {
            let (lo, hi) = self.range(i);
            let c = self.buckets[i];
            let stars = if max > 0 {
                (c * 40).div_ceil(max) as usize
            } else {
                0
            };
            let hi_s = hi.map(|h| h.to_string()).unwrap_or_else(|| "inf".into());
            out.push_str(&format!(
                "{:>12} -> {:<12}: {:<8} |{:<40}|\n",
                lo,
                hi_s,
                c,
                "*".repeat(stars.min(40))
            ));
        }
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        let v: Vec<serde_json::Value> = self
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| {
                let (lo, hi) = self.range(i);
                serde_json::json!({"lo": lo, "hi": hi, "count": c})
            })
            .collect();
        serde_json::Value::Array(v)
    }
}

/// bpftrace's bucket labels: 1024-based suffixes (`1K`, `2M`).
fn bpftrace_num(v: u64) -> String {
    let sfx = ["", "K", "M", "G", "T", "P", "E"];
    let mut n = v;
    let mut i = 0;
    while n >= 1024 && n.is_multiple_of(1024) && i + 1 < sfx.len() {
        n /= 1024;
        i += 1;
    }
    format!("{n}{}", sfx[i])
}

/// Bounds of bucket `i` of a bpftrace-style log2 histogram (bucket 0 holds
/// value 0, bucket 1 value 1, bucket i >= 2 holds [2^(i-1), 2^i)):
/// (low inclusive, high exclusive).
pub fn bpftrace_bounds(i: usize) -> (u64, u64) {
    match i {
        0 => (0, 1),
        1 => (1, 2),
        _ => (
            1u64 << (i - 1).min(63),
            if i >= 64 { u64::MAX } else { 1u64 << i },
        ),
    }
}

impl Log2Hist {
    /// bpftrace `print(@name)` of a `hist()` map: `@name:` then one line per
    /// bucket from the first to the last non-empty one, then an empty line.
    /// Empty histogram: nothing (bpftrace skips empty maps).
    pub fn render_bpftrace(&self, name: &str) -> String {
        let Some(last) = self.buckets.iter().rposition(|&c| c > 0) else {
            return String::new();
        };
        let first = self.buckets.iter().position(|&c| c > 0).unwrap_or(0);
        let max = *self.buckets.iter().max().unwrap_or(&1);
        let mut out = format!("@{name}:\n");
        for i in first..=last {
            let label = match i {
                0 => "[0]".to_string(),
                1 => "[1]".to_string(),
                _ => {
                    let (lo, hi) = bpftrace_bounds(i);
                    format!("[{}, {})", bpftrace_num(lo), bpftrace_num(hi))
                }
            };
            let c = self.buckets[i];
            let bar = (c * 52).checked_div(max).unwrap_or(0) as usize;
            out.push_str(&format!(
                "{:<16}{:>8} |{:<52}|\n",
                label,
                c,
                "@".repeat(bar)
            ));
        }
        out.push('\n');
        out
    }

    /// `{"map":NAME,"unit":UNIT,"count":N,"sum":S,"buckets":[{"low","high","count"}]}`
    /// with bpftrace bucket bounds (non-empty buckets only).
    pub fn to_json_bpftrace(&self, name: &str, unit: &str, sum: u64) -> serde_json::Value {
        let buckets: Vec<serde_json::Value> = self
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| {
                let (lo, hi) = bpftrace_bounds(i);
                serde_json::json!({"low": lo, "high": hi, "count": c})
            })
            .collect();
        serde_json::json!({
            "map": name,
            "unit": unit,
            "count": self.total(),
            "sum": sum,
            "buckets": buckets,
        })
    }
}

/// Read a BPF-side histogram declared with `DECLARE_HIST_MAP` (shared/bpf/hist.h):
/// per-CPU array, 64 bucket slots then the sum. Returns (histogram, sum).
pub fn read_bpf_hist(map: &dyn libbpf_rs::MapCore) -> (Log2Hist, u64) {
    let mut h = Log2Hist::new(64);
    let mut sum = 0u64;
    for slot in 0..65u32 {
        let n = crate::events::percpu_sum_u64(map, slot);
        if slot < 64 {
            h.buckets[slot as usize] = n;
        } else {
            sum = n;
        }
    }
    (h, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        assert_eq!(log2_bucket(0), 0);
        assert_eq!(log2_bucket(1), 1);
        assert_eq!(log2_bucket(3), 2);
        assert_eq!(log2_bucket(4), 3);
        assert_eq!(log2_bucket(u64::MAX), 64);
    }

    #[test]
    fn open_top_bucket() {
        let mut h = Log2Hist::new(4);
        h.add(1);
        h.add(1 << 40);
        assert_eq!(h.buckets, vec![0, 1, 0, 1]);
        assert_eq!(h.range(3), (4, None));
        assert_eq!(h.range(2), (2, Some(3)));
        assert!(h.render("usecs").contains("inf"));
        assert_eq!(h.total(), 2);
    }

    #[test]
    fn render_empty_is_empty() {
        assert_eq!(Log2Hist::new(8).render("x"), "");
    }

    #[test]
    fn bpftrace_format() {
        let mut h = Log2Hist::new(64);
        for _ in 0..4 {
            h.add(0);
        }
        h.add(1);
        h.add(1500);
        let t = h.render_bpftrace("lat");
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "@lat:");
        assert_eq!(
            lines[1],
            format!("[0]                    4 |{}|", "@".repeat(52))
        );
        assert!(lines[2].starts_with("[1]                    1 |@@@@@@@@@@@@@ "));
        assert!(lines[3].starts_with("[2, 4)                 0 |"));
        assert!(t.contains("[1K, 2K)               1 |"));
        assert!(t.ends_with("|\n\n"));
        let j = h.to_json_bpftrace("lat", "ms", 1501);
        assert_eq!(j["count"], 6);
        assert_eq!(j["buckets"][0]["high"], 1);
        assert_eq!(j["buckets"][2]["low"], 1024);
        assert_eq!(Log2Hist::new(64).render_bpftrace("x"), "");
    }
}
