//! Small formatters shared by the tools' text and JSON output.

/// A NUL-terminated C string from a fixed buffer.
pub fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

pub fn mac(b: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5]
    )
}

pub fn hex_bytes(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// iface_netstat style: 1234 -> "1.2K", 5_600_000 -> "5.6M".
pub fn human_count(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1}G", n as f64 / 1e9)
    } else if n >= 1_000_000 {
        format!("{:.1}M", n as f64 / 1e6)
    } else if n >= 1_000 {
        format!("{:.1}K", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

/// A float as Python prints `round(x, 2)`: two decimals at most, trailing
/// zeros dropped, at least one decimal ("98.0", "1.02", "12.5").
pub fn py_round2(x: f64) -> String {
    let mut s = format!("{:.2}", x);
    if s == "-0.00" {
        s = "0.00".into();
    }
    while s.ends_with('0') && !s.ends_with(".0") {
        s.pop();
    }
    s
}

/// iface_netstat / netqtop counts (Python `to_str` of an int): above
/// 1,000,000 in units of 1048576 with `M`, above 1000 in units of 1024 with
/// `K` (the original's 1000-vs-1024 mix, kept for drop-in output), else as is.
pub fn netqtop_int(n: u64) -> String {
    if n > 1_000_000 {
        format!("{}M", py_round2(n as f64 / 1_048_576.0))
    } else if n > 1000 {
        format!("{}K", py_round2(n as f64 / 1024.0))
    } else {
        n.to_string()
    }
}

/// The same for a float (averages, rates): `98.0`, `1.02K`, `2.5M`.
pub fn netqtop_float(x: f64) -> String {
    if x > 1_000_000.0 {
        format!("{}M", py_round2(x / 1_048_576.0))
    } else if x > 1000.0 {
        format!("{}K", py_round2(x / 1024.0))
    } else {
        py_round2(x)
    }
}

/// Render rows as a left-aligned table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{:<width$}  ", c, width = w[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(cstr(b"veth0\0\0xx"), "veth0");
        assert_eq!(mac(&[0xaa, 0xbb, 0xcc, 0, 1, 0xff]), "aa:bb:cc:00:01:ff");
        assert_eq!(human_count(999), "999");
        assert_eq!(human_count(1234), "1.2K");
        assert_eq!(human_count(5_600_000), "5.6M");
        assert_eq!(hex_bytes(&[1, 0xab]), "01 ab");
    }

    #[test]
    fn netqtop_numbers() {
        assert_eq!(py_round2(98.0), "98.0");
        assert_eq!(py_round2(0.0), "0.0");
        assert_eq!(py_round2(1.0176), "1.02");
        assert_eq!(py_round2(12.5), "12.5");
        assert_eq!(netqtop_int(0), "0");
        assert_eq!(netqtop_int(1000), "1000");
        assert_eq!(netqtop_int(1342), "1.31K");
        assert_eq!(netqtop_int(2048), "2.0K");
        assert_eq!(netqtop_int(1_000_001), "0.95M");
        assert_eq!(netqtop_float(1042.0), "1.02K");
        assert_eq!(netqtop_float(100.0), "100.0");
        assert_eq!(netqtop_float(70.8666), "70.87");
        assert_eq!(netqtop_float(367_168_225.28), "350.16M");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["long".into(), "1".into()]]);
        assert_eq!(t, "A     BB\nlong  1");
    }
}
