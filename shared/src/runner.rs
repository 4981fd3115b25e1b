//! The main loop every tool shares: Ctrl-C / SIGTERM / `--duration` handling,
//! the "attached" line, start-up time and peak memory for `--verbose`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libbpf_rs::Object;

use crate::bpf::Channel;
use crate::events::Drain;
use crate::time::Clock;
use crate::{die, EXIT_RUNTIME};

/// The flag SIGINT, SIGTERM and SIGHUP set (ctrlc's "termination" feature).
/// Installed once, as early as possible (`shared::cli::parse` calls it before
/// parsing): a Ctrl-C that arrives while a tool is still starting must stop it
/// cleanly, not kill it with the default action.
pub fn stop_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let _ = ctrlc::set_handler(move || s2.store(true, Ordering::SeqCst));
        stop
    })
    .clone()
}

pub struct Session {
    pub clock: Clock,
    started: Instant,
    stop: Arc<AtomicBool>,
    deadline_after: Option<Duration>,
    deadline: Option<Instant>,
    verbose: bool,
}

impl Session {
    /// Call first in main: the start-to-attached time counts from here.
    pub fn start(duration: Option<Duration>, verbose: bool) -> Self {
        let stop = stop_flag();
        Session {
            clock: Clock::new(),
            started: Instant::now(),
            stop,
            deadline_after: duration,
            deadline: None,
            verbose,
        }
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
            || self.deadline.map(|d| Instant::now() >= d).unwrap_or(false)
    }

    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Announce that tracing has begun (always on stderr, so tests and users
    /// can wait for it whatever the output mode). `--duration` counts from here.
    pub fn attached(&mut self, what: &str) {
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        self.deadline = self.deadline_after.map(|d| Instant::now() + d);
        crate::exitwait::arm();
        eprintln!("Attached: {what} ({ms:.0} ms after start).");
        if self.verbose {
            eprintln!(
                "verbose: start-to-attached {ms:.1} ms, RSS {} kB",
                rss_kb("VmRSS").unwrap_or(0)
            );
        }
    }

    /// Poll until stopped; `poll` waits at most the given time for events.
    /// `tick` runs after every poll (periodic output).
    pub fn run<P, T>(&self, mut poll: P, mut tick: T) -> Result<(), String>
    where
        P: FnMut(Duration) -> Result<(), String>,
        T: FnMut(),
    {
        while !self.stopping() {
            let mut wait = Duration::from_millis(100);
            if let Some(d) = self.deadline {
                wait = wait.min(d.saturating_duration_since(Instant::now()));
            }
            poll(wait)?;
            tick();
        }
        Ok(())
    }

    /// The usual end of a tool's start-up: open the event channel, announce
    /// "Attached", hand every event to `on_event` and call `tick` after every
    /// poll until Ctrl-C/SIGTERM/--duration, handle what is still queued, and
    /// return the number of events lost on the way.
    pub fn trace_events<F, T>(
        &mut self,
        obj: &Object,
        channel: Channel,
        attached: &str,
        on_event: F,
        tick: T,
    ) -> u64
    where
        F: FnMut(&[u8]),
        T: FnMut(),
    {
        let drain = Drain::open(obj, channel, on_event).unwrap_or_else(|e| die(EXIT_RUNTIME, e));
        self.attached(attached);
        if let Err(e) = self.run(|t| drain.poll(t), tick) {
            die(EXIT_RUNTIME, e);
        }
        drain.flush();
        drain.lost(obj)
    }

    /// Line for the final summary in --verbose mode.
    pub fn verbose_footer(&self) {
        if self.verbose {
            eprintln!("verbose: peak RSS {} kB", rss_kb("VmHWM").unwrap_or(0));
        }
    }
}

/// A field of /proc/self/status in kB (VmRSS, VmHWM).
pub fn rss_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}
