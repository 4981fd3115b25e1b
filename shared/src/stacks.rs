//! Stack ids from BPF_MAP_TYPE_STACK_TRACE maps, resolved to frames.

use libbpf_rs::{MapCore, MapFlags};

/// Name of the errno behind a negative stack id (e.g. -14 -> "EFAULT").
pub fn stack_error(id: i32) -> String {
    let e = nix::errno::Errno::from_raw(-id);
    format!("{e:?}: {}", e.desc())
}

/// The addresses of stack `id`, or why there are none.
pub fn read_stack(map: &dyn MapCore, id: i32) -> Result<Vec<u64>, String> {
    if id < 0 {
        return Err(stack_error(id));
    }
    match map.lookup(&(id as u32).to_ne_bytes(), MapFlags::ANY) {
        Ok(Some(bytes)) => Ok(bytes
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
            .take_while(|&a| a != 0)
            .collect()),
        Ok(None) => Err("stack id not found (evicted)".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_are_right() {
        assert!(stack_error(-14).starts_with("EFAULT"));
        assert!(stack_error(-17).starts_with("EEXIST"));
        assert!(stack_error(-12).starts_with("ENOMEM"));
    }
}
