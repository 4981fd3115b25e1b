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
}
