//! Bad input through the CLI: a one-line error naming the problem and the
//! value, status 2 (or 8 for KVM), never a panic.

use integration_tests::{expect_bad_input, expect_error, run_vmm, workspace_root, TempFile};
use vmm_bin::exit_status;

fn hello() -> String {
    workspace_root()
        .join("integration-tests/guests/hello.bin")
        .display()
        .to_string()
}

#[test]
fn test_kernel_file_errors() {
    expect_bad_input(
        &["--kernel", "/nonexistent/guest.bin"],
        "/nonexistent/guest.bin",
    );
    expect_bad_input(&["--kernel", "/tmp"], "is a directory");
    // Not regular files: refused at once by what they are (a FIFO with no
    // writer used to block the open forever).
    let fifo = std::env::temp_dir().join(format!("vmm-test-fifo-{}", std::process::id()));
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let fifo_path = fifo.to_str().unwrap();
    expect_bad_input(&["--kernel", fifo_path], "is not a regular file (a FIFO)");
    expect_bad_input(
        &["--kernel", &hello(), "--initrd", fifo_path],
        "is not a regular file (a FIFO)",
    );
    std::fs::remove_file(&fifo).unwrap();
    expect_bad_input(
        &["--kernel", "/dev/zero"],
        "/dev/zero is not a regular file (a character device)",
    );
    expect_bad_input(
        &["--kernel", "/proc/self/status"],
        "is not a regular file (a file of /proc)",
    );
    let empty = TempFile::with_bytes(&[]);
    expect_bad_input(&["--kernel", empty.path()], "empty (0 bytes)");
    expect_bad_input(&["--memory", "16"], "--kernel");
}

#[test]
fn test_image_does_not_fit() {
    let big = TempFile::with_bytes(&vec![0xf4; 2 << 20]);
    expect_bad_input(&["--kernel", big.path(), "--memory", "1"], "2097152 bytes");
    expect_bad_input(
        &[
            "--kernel",
            &hello(),
            "--memory",
            "1",
            "--load-addr",
            "0xffffa",
        ],
        "0xffffa",
    );
    expect_bad_input(
        &["--kernel", &hello(), "--load-addr", "0xffffffffffffffff"],
        "0xffffffffffffffff",
    );
}

#[test]
fn test_addresses_outside_ram() {
    expect_bad_input(
        &[
            "--kernel",
            &hello(),
            "--memory",
            "16",
            "--load-addr",
            "0x2000000",
        ],
        "0x2000000",
    );
    expect_bad_input(
        &[
            "--kernel",
            &hello(),
            "--memory",
            "16",
            "--mode",
            "long",
            "--entry",
            "0x5000000",
        ],
        "0x5000000",
    );
    expect_bad_input(&["--kernel", &hello(), "--entry", "0x12345"], "0x12345");
    // An image where the page tables would go is not bad input: they move
    // (boot_layout.rs tests images that truly leave a structure no room).
}

#[test]
fn test_memory_errors() {
    expect_bad_input(&["--kernel", &hello(), "--memory", "0"], "got 0");
    expect_bad_input(&["--kernel", &hello(), "--memory", "lots"], "'lots'");
    expect_bad_input(
        &["--kernel", &hello(), "--memory", "99999999999"],
        "99999999999 MiB",
    );
    expect_bad_input(
        &["--kernel", &hello(), "--memory", "0x10000000000000000"],
        "'0x10000000000000000'",
    );
    // Units: a size far beyond the host is too large, not "not a number".
    let out = expect_bad_input(&["--kernel", &hello(), "--memory", "10T"], "10485760 MiB");
    assert!(!out.stderr.contains("not a"), "{}", out.stderr);
}

#[test]
fn test_register_and_entry_syntax() {
    expect_bad_input(&["--kernel", &hello(), "--reg", "eax=1"], "'eax'");
    expect_bad_input(&["--kernel", &hello(), "--reg", "rax=two"], "'two'");
    expect_bad_input(&["--kernel", &hello(), "--reg", "rax"], "NAME=VALUE");
    expect_bad_input(&["--kernel", &hello(), "--entry", "0x1000:"], "'0x1000:'");
    expect_bad_input(&["--kernel", &hello(), "--entry", "0x10000:0"], "16 bits");
    expect_bad_input(&["--kernel", &hello(), "--mode", "virtual86"], "virtual86");
    expect_bad_input(&["--kernel", &hello(), "--serial", "tcp:1234"], "tcp:1234");
    expect_bad_input(&["--kernel", &hello(), "--timeout", "-1"], "-1");
    expect_bad_input(&["--kernel", &hello(), "--max-exits", "0"], "--max-exits 0");
    expect_bad_input(
        &[
            "--kernel",
            &hello(),
            "--metrics-file",
            "/nonexistent/dir/m.json",
        ],
        "cannot write the metrics file /nonexistent/dir/m.json",
    );
}

#[test]
fn test_kvm_device_missing_or_wrong() {
    expect_error(
        &["--kernel", &hello(), "--kvm-device", "/nonexistent/kvm"],
        exit_status::KVM_UNAVAILABLE,
        "modprobe",
    );
    let out = expect_error(
        &["--kernel", &hello(), "--kvm-device", "/dev/null"],
        exit_status::KVM_UNAVAILABLE,
        "/dev/null is not a KVM device",
    );
    assert!(
        !out.stderr.contains("update the host kernel"),
        "{}",
        out.stderr
    );
}

#[test]
fn test_usage_errors_are_one_line() {
    for args in [&["--memory", "16"][..], &["--kernel", "k", "--bogus"][..]] {
        let out = run_vmm(args);
        assert_eq!(out.status, exit_status::BAD_INPUT, "{args:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
        assert!(out.stderr.starts_with("vmm-bin: error: "), "{}", out.stderr);
    }
}

#[test]
fn test_help_lists_exit_statuses() {
    let out = run_vmm(&["--help"]);
    assert_eq!(out.status, 0);
    for needle in [
        "Exit status:",
        "(v << 1) | 1",
        "triple-faulted",
        "--max-exits or --timeout",
        "/dev/kvm",
        "Examples:",
        "--kernel integration-tests/guests/hello.bin",
        "--disk path=rootfs.ext4",
    ] {
        assert!(out.stdout.contains(needle), "--help lacks {needle:?}");
    }
}
