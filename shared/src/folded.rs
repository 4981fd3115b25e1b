//! Folded stacks for flame graphs (`flamegraph.pl`, inferno, speedscope):
//! one line per stack, `frame;frame;...;leaf COUNT`, frames root first.
//! Frames may hold spaces (the count is after the last space) but never `;`
//! or a line break.

/// A frame name made safe for a folded line.
pub fn frame(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| match c {
            ';' => ':',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect();
    let s = s.trim().to_string();
    if s.is_empty() {
        "[unknown]".into()
    } else {
        s
    }
}

/// `a;b;c COUNT` from frames given root first.
pub fn line<S: AsRef<str>>(frames_root_first: &[S], count: u64) -> String {
    let mut out = String::new();
    for (i, f) in frames_root_first.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(&frame(f.as_ref()));
    }
    if out.is_empty() {
        out.push_str("[unknown]");
    }
    out.push(' ');
    out.push_str(&count.to_string());
    out
}

/// Is `l` a valid folded line: non-empty frames joined by `;`, one space, a count?
pub fn is_valid_line(l: &str) -> bool {
    let Some((stack, count)) = l.rsplit_once(' ') else {
        return false;
    };
    !count.is_empty()
        && count.bytes().all(|b| b.is_ascii_digit())
        && !stack.is_empty()
        && stack.split(';').all(|f| !f.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(line(&["main", "work;x", "leaf"], 7), "main;work:x;leaf 7");
        assert_eq!(line::<&str>(&[], 3), "[unknown] 3");
        assert!(is_valid_line("comm;a b;c 12"));
        assert!(!is_valid_line("comm;;c 12"));
        assert!(!is_valid_line("comm;c"));
        assert!(!is_valid_line("comm;c x"));
    }
}
