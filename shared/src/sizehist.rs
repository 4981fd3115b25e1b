//! Packet-size histograms with the netqtop / iface_netstat buckets
//! `[0,64) [64,512) [512,2K) [2K,16K) [16K,64K) [64K,inf)`, plus byte and packet
//! totals. Mirror of `struct size_hist` in `shared/bpf/sizehist.h` (8 u64 words:
//! bytes, pkts, 6 buckets), usually summed over CPUs by `crate::percpu`.

use serde_json::{json, Map, Value};

/// Number of buckets; the last one is open-ended.
pub const BUCKETS: usize = 6;
/// Upper bounds (exclusive) of the first five buckets.
pub const BOUNDS: [u64; BUCKETS - 1] = [64, 512, 2048, 16384, 65536];
/// Column titles as iface_netstat/netqtop print them.
pub const LABELS: [&str; BUCKETS] = [
    "[0, 64)",
    "[64, 512)",
    "[512, 2K)",
    "[2K, 16K)",
    "[16K, 64K)",
    "[64K, inf)",
];
/// JSON keys of the buckets.
pub const JSON_KEYS: [&str; BUCKETS] = [
    "b0_64",
    "b64_512",
    "b512_2k",
    "b2k_16k",
    "b16k_64k",
    "b64k_plus",
];
/// Size of the BPF struct in u64 words.
pub const WORDS: usize = 2 + BUCKETS;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SizeHist {
    pub bytes: u64,
    pub pkts: u64,
    pub buckets: [u64; BUCKETS],
}

/// Bucket index of a packet of `len` bytes (same rule as the BPF side).
pub fn bucket_of(len: u64) -> usize {
    BOUNDS.iter().position(|&b| len < b).unwrap_or(BUCKETS - 1)
}

impl SizeHist {
    /// From the u64 words of `struct size_hist` (missing words count as 0).
    pub fn from_words(w: &[u64]) -> Self {
        let g = |i: usize| w.get(i).copied().unwrap_or(0);
        let mut h = SizeHist {
            bytes: g(0),
            pkts: g(1),
            ..Default::default()
        };
        for (i, b) in h.buckets.iter_mut().enumerate() {
            *b = g(2 + i);
        }
        h
    }

    pub fn add(&mut self, len: u64) {
        self.bytes += len;
        self.pkts += 1;
        self.buckets[bucket_of(len)] += 1;
    }

    pub fn merge(&mut self, o: &SizeHist) {
        self.bytes += o.bytes;
        self.pkts += o.pkts;
        for (a, b) in self.buckets.iter_mut().zip(o.buckets.iter()) {
            *a += b;
        }
    }

    /// Mean packet size, 0 without packets.
    pub fn avg(&self) -> f64 {
        if self.pkts == 0 {
            0.0
        } else {
            self.bytes as f64 / self.pkts as f64
        }
    }

    /// `{"pkts","bytes","avg","b0_64",...,"b64k_plus"}`, plus `bps`/`pps` over `secs`.
    pub fn to_json(&self, secs: f64) -> Value {
        let mut m = Map::new();
        m.insert("pkts".into(), json!(self.pkts));
        m.insert("bytes".into(), json!(self.bytes));
        m.insert("avg".into(), json!(round2(self.avg())));
        for (k, v) in JSON_KEYS.iter().zip(self.buckets.iter()) {
            m.insert((*k).into(), json!(v));
        }
        let per = |v: u64| {
            if secs > 0.0 {
                round2(v as f64 / secs)
            } else {
                0.0
            }
        };
        m.insert("bps".into(), json!(per(self.bytes)));
        m.insert("pps".into(), json!(per(self.pkts)));
        Value::Object(m)
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_edges() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(63), 0);
        assert_eq!(bucket_of(64), 1);
        assert_eq!(bucket_of(511), 1);
        assert_eq!(bucket_of(512), 2);
        assert_eq!(bucket_of(1042), 2);
        assert_eq!(bucket_of(2047), 2);
        assert_eq!(bucket_of(2048), 3);
        assert_eq!(bucket_of(16384), 4);
        assert_eq!(bucket_of(65535), 4);
        assert_eq!(bucket_of(65536), 5);
        assert_eq!(bucket_of(u64::MAX), 5);
    }

    #[test]
    fn words_and_merge() {
        let h = SizeHist::from_words(&[2084, 2, 0, 0, 2, 0, 0, 0]);
        assert_eq!(h.avg(), 1042.0);
        let mut t = SizeHist::default();
        t.add(1042);
        t.add(1042);
        assert_eq!(t, h);
        t.merge(&h);
        assert_eq!(t.pkts, 4);
        assert_eq!(t.buckets[2], 4);
        let j = t.to_json(2.0);
        assert_eq!(j["pps"], 2.0);
        assert_eq!(j["b512_2k"], 4);
        assert_eq!(j["b64k_plus"], 0);
        assert_eq!(SizeHist::default().avg(), 0.0);
    }
}
