//! More command-line parsers (CPU lists, PID lists, bounded decimal seconds,
//! PID existence), each a clap `value_parser` or a check that exits 2.

use crate::cli::usage_error;

/// Upper bound (exclusive) of a CPU number on the command line.
const MAX_CPU: u32 = 65536;

/// A CPU list `N`, `A-B` (inclusive), comma separated: strict (no empty
/// items, A <= B, no duplicates removed silently: they are merged), sorted.
/// Range against the machine is checked by `check_cpus`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<u32>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty CPU list (use e.g. 0,1 or 0-3)".into());
    }
    let mut out = Vec::new();
    for item in s.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("empty item in CPU list '{s}'"));
        }
        let num = |x: &str| -> Result<u32, String> {
            if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("'{item}' is not a CPU number or range A-B"));
            }
            // Far above any CONFIG_NR_CPUS; also keeps a range from
            // expanding into billions of entries.
            match x.parse::<u32>() {
                Ok(n) if n < MAX_CPU => Ok(n),
                _ => Err(format!("'{x}' is too large for a CPU number")),
            }
        };
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a.trim())?, num(b.trim())?);
                if a > b {
                    return Err(format!("range '{item}' runs backwards"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(item)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Exit 2 (naming `flag`) unless every CPU is in /sys/devices/system/cpu/possible.
pub fn check_cpus(flag: &str, cpus: &[u32]) {
    let possible = crate::proc::cpus_possible();
    let max = possible.iter().max().copied().unwrap_or(0);
    for c in cpus {
        if !possible.contains(c) {
            usage_error(format!(
                "invalid value for '{flag}': invalid CPU number {c}, system CPU range: 0-{max}"
            ));
        }
    }
}

/// A comma list of positive integers (PIDs, TIDs): `1,2,3`.
pub fn parse_pid_list(s: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for item in s.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err("empty item in list".into());
        }
        match item.parse::<i64>() {
            Ok(n) if n > 0 && n <= u32::MAX as i64 => out.push(n as u32),
            Ok(_) => return Err(format!("'{item}' must be a positive number")),
            Err(_) => return Err(format!("'{item}' is not a number")),
        }
    }
    Ok(out)
}

/// A positive integer PID.
pub fn parse_pid(s: &str) -> Result<u32, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n > 0 && n <= u32::MAX as i64 => Ok(n as u32),
        Ok(_) => Err("must be a positive process id".into()),
        Err(_) => Err("not a process id".into()),
    }
}

/// A PID that must exist now (exit 2 naming `flag` otherwise).
pub fn check_pid_exists_or_exit(flag: &str, pid: u32) {
    if !crate::proc::exists(pid) {
        usage_error(format!(
            "invalid value '{pid}' for '{flag}': no such process"
        ));
    }
}

/// Decimal seconds within [min, max] (plain digits and one dot, no exponent).
pub fn parse_seconds_in(s: &str, min: f64, max: f64) -> Result<f64, String> {
    let t = s.trim();
    let ok = !t.is_empty()
        && t.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && t.bytes().filter(|&b| b == b'.').count() <= 1
        && t != ".";
    if !ok {
        return Err("not a decimal number of seconds".into());
    }
    let v: f64 = t.parse().map_err(|_| "not a number".to_string())?;
    if v <= 0.0 {
        return Err("must be greater than 0".into());
    }
    if v < min {
        return Err(format!("must be at least {min}"));
    }
    if v > max {
        return Err(format!("must be at most {max}"));
    }
    Ok(v)
}

/// Whole seconds > 0 as a Duration (`-d/--duration N` of the bpftrace ports).
pub fn parse_whole_seconds(s: &str) -> Result<std::time::Duration, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n > 0 && n <= 365 * 86400 => Ok(std::time::Duration::from_secs(n as u64)),
        Ok(_) => Err("must be a positive whole number of seconds".into()),
        Err(_) => Err("not a whole number of seconds".into()),
    }
}

/// The common flags with `-d` as the short form of `--duration` in whole
/// seconds (tools whose spec has `-d, --duration N`). `common()` gives the
/// `CommonArgs` the rest of the crate takes.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgsD {
    /// Stop after N seconds and print (default: run until Ctrl-C)
    #[arg(short = 'd', long, value_name = "SECONDS", value_parser = parse_whole_seconds, allow_hyphen_values = true)]
    pub duration: Option<std::time::Duration>,

    /// JSON output on stdout; banners go to stderr
    #[arg(long)]
    pub json: bool,

    /// Print the hook plan (what attaches where, and why) and exit without attaching
    #[arg(long)]
    pub explain: bool,

    /// Show libbpf/verifier messages, start-up time and memory
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

impl CommonArgsD {
    pub fn common(&self) -> crate::cli::CommonArgs {
        crate::cli::CommonArgs {
            duration: self.duration,
            json: self.json,
            explain: self.explain,
            attach: crate::cli::AttachMode::Auto,
            verbose: self.verbose,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0,1,2"), Ok(vec![0, 1, 2]));
        assert_eq!(parse_cpu_list("0-3,8-9"), Ok(vec![0, 1, 2, 3, 8, 9]));
        for bad in ["", "a", "1-", "3-1", "1,,2", "-1", "1.5"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pid_lists_and_seconds() {
        assert_eq!(parse_pid_list("1,2"), Ok(vec![1, 2]));
        for bad in ["a", "1,,2", "-5", "0", ""] {
            assert!(parse_pid_list(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_seconds_in("0.5", 0.05, 3600.0), Ok(0.5));
        for bad in ["0", "-1", "abc", "1e3", "0.01", "4000"] {
            assert!(parse_seconds_in(bad, 0.05, 3600.0).is_err(), "{bad}");
        }
    }
}
