//! Lookups in the running kernel's BTF: enum names (drop reasons, GSO bits),
//! whether a BTF-typed tracepoint or a function exists, its parameters.
//! Names the kernel defines are always read here, never compiled in.
//! Functions and tracepoints of loaded modules (e.g. openvswitch) are found in
//! their split BTF (`/sys/kernel/btf/<module>`), read on first need.

use std::cell::OnceCell;
use std::ffi::{CString, OsStr};
use std::ptr::NonNull;

use libbpf_rs::btf::types::{Enum, Enum64, Func, FuncProto, Typedef};
use libbpf_rs::btf::{BtfKind, BtfType};
use libbpf_rs::{AsRawLibbpf, Btf};

/// The running kernel's vmlinux BTF, if it has one.
pub struct KernelBtf {
    // Declared first: the modules' split BTF is freed before its base.
    modules: OnceCell<Vec<ModuleBtf>>,
    btf: Option<Btf<'static>>,
}

/// Split BTF of one loaded module (types after vmlinux's).
struct ModuleBtf {
    name: String,
    ptr: NonNull<libbpf_sys::btf>,
}

impl Drop for ModuleBtf {
    fn drop(&mut self) {
        // SAFETY: the pointer came from btf__parse_split and is freed once.
        unsafe { libbpf_sys::btf__free(self.ptr.as_ptr()) }
    }
}

impl ModuleBtf {
    /// Type id of `name` of `kind`, if the module defines it.
    fn find(&self, name: &str, kind: u32) -> Option<u32> {
        let c = CString::new(name).ok()?;
        // SAFETY: valid btf pointer and NUL-terminated name.
        let id = unsafe { libbpf_sys::btf__find_by_name_kind(self.ptr.as_ptr(), c.as_ptr(), kind) };
        (id > 0).then_some(id as u32)
    }

    fn ty(&self, id: u32) -> Option<libbpf_sys::btf_type> {
        // SAFETY: valid btf pointer; libbpf returns NULL for a bad id.
        let t = unsafe { libbpf_sys::btf__type_by_id(self.ptr.as_ptr(), id) };
        // SAFETY: non-null pointers point at a btf_type inside the BTF data.
        (!t.is_null()).then(|| unsafe { *t })
    }

    /// Members of the enum/enum64 type `id`.
    fn enum_members(&self, id: u32) -> Option<Vec<(String, i64)>> {
        // SAFETY: valid btf pointer; NULL for a bad id.
        let t = unsafe { libbpf_sys::btf__type_by_id(self.ptr.as_ptr(), id).as_ref()? };
        let kind = (t.info >> 24) & 0x1f;
        let n = (t.info & 0xffff) as usize;
        let name = |off: u32| -> String {
            // SAFETY: libbpf returns a NUL-terminated string in the BTF, or NULL.
            unsafe {
                let p = libbpf_sys::btf__name_by_offset(self.ptr.as_ptr(), off);
                if p.is_null() {
                    String::new()
                } else {
                    std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
                }
            }
        };
        // SAFETY: the members follow the type header, as the BTF format defines.
        unsafe {
            let after = (t as *const libbpf_sys::btf_type).add(1);
            if kind == libbpf_sys::BTF_KIND_ENUM64 {
                let m = std::slice::from_raw_parts(after as *const libbpf_sys::btf_enum64, n);
                Some(
                    m.iter()
                        .map(|e| {
                            let v = ((e.val_hi32 as u64) << 32) | e.val_lo32 as u64;
                            (name(e.name_off), v as i64)
                        })
                        .collect(),
                )
            } else if kind == libbpf_sys::BTF_KIND_ENUM {
                let m = std::slice::from_raw_parts(after as *const libbpf_sys::btf_enum, n);
                Some(m.iter().map(|e| (name(e.name_off), e.val as i64)).collect())
            } else {
                None
            }
        }
    }

    /// Parameter names of function `func` in this module.
    fn func_params(&self, func: &str) -> Option<Vec<String>> {
        let id = self.find(func, libbpf_sys::BTF_KIND_FUNC)?;
        // SAFETY: a FUNC's union holds its prototype's type id.
        let proto_id = unsafe { self.ty(id)?.__bindgen_anon_1.type_ };
        // SAFETY: valid btf pointer; NULL for a bad id.
        let t = unsafe { libbpf_sys::btf__type_by_id(self.ptr.as_ptr(), proto_id).as_ref()? };
        if (t.info >> 24) & 0x1f != libbpf_sys::BTF_KIND_FUNC_PROTO {
            return None;
        }
        let n = (t.info & 0xffff) as usize;
        // SAFETY: the parameters follow the prototype's header (BTF format).
        let params = unsafe {
            std::slice::from_raw_parts(
                (t as *const libbpf_sys::btf_type).add(1) as *const libbpf_sys::btf_param,
                n,
            )
        };
        Some(
            params
                .iter()
                .map(|p| {
                    // SAFETY: libbpf returns a NUL-terminated string in the BTF, or NULL.
                    unsafe {
                        let c = libbpf_sys::btf__name_by_offset(self.ptr.as_ptr(), p.name_off);
                        if c.is_null() {
                            String::new()
                        } else {
                            std::ffi::CStr::from_ptr(c).to_string_lossy().into_owned()
                        }
                    }
                })
                .collect(),
        )
    }

