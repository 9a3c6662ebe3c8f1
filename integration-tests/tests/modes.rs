//! Guests in each CPU mode, and the outcomes the run loop reports: halt,
//! debug-exit, triple fault, timeout.

use integration_tests::code_asm::*;
use integration_tests::{assemble, require_kvm, run_vmm, TempFile};
use vmm_bin::exit_status::{self, debug_exit_status};

/// "mov dx,0x3f8; out 'X' and '\n'; hlt" in any mode.
fn print_and_halt(bitness: u32, byte: u8) -> Vec<u8> {
    assemble(bitness, 0x1000, |a| {
        a.mov(edx, 0x3f8).unwrap();
        a.mov(al, byte as i32).unwrap();
        a.out(dx, al).unwrap();
        a.mov(al, b'\n' as i32).unwrap();
        a.out(dx, al).unwrap();
        a.hlt().unwrap();
    })
}

#[test]
fn test_protected_mode_print_and_halt() {
    require_kvm();
    let g = TempFile::with_bytes(&print_and_halt(32, b'P'));
    let out = run_vmm(&[
        "--kernel",
        g.path(),
        "--mode",
        "protected",
        "--timeout",
        "20",
    ]);
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (exit_status::HALTED, "P\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn test_long_mode_print_and_halt() {
    require_kvm();
    let g = TempFile::with_bytes(&print_and_halt(64, b'L'));
    let out = run_vmm(&["--kernel", g.path(), "--mode", "long", "--timeout", "20"]);
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (exit_status::HALTED, "L\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn test_long_mode_identity_map_reaches_high_memory() {
    require_kvm();
    // Write through the page tables at 3 GiB - 8 (top of low RAM with
    // --memory 3072), read it back, and report it through debug-exit.
    let code = assemble(64, 0x1000, |a| {
        a.mov(rbx, 0xbfff_fff8u64).unwrap();
        a.mov(eax, 0x2a).unwrap();
        a.mov(dword_ptr(rbx), eax).unwrap();
        a.mov(eax, 0).unwrap();
        a.mov(eax, dword_ptr(rbx)).unwrap();
        a.mov(edx, 0xf4).unwrap();
        a.out(dx, eax).unwrap();
    });
    let g = TempFile::with_bytes(&code);
    let out = run_vmm(&[
        "--kernel",
        g.path(),
        "--mode",
        "long",
        "--memory",
        "3072",
        "--timeout",
        "20",
    ]);
    assert_eq!(out.status, debug_exit_status(0x2a), "{}", out.stderr);
}

#[test]
fn test_debug_exit_status_is_value_shifted_or_1() {
    require_kvm();
    for value in [0u8, 0x10, 0x41] {
        let code = assemble(16, 0x1000, |a| {
            a.mov(al, value as i32).unwrap();
            a.out(0xf4, al).unwrap();
            a.hlt().unwrap();
        });
        let g = TempFile::with_bytes(&code);
        let out = run_vmm(&["--kernel", g.path(), "--timeout", "20"]);
        assert_eq!(
            out.status,
            debug_exit_status(u32::from(value)),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn test_long_mode_ud2_without_idt_is_a_triple_fault() {
    require_kvm();
    let code = assemble(64, 0x1000, |a| a.ud2().unwrap());
    let g = TempFile::with_bytes(&code);
    let out = run_vmm(&["--kernel", g.path(), "--mode", "long", "--timeout", "20"]);
    assert_eq!(out.status, exit_status::TRIPLE_FAULT, "{}", out.stderr);
    assert!(out.stderr.contains("triple fault"), "{}", out.stderr);
}

#[test]
fn test_spinning_guest_is_ended_by_timeout() {
    require_kvm();
    // jmp $: no exits at all, so only the watchdog's kick can end it.
    let g = TempFile::with_bytes(&[0xeb, 0xfe]);
    let out = run_vmm(&["--kernel", g.path(), "--timeout", "0.5"]);
    assert_eq!(out.status, exit_status::LIMIT_REACHED, "{}", out.stderr);
    assert!(out.stderr.contains("timeout reached"), "{}", out.stderr);
}

#[test]
fn test_spinning_long_mode_guest_is_ended_by_timeout() {
    require_kvm();
    let code = assemble(64, 0x1000, |a| {
        let mut top = a.create_label();
        a.set_label(&mut top).unwrap();
        a.inc(rax).unwrap();
        a.jmp(top).unwrap();
    });
    let g = TempFile::with_bytes(&code);
    let out = run_vmm(&["--kernel", g.path(), "--mode", "long", "--timeout", "0.5"]);
    assert_eq!(out.status, exit_status::LIMIT_REACHED, "{}", out.stderr);
}

#[test]
fn test_real_mode_entry_segment_offset() {
    require_kvm();
    // Loaded at 0x20000, entered as 0x2000:0; CS base must be 0x20000.
    let code = assemble(16, 0, |a| {
        a.mov(ax, cs).unwrap();
        a.out(0xe9, al).unwrap(); // low byte of CS: 0x00
        a.mov(al, ah).unwrap();
        a.out(0xe9, al).unwrap(); // high byte: 0x20
        a.hlt().unwrap();
    });
    let g = TempFile::with_bytes(&code);
    let out = run_vmm(&[
        "--kernel",
        g.path(),
        "--load-addr",
        "0x20000",
        "--entry",
        "0x2000:0",
        "--timeout",
        "20",
    ]);
    assert_eq!(out.status, exit_status::HALTED, "{}", out.stderr);
    assert_eq!(out.stdout.as_bytes(), [0x00, 0x20]);
}
