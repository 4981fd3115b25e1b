//! Used by every tool's `build.rs`: compiles `src/bpf/<tool>.bpf.c` against the
//! shared BPF headers (`shared/bpf`: vmlinux.h, common.h, skb.h) and writes the
//! libbpf-cargo skeleton to `$OUT_DIR/<tool>.skel.rs`.

use std::env;
use std::path::PathBuf;

/// Build the skeleton for `src/bpf/<name>.bpf.c` of the calling crate.
pub fn skeleton(name: &str) {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let src = manifest.join("src/bpf").join(format!("{name}.bpf.c"));
    let include = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bpf");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join(format!("{name}.skel.rs"));

    let result = libbpf_cargo::SkeletonBuilder::new()
        .source(&src)
        .clang_args([
            "-I".to_string(),
            include.display().to_string(),
            "-I".to_string(),
            manifest.join("src/bpf").display().to_string(),
            "-O2".to_string(),
            "-g".to_string(),
            "-Wall".to_string(),
            "-Wno-unused-function".to_string(),
            "-Wno-compare-distinct-pointer-types".to_string(),
            "-D__TARGET_ARCH_x86".to_string(),
        ])
        .build_and_generate(&out);
    if let Err(e) = result {
        panic!("building BPF object {}: {e:#}", src.display());
    }
    println!("cargo:rerun-if-changed={}", src.display());
    println!(
        "cargo:rerun-if-changed={}",
        manifest.join("src/bpf").display()
    );
    println!("cargo:rerun-if-changed={}", include.display());
}
