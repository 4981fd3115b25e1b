//! Draining the `events` map (ring buffer, or perf buffer on old kernels) and
//! counting what was lost on the way: ring-buffer reservations that failed in
//! the kernel (`lost_events` map) plus perf-buffer overruns.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use libbpf_rs::{
    MapCore, MapFlags, Object, PerfBuffer, PerfBufferBuilder, RingBuffer, RingBufferBuilder,
};

use crate::bpf::Channel;

pub enum Drain<'a> {
    Ring(RingBuffer<'a>),
    Perf(PerfBuffer<'a>, Rc<Cell<u64>>),
}

impl<'a> Drain<'a> {
    /// Call `on_event` with the bytes of every event the BPF side submits.
    pub fn open<F>(obj: &'a Object, channel: Channel, mut on_event: F) -> Result<Drain<'a>, String>
    where
        F: FnMut(&[u8]) + 'a,
    {
        let map = obj
            .maps()
            .find(|m| m.name().to_string_lossy() == "events")
            .ok_or("BPF object has no events map")?;
        match channel {
            Channel::RingBuf => {
                let mut b = RingBufferBuilder::new();
                b.add(&map, move |data: &[u8]| {
                    on_event(data);
                    0
                })
                .map_err(|e| e.to_string())?;
                Ok(Drain::Ring(b.build().map_err(|e| e.to_string())?))
            }
            Channel::PerfBuf => {
                let lost = Rc::new(Cell::new(0u64));
                let l2 = lost.clone();
                let pb = PerfBufferBuilder::new(&map)
                    .sample_cb(move |_cpu, data: &[u8]| on_event(data))
                    .lost_cb(move |_cpu, n| l2.set(l2.get() + n))
                    .pages(64)
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok(Drain::Perf(pb, lost))
            }
        }
    }

    /// Wait up to `timeout` for events and handle them. Interruption by a
    /// signal is not an error.
    pub fn poll(&self, timeout: Duration) -> Result<(), String> {
        let r = match self {
            Drain::Ring(rb) => rb.poll(timeout),
            Drain::Perf(pb, _) => pb.poll(timeout),
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Handle what is already queued, without waiting.
    pub fn flush(&self) {
        let _ = match self {
            Drain::Ring(rb) => rb.consume(),
            Drain::Perf(pb, _) => pb.consume(),
        };
    }

    /// Events lost so far: kernel-side failed reservations plus perf overruns.
    pub fn lost(&self, obj: &Object) -> u64 {
        let perf = match self {
            Drain::Perf(_, l) => l.get(),
            Drain::Ring(_) => 0,
        };
        perf + lost_in_kernel(obj)
    }
}

/// Sum of the per-CPU `lost_events` counter.
pub fn lost_in_kernel(obj: &Object) -> u64 {
    let Some(map) = obj
        .maps()
        .find(|m| m.name().to_string_lossy() == "lost_events")
    else {
        return 0;
    };
    percpu_sum_u64(&map, 0)
}

/// Sum over CPUs of a per-CPU array value that is one u64.
pub fn percpu_sum_u64(map: &dyn MapCore, key: u32) -> u64 {
    match map.lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY) {
        Ok(Some(vals)) => vals
            .iter()
            .filter(|v| v.len() >= 8)
            .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap()))
            .sum(),
        _ => 0,
    }
}
