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
