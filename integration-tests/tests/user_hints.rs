//! Warnings a user gets where the VMM would otherwise be silently
//! surprising: a guest that has said nothing for a few seconds (a slowly
//! booting Linux looks like a hung VMM), and boot inputs the image's format
//! cannot receive.

use integration_tests::{run_vmm, workspace_root, TempFile};
use vmm_bin::exit_status;

const HINT: &str = "no guest output 5 s after the start";

#[test]
fn test_a_silent_guest_gets_a_hint() {
    // jmp $ in real mode.
    let g = TempFile::with_bytes(&[0xeb, 0xfe]);
    let out = run_vmm(&["--kernel", g.path(), "--timeout", "6"]);
    assert_eq!(out.status, exit_status::LIMIT_REACHED, "{}", out.stderr);
    assert!(out.stderr.contains(HINT), "{}", out.stderr);
    assert!(
        out.stderr.contains("earlyprintk=serial,ttyS0"),
        "{}",
        out.stderr
    );
}

#[test]
fn test_a_guest_that_spoke_gets_none() {
    // mov al, 'x'; out 0xe9, al; jmp $
    let g = TempFile::with_bytes(&[0xb0, b'x', 0xe6, 0xe9, 0xeb, 0xfe]);
    let out = run_vmm(&["--kernel", g.path(), "--timeout", "6"]);
    assert_eq!(out.status, exit_status::LIMIT_REACHED, "{}", out.stderr);
    assert_eq!(out.stdout, "x");
    assert!(!out.stderr.contains(HINT), "{}", out.stderr);
}

#[test]
fn test_inputs_a_raw_binary_cannot_receive_are_warned_about() {
    let hello = workspace_root().join("integration-tests/guests/hello.bin");
    let module = TempFile::with_bytes(b"module");
    let out = run_vmm(&[
        "--kernel",
        hello.to_str().unwrap(),
        "--cmdline",
        "console=ttyS0",
        "--initrd",
        module.path(),
        "--module",
        module.path(),
    ]);
    assert_eq!(out.status, exit_status::HALTED, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "the command line, the initrd, 1 module ignored: a raw binary has no boot protocol"
        ),
        "{}",
        out.stderr
    );
    // Without them, no warning.
    let out = run_vmm(&["--kernel", hello.to_str().unwrap()]);
    assert!(!out.stderr.contains("ignored"), "{}", out.stderr);
}
