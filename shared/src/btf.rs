//! Lookups in the running kernel's BTF: enum names (drop reasons, GSO bits),
//! whether a BTF-typed tracepoint or a function exists, its parameters.
//! Names the kernel defines are always read here, never compiled in.

use std::ffi::OsStr;

use libbpf_rs::btf::types::{Enum, Enum64, Func, FuncProto, Typedef};
use libbpf_rs::btf::{BtfKind, BtfType};
use libbpf_rs::Btf;

/// The running kernel's vmlinux BTF, if it has one.
pub struct KernelBtf {
    btf: Option<Btf<'static>>,
}

fn name_of(n: Option<&OsStr>) -> String {
    n.map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl KernelBtf {
    pub fn load() -> Self {
        KernelBtf {
            btf: Btf::from_vmlinux().ok(),
        }
    }

    pub fn available(&self) -> bool {
        self.btf.is_some()
    }

    pub fn raw(&self) -> Option<&Btf<'static>> {
        self.btf.as_ref()
    }

    /// Members of `enum <name>` as (name, value), in declaration order.
    pub fn enum_members(&self, name: &str) -> Option<Vec<(String, i64)>> {
        let btf = self.btf.as_ref()?;
        if let Some(e) = btf.type_by_name::<Enum>(name) {
            return Some(e.iter().map(|m| (name_of(m.name), m.value)).collect());
        }
        if let Some(e) = btf.type_by_name::<Enum64>(name) {
            return Some(
                e.iter()
                    .map(|m| (name_of(m.name), m.value as i64))
                    .collect(),
            );
        }
        None
    }

    /// Number of arguments of a BTF-typed tracepoint (`btf_trace_<tp>`), not
    /// counting the hidden `void *__data`; None if the kernel has no such tracepoint.
    pub fn tp_btf_args(&self, tp: &str) -> Option<usize> {
        let btf = self.btf.as_ref()?;
        let td = btf.type_by_name::<Typedef>(&format!("btf_trace_{tp}"))?;
        let ptr: BtfType = td.next_type()?;
        let proto = FuncProto::try_from(ptr.next_type()?).ok()?;
        Some(proto.len().saturating_sub(1))
    }

    /// Parameter names of kernel function `func`, None if BTF has no such function.
    pub fn func_params(&self, func: &str) -> Option<Vec<String>> {
        let btf = self.btf.as_ref()?;
        let f = btf.type_by_name::<Func>(func)?;
        let proto = FuncProto::try_from(f.next_type()?).ok()?;
        Some(proto.iter().map(|p| name_of(p.name)).collect())
    }

    pub fn has_func(&self, func: &str) -> bool {
        self.func_params(func).is_some()
    }

    /// Whether a struct/union of this name exists.
    pub fn has_struct(&self, name: &str) -> bool {
        let Some(btf) = self.btf.as_ref() else {
            return false;
        };
        btf.type_by_name::<BtfType>(name)
            .map(|t| matches!(t.kind(), BtfKind::Struct | BtfKind::Union))
            .unwrap_or(false)
    }
}
