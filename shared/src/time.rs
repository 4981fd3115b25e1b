//! Event times: BPF stamps CLOCK_MONOTONIC nanoseconds; they are shown as wall
//! clock through an offset taken once at start, never as the time of printing.

use chrono::{DateTime, Local, TimeZone};

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// wall-clock ns minus monotonic ns, at start.
    offset_ns: i128,
}

fn now_ns(id: nix::time::ClockId) -> i128 {
    let t = nix::time::clock_gettime(id).expect("clock_gettime");
    t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128
}

impl Clock {
    pub fn new() -> Self {
        let mono = now_ns(nix::time::ClockId::CLOCK_MONOTONIC);
        let real = now_ns(nix::time::ClockId::CLOCK_REALTIME);
        Clock {
            offset_ns: real - mono,
        }
    }

    /// Monotonic ns now (same clock as bpf_ktime_get_ns).
    pub fn mono_now_ns() -> u64 {
        now_ns(nix::time::ClockId::CLOCK_MONOTONIC) as u64
    }

    pub fn wall(&self, ktime_ns: u64) -> DateTime<Local> {
        let ns = ktime_ns as i128 + self.offset_ns;
        let secs = ns.div_euclid(1_000_000_000) as i64;
        let sub = ns.rem_euclid(1_000_000_000) as u32;
        Local
            .timestamp_opt(secs, sub)
            .single()
            .unwrap_or_else(Local::now)
    }

    /// `YYYY-mm-dd HH:MM:SS`
    pub fn datetime(&self, ktime_ns: u64) -> String {
        self.wall(ktime_ns).format("%Y-%m-%d %H:%M:%S").to_string()
    }

    /// `HH:MM:SS`
    pub fn hms(&self, ktime_ns: u64) -> String {
        self.wall(ktime_ns).format("%H:%M:%S").to_string()
    }

    /// C `asctime` style: `Fri Jan  2 03:04:05 2026` (netqtop headers).
    pub fn asctime(&self, ktime_ns: u64) -> String {
        self.wall(ktime_ns)
            .format("%a %b %e %H:%M:%S %Y")
            .to_string()
    }

    /// `HH:MM:SS.mmm`
    pub fn hms_ms(&self, ktime_ns: u64) -> String {
        self.wall(ktime_ns).format("%H:%M:%S%.3f").to_string()
    }

    /// `YYYY-mm-dd HH:MM:SS.mmm`
    pub fn datetime_ms(&self, ktime_ns: u64) -> String {
        self.wall(ktime_ns)
            .format("%Y-%m-%d %H:%M:%S%.3f")
            .to_string()
    }

    /// RFC 3339 with milliseconds (JSON `time` of the conntrack/OVS family).
    pub fn rfc3339_ms(&self, ktime_ns: u64) -> String {
        self.wall(ktime_ns)
            .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
            .to_string()
    }

    /// RFC 3339 with microseconds, for JSON `time`.
    pub fn rfc3339(&self, ktime_ns: u64) -> String {
        self.wall(ktime_ns)
            .format("%Y-%m-%dT%H:%M:%S%.6f%:z")
            .to_string()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Local wall-clock now as `YYYY-mm-dd HH:MM:SS` (log-file banners).
pub fn now_datetime() -> String {
    Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_tracks_monotonic() {
        let c = Clock::new();
        let mono = Clock::mono_now_ns();
        let w = c.wall(mono);
        let diff = (Local::now() - w).num_milliseconds().abs();
        assert!(diff < 1000, "diff {diff} ms");
        let a = c.asctime(mono);
        assert_eq!(a.len(), 24, "{a}");
    }
}
