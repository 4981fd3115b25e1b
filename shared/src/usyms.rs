//! User-space stack symbolization through blazesym (ELF symbol tables of the
//! process's mappings, read via /proc/PID/maps and map_files): `sym+0xoff [obj]`.

use blazesym::symbolize::source::{Process, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};
use blazesym::Pid;

pub struct UserSyms {
    symbolizer: Symbolizer,
}

impl Default for UserSyms {
    fn default() -> Self {
        Self::new()
    }
}

impl UserSyms {
    pub fn new() -> Self {
        UserSyms {
            symbolizer: Symbolizer::new(),
        }
    }

    /// One string per address; `[unknown] 0xaddr` where nothing is known (the
    /// process may have exited before its stack was read).
    pub fn format(&self, pid: u32, addrs: &[u64]) -> Vec<String> {
        let mut p = Process::new(Pid::from(pid));
        p.debug_syms = false;
        let src = Source::Process(p);
        match self.symbolizer.symbolize(&src, Input::AbsAddr(addrs)) {
            Ok(syms) => syms
                .iter()
                .zip(addrs)
                .map(|(s, a)| match s {
                    Symbolized::Sym(sym) => {
                        let module = sym
                            .module
                            .as_deref()
                            .and_then(|m| std::path::Path::new(m).file_name())
                            .map(|f| format!(" [{}]", f.to_string_lossy()))
                            .unwrap_or_default();
                        format!("{}+0x{:x}{}", sym.name, sym.offset, module)
                    }
                    Symbolized::Unknown(_) => format!("[unknown] 0x{a:x}"),
                })
                .collect(),
            Err(_) => addrs.iter().map(|a| format!("[unknown] 0x{a:x}")).collect(),
        }
    }
}
