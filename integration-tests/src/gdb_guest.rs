//! The GDB test guest (`integration-tests/guests/gdb/`): a static ELF64
//! program with debug information, compiled with the host's gcc once per
//! test process, and where gdb is.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::virtio_guest::CFLAGS;
use crate::{target_dir, workspace_root};

/// The guest's path, building it on first use. Panics (the test fails)
/// with gcc's output if it does not build, or if gcc is missing:
/// `integration-tests/scripts/test.sh` installs it.
pub fn gdb_guest() -> &'static PathBuf {
    static GUEST: OnceLock<PathBuf> = OnceLock::new();
    GUEST.get_or_init(|| {
        let src = workspace_root().join("integration-tests/guests/gdb");
        let out = target_dir().join("gdb-guest.elf");
        let result = Command::new("gcc")
            .args(CFLAGS)
            // Later flags win: debug information for gdb, and code simple
            // enough that a variable lives in memory where the source says.
            .args(["-g", "-O1"])
            .arg("-Wl,-T")
            .arg(src.join("guest.ld"))
            .arg("-o")
            .arg(&out)
            .arg(src.join("guest.c"))
            .output()
            .unwrap_or_else(|e| {
                panic!("gcc is needed to build the gdb test guest ({e}); run integration-tests/scripts/test.sh, which installs it")
            });
        assert!(
            result.status.success(),
            "building the gdb guest failed:\n{}",
            String::from_utf8_lossy(&result.stderr)
        );
        out
    })
}

/// Fails the test loudly when Debian's gdb is not installed (never skips
/// it): `integration-tests/scripts/test.sh` installs it.
pub fn require_gdb() {
    let found = Command::new("gdb")
        .args(["--batch", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "gdb is not installed: the GDB stub tests need it (apt-get install gdb; \
         integration-tests/scripts/test.sh installs it)"
    );
}
