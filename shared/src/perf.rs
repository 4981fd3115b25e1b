//! Software perf events for sampling: one `PERF_COUNT_SW_CPU_CLOCK` event per
//! CPU at a frequency (works in VMs without a hardware PMU), each with a BPF
//! `perf_event` program attached.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use libbpf_rs::{Link, ProgramMut};

/// An open software-clock event on one CPU and the BPF link on it. Dropping
/// it detaches the program and closes the event.
pub struct CpuClock {
    pub cpu: u32,
    _link: Link,
    _fd: OwnedFd,
}

/// `perf_event_open(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK, freq, pid=-1, cpu)`.
pub fn open_cpu_clock(cpu: u32, freq_hz: u64) -> Result<OwnedFd, String> {
    // SAFETY: zeroed perf_event_attr is a valid starting point; the syscall
    // gets a pointer to it and returns an fd we own.
    unsafe {
        let mut attr: libbpf_sys::perf_event_attr = std::mem::zeroed();
        attr.size = std::mem::size_of::<libbpf_sys::perf_event_attr>() as u32;
        attr.type_ = libbpf_sys::PERF_TYPE_SOFTWARE;
        attr.config = libbpf_sys::PERF_COUNT_SW_CPU_CLOCK as u64;
        attr.__bindgen_anon_1.sample_freq = freq_hz;
        attr.set_freq(1);
        let fd = libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const _,
            -1i32,
            cpu as i32,
            -1i32,
            8u64, // PERF_FLAG_FD_CLOEXEC
        );
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!(
                "perf_event_open(software cpu-clock, cpu {cpu}) failed: {e}"
            ));
        }
        Ok(OwnedFd::from_raw_fd(fd as i32))
    }
}

/// Open the clock on every CPU of `cpus` and attach `prog` to each.
pub fn attach_cpu_clock(
    prog: &ProgramMut<'_>,
    cpus: &[u32],
    freq_hz: u64,
) -> Result<Vec<CpuClock>, String> {
    let mut out = Vec::new();
    for &cpu in cpus {
        let fd = open_cpu_clock(cpu, freq_hz)?;
        let link = prog
            .attach_perf_event(fd.as_raw_fd())
            .map_err(|e| format!("attaching the sampling program on CPU {cpu}: {e}"))?;
        out.push(CpuClock {
            cpu,
            _link: link,
            _fd: fd,
        });
    }
    Ok(out)
}