    /// The module's own enum that has a member `member`.
    fn enum_with_member(&self, member: &str) -> Option<Vec<(String, i64)>> {
        // SAFETY: valid btf pointers.
        let (first, cnt) = unsafe {
            let base = libbpf_sys::btf__base_btf(self.ptr.as_ptr());
            let first = if base.is_null() {
                1
            } else {
                libbpf_sys::btf__type_cnt(base)
            };
            (first, libbpf_sys::btf__type_cnt(self.ptr.as_ptr()))
        };
        (first..cnt).find_map(|id| {
            let m = self.enum_members(id)?;
            m.iter().any(|(n, _)| n == member).then_some(m)
        })
    }

    /// Argument count of the function prototype `id` refers to, following
    /// `skip_ptrs` pointer/typedef hops first.
    fn proto_args(&self, mut id: u32) -> Option<usize> {
        for _ in 0..4 {
            let t = self.ty(id)?;
            let kind = (t.info >> 24) & 0x1f;
            if kind == libbpf_sys::BTF_KIND_FUNC_PROTO {
                return Some((t.info & 0xffff) as usize);
            }
            // SAFETY: for FUNC/PTR/TYPEDEF the union holds the referenced type id.
            id = unsafe { t.__bindgen_anon_1.type_ };
        }
        None
    }
}

fn load_module_btfs(base: &Btf<'static>) -> Vec<ModuleBtf> {
    let Ok(dir) = std::fs::read_dir("/sys/kernel/btf") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "vmlinux" {
            continue;
        }
        let Ok(path) = CString::new(e.path().to_string_lossy().as_bytes()) else {
            continue;
        };
        // SAFETY: valid path and base; the split BTF is freed before its
        // base (field order of KernelBtf). libbpf 1.x returns NULL on error.
        let p = unsafe {
            libbpf_sys::btf__parse_split(path.as_ptr(), base.as_libbpf_object().as_ptr())
        };
        if let Some(ptr) = NonNull::new(p) {
            out.push(ModuleBtf { name, ptr });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn name_of(n: Option<&OsStr>) -> String {
    n.map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl KernelBtf {
    pub fn load() -> Self {
        KernelBtf {
            modules: OnceCell::new(),
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
        // An enum only a module uses (e.g. nf_conntrack's ip_conntrack_status).
        self.modules().iter().find_map(|m| {
            [libbpf_sys::BTF_KIND_ENUM, libbpf_sys::BTF_KIND_ENUM64]
                .iter()
                .find_map(|k| m.find(name, *k))
                .and_then(|id| m.enum_members(id))
        })
    }

    /// Members of the enum that has a member called `member`: for anonymous
    /// enums such as `SKB_GSO_*` or `NETIF_F_*_BIT`. vmlinux, then modules.
    pub fn enum_with_member(&self, member: &str) -> Option<Vec<(String, i64)>> {
        let btf = self.btf.as_ref()?;
        for e in btf.type_by_kind::<Enum>() {
            if e.iter().any(|m| name_of(m.name) == member) {
                return Some(e.iter().map(|m| (name_of(m.name), m.value)).collect());
            }
        }
        for e in btf.type_by_kind::<Enum64>() {
            if e.iter().any(|m| name_of(m.name) == member) {
                return Some(
                    e.iter()
                        .map(|m| (name_of(m.name), m.value as i64))
                        .collect(),
                );
            }
        }
        self.modules()
            .iter()
            .find_map(|m| m.enum_with_member(member))
    }

    /// Number of arguments of a BTF-typed tracepoint (`btf_trace_<tp>`), not
    /// counting the hidden `void *__data`; None if the kernel has no such tracepoint.
    pub fn tp_btf_args(&self, tp: &str) -> Option<usize> {
        let btf = self.btf.as_ref()?;
        let name = format!("btf_trace_{tp}");
        let Some(td) = btf.type_by_name::<Typedef>(&name) else {
            // A module's tracepoint (e.g. openvswitch's ovs_dp_upcall).
            return self.modules().iter().find_map(|m| {
                let id = m.find(&name, libbpf_sys::BTF_KIND_TYPEDEF)?;
                let td = m.ty(id)?;
                // SAFETY: a typedef's union holds the referenced type id.
                let n = m.proto_args(unsafe { td.__bindgen_anon_1.type_ })?;
                Some(n.saturating_sub(1))
            });
        };
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

    /// Parameter names of `func` from vmlinux or, for a module function, the
    /// module's BTF; None when no BTF describes it.
    pub fn func_params_any(&self, func: &str) -> Option<Vec<String>> {
        self.func_params(func)
            .or_else(|| self.modules().iter().find_map(|m| m.func_params(func)))
    }

    /// Whether vmlinux or a loaded module's BTF has function `func`
    /// (fentry can attach to both).
    pub fn has_func(&self, func: &str) -> bool {
        self.func_params(func).is_some() || self.module_of_func(func).is_some()
    }

    /// The loaded module whose BTF defines function `func`.
    pub fn module_of_func(&self, func: &str) -> Option<String> {
        self.modules()
            .iter()
            .find(|m| m.find(func, libbpf_sys::BTF_KIND_FUNC).is_some())
            .map(|m| m.name.clone())
    }

    fn modules(&self) -> &[ModuleBtf] {
        match &self.btf {
            Some(base) => self.modules.get_or_init(|| load_module_btfs(base)),
            None => &[],
        }
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
