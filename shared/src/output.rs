//! Where a tool's output goes: stdout or an appended `--log-file`, as text
//! lines or JSON lines. Banners go to stderr in JSON mode so stdout stays
//! one JSON object per line. Every event is flushed at once.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

pub struct Output {
    sink: Box<dyn Write>,
    json: bool,
    to_file: bool,
}

impl Output {
    pub fn stdout(json: bool) -> Self {
        Output {
            sink: Box::new(io::stdout()),
            json,
            to_file: false,
        }
    }

    /// `--log-file`: open for appending, or exit 2 naming the flag.
    pub fn new(json: bool, log_file: Option<&Path>) -> Self {
        match log_file {
            None => Self::stdout(json),
            Some(p) => match OpenOptions::new().create(true).append(true).open(p) {
                Ok(f) => Output {
                    sink: Box::new(f),
                    json,
                    to_file: true,
                },
                Err(e) => crate::cli::usage_error(format!(
                    "invalid value '{}' for '--log-file': {e}",
                    p.display()
                )),
            },
        }
    }

    /// `--log-file` of the tools that print AND log (trace_ip_defrag): every
    /// line goes to stdout and is appended to the file (flushed per line).
    /// An unopenable file exits 2 naming the flag.
    pub fn tee(json: bool, log_file: Option<&Path>) -> Self {
        let Some(p) = log_file else {
            return Self::stdout(json);
        };
        match OpenOptions::new().create(true).append(true).open(p) {
            Ok(f) => Output {
                sink: Box::new(Tee(io::stdout(), f)),
                json,
                to_file: true,
            },
            Err(e) => crate::cli::usage_error(format!(
                "invalid value '{}' for '--log-file': {e}",
                p.display()
            )),
        }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    pub fn to_file(&self) -> bool {
        self.to_file
    }

    /// A text line of an event or summary (nothing in JSON mode).
    pub fn line(&mut self, s: &str) {
        if !self.json {
            let _ = writeln!(self.sink, "{s}");
            let _ = self.sink.flush();
        }
    }

    /// A banner/header line: to the sink in text mode, to stderr in JSON mode.
    pub fn banner(&mut self, s: &str) {
        if self.json {
            eprintln!("{s}");
        } else {
            self.line(s);
        }
    }

    /// One JSON object per line (JSON mode only).
    pub fn event(&mut self, v: &serde_json::Value) {
        if self.json {
            let _ = writeln!(self.sink, "{v}");
            let _ = self.sink.flush();
        }
    }

    /// Always written, whatever the mode (log-file start/end markers).
    pub fn raw(&mut self, s: &str) {
        let _ = writeln!(self.sink, "{s}");
        let _ = self.sink.flush();
    }
}

/// Writes everything to both sinks.
struct Tee<A: Write, B: Write>(A, B);

impl<A: Write, B: Write> Write for Tee<A, B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}
