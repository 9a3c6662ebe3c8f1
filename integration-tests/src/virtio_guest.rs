//! The freestanding virtio driver guest (`integration-tests/guests/virtio/`),
//! compiled with the host's gcc once per test process.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::{target_dir, workspace_root};

/// gcc flags for a CPL0 guest on an emulating host: no SSE or red zone,
/// no CET `endbr64`, no stack protector, no PIE; linked by its own script.
pub(crate) const CFLAGS: &[&str] = &[
    "-m64",
    "-ffreestanding",
    "-nostdlib",
    "-static",
    "-O2",
    "-mno-red-zone",
    "-mgeneral-regs-only",
    "-mno-sse",
    "-fno-pic",
    "-no-pie",
    "-fno-stack-protector",
    "-fcf-protection=none",
    "-fno-asynchronous-unwind-tables",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wl,--build-id=none",
    "-Wl,--no-warn-rwx-segments",
];

/// The guest's path, building it on first use. Panics (the test fails)
/// with gcc's output if it does not build, or if gcc is missing:
/// `integration-tests/scripts/test.sh` installs it.
pub fn virtio_guest() -> &'static PathBuf {
    static GUEST: OnceLock<PathBuf> = OnceLock::new();
    GUEST.get_or_init(|| build("virtio-guest.elf", &[]))
}

/// The same guest built with `-DPVH`: it also carries a Xen PVH entry note
/// and a 32-bit entry, so QEMU's microvm machine can boot it (and vmm-bin
/// boots it the PVH way, which takes precedence over the vmlinux note).
pub fn virtio_guest_pvh() -> &'static PathBuf {
    static GUEST: OnceLock<PathBuf> = OnceLock::new();
    GUEST.get_or_init(|| build("virtio-guest-pvh.elf", &["-DPVH"]))
}

fn build(name: &str, defines: &[&str]) -> PathBuf {
    let src = workspace_root().join("integration-tests/guests/virtio");
    let out = target_dir().join(name);
    let result = Command::new("gcc")
        .args(CFLAGS)
        .args(defines)
        .arg("-Wl,-T")
        .arg(src.join("guest.ld"))
        .arg("-o")
        .arg(&out)
        .arg(src.join("guest.c"))
        .output()
        .unwrap_or_else(|e| {
            panic!("gcc is needed to build the virtio test guest ({e}); run integration-tests/scripts/test.sh, which installs it")
        });
    assert!(
        result.status.success(),
        "building the virtio guest failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    out
}
