//! Bad input through the CLI: a one-line error naming the problem and the
//! value, status 2 (or 8 for KVM), never a panic.

use integration_tests::{run_vmm, workspace_root, TempFile};
use vmm_bin::exit_status;

fn hello() -> String {
    workspace_root()
        .join("integration-tests/guests/hello.bin")
        .display()
        .to_string()
}

/// Runs with `args`, expects `code` and an error naming `needle`.
fn expect_error(args: &[&str], code: i32, needle: &str) {
    let out = run_vmm(args);
    assert_eq!(out.status, code, "{args:?}: stderr {}", out.stderr);
    assert!(
        out.stderr.contains(needle),
        "{args:?}: stderr lacks {needle:?}: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("panicked"),
        "{args:?} panicked: {}",
        out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "{args:?}: nothing should run: {}",
        out.stdout
    );
}

#[test]
fn test_kernel_file_errors() {
    expect_error(
        &["--kernel", "/nonexistent/guest.bin"],
        exit_status::BAD_INPUT,
        "/nonexistent/guest.bin",
    );
    expect_error(
        &["--kernel", "/tmp"],
        exit_status::BAD_INPUT,
        "is a directory",
    );
    let empty = TempFile::with_bytes(&[]);
    expect_error(
        &["--kernel", empty.path()],
        exit_status::BAD_INPUT,
        "empty (0 bytes)",
    );
    expect_error(&["--memory", "16"], exit_status::BAD_INPUT, "--kernel");
}

#[test]
fn test_image_does_not_fit() {
    let big = TempFile::with_bytes(&vec![0xf4; 2 << 20]);
    expect_error(
        &["--kernel", big.path(), "--memory", "1"],
        exit_status::BAD_INPUT,
        "2097152 bytes",
    );
    expect_error(
        &[
            "--kernel",
            &hello(),
            "--memory",
            "1",
            "--load-addr",
            "0xffffa",
        ],
        exit_status::BAD_INPUT,
        "0xffffa",
    );
    expect_error(
        &["--kernel", &hello(), "--load-addr", "0xffffffffffffffff"],
        exit_status::BAD_INPUT,
        "0xffffffffffffffff",
    );
}

#[test]
fn test_addresses_outside_ram() {
    expect_error(
        &[
            "--kernel",
            &hello(),
            "--memory",
            "16",
            "--load-addr",
            "0x2000000",
        ],
        exit_status::BAD_INPUT,
        "0x2000000",
    );
    expect_error(
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
        exit_status::BAD_INPUT,
        "0x5000000",
    );
    expect_error(
        &["--kernel", &hello(), "--entry", "0x12345"],
        exit_status::BAD_INPUT,
        "0x12345",
    );
    expect_error(
        &[
            "--kernel",
            &hello(),
            "--mode",
            "long",
            "--load-addr",
            "0x8ffc",
        ],
        exit_status::BAD_INPUT,
        "page tables",
    );
}

#[test]
fn test_memory_errors() {
    expect_error(
        &["--kernel", &hello(), "--memory", "0"],
        exit_status::BAD_INPUT,
        "got 0",
    );
    expect_error(
        &["--kernel", &hello(), "--memory", "lots"],
        exit_status::BAD_INPUT,
        "'lots'",
    );
    expect_error(
        &["--kernel", &hello(), "--memory", "99999999999"],
        exit_status::BAD_INPUT,
        "99999999999 MiB",
    );
    expect_error(
        &["--kernel", &hello(), "--memory", "0x10000000000000000"],
        exit_status::BAD_INPUT,
        "'0x10000000000000000'",
    );
}

#[test]
fn test_register_and_entry_syntax() {
    expect_error(
        &["--kernel", &hello(), "--reg", "eax=1"],
        exit_status::BAD_INPUT,
        "'eax'",
    );
    expect_error(
        &["--kernel", &hello(), "--reg", "rax=two"],
        exit_status::BAD_INPUT,
        "'two'",
    );
    expect_error(
        &["--kernel", &hello(), "--reg", "rax"],
        exit_status::BAD_INPUT,
        "NAME=VALUE",
    );
    expect_error(
        &["--kernel", &hello(), "--entry", "0x1000:"],
        exit_status::BAD_INPUT,
        "'0x1000:'",
    );
    expect_error(
        &["--kernel", &hello(), "--entry", "0x10000:0"],
        exit_status::BAD_INPUT,
        "16 bits",
    );
    expect_error(
        &["--kernel", &hello(), "--mode", "virtual86"],
        exit_status::BAD_INPUT,
        "virtual86",
    );
    expect_error(
        &["--kernel", &hello(), "--serial", "tcp:1234"],
        exit_status::BAD_INPUT,
        "tcp:1234",
    );
    expect_error(
        &["--kernel", &hello(), "--timeout", "-1"],
        exit_status::BAD_INPUT,
        "-1",
    );
}

#[test]
fn test_kvm_device_missing_or_wrong() {
    expect_error(
        &["--kernel", &hello(), "--kvm-device", "/nonexistent/kvm"],
        exit_status::KVM_UNAVAILABLE,
        "modprobe",
    );
    expect_error(
        &["--kernel", &hello(), "--kvm-device", "/dev/null"],
        exit_status::KVM_UNAVAILABLE,
        "API version",
    );
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
    ] {
        assert!(out.stdout.contains(needle), "--help lacks {needle:?}");
    }
}
