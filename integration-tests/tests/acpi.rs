//! Firmware tables seen from a guest: it scans the BIOS area for the ACPI
//! RSDP as an OS does, follows the XSDT to the MADT, and counts the enabled
//! local APICs, which must match `--cpus`. A second guest finds the Intel MP
//! floating pointer and counts processor entries.

use integration_tests::code_asm::*;
use integration_tests::{assemble, require_kvm, run_vmm, TempFile};
use vmm_bin::exit_status::debug_exit_status;

/// Written to debug-exit if a signature is not found (status
/// `debug_exit_status(NOT_FOUND)`, 0xc3).
const NOT_FOUND: u32 = 0x61;

fn count_madt_cpus() -> Vec<u8> {
    assemble(64, 0x1000, |a| {
        let mut scan = a.create_label();
        let mut found = a.create_label();
        let mut fail = a.create_label();
        a.mov(rsi, 0xe_0000u64).unwrap();
        a.mov(rax, u64::from_le_bytes(*b"RSD PTR ")).unwrap();
        a.set_label(&mut scan).unwrap();
        a.cmp(qword_ptr(rsi), rax).unwrap();
        a.je(found).unwrap();
        a.add(rsi, 16).unwrap();
        a.cmp(rsi, 0x10_0000).unwrap();
        a.jb(scan).unwrap();
        a.jmp(fail).unwrap();
        a.set_label(&mut found).unwrap();
        // XSDT: address at RSDP+24; entries (8 bytes) from +36 to +length.
        a.mov(rbx, qword_ptr(rsi + 24)).unwrap();
        a.mov(ecx, dword_ptr(rbx + 4)).unwrap();
        a.add(rcx, rbx).unwrap();
        a.lea(rdi, qword_ptr(rbx + 36)).unwrap();
        let mut next = a.create_label();
        let mut madt = a.create_label();
        a.set_label(&mut next).unwrap();
        a.cmp(rdi, rcx).unwrap();
        a.jae(fail).unwrap();
        a.mov(rdx, qword_ptr(rdi)).unwrap();
        a.cmp(dword_ptr(rdx), u32::from_le_bytes(*b"APIC") as i32)
            .unwrap();
        a.je(madt).unwrap();
        a.add(rdi, 8).unwrap();
        a.jmp(next).unwrap();
        a.set_label(&mut madt).unwrap();
        // MADT entries from +44: type, length; type 0 = local APIC, flags
        // at +4 bit 0 = enabled.
        a.mov(ecx, dword_ptr(rdx + 4)).unwrap();
        a.add(rcx, rdx).unwrap();
        a.lea(rdi, qword_ptr(rdx + 44)).unwrap();
        a.xor(r8d, r8d).unwrap();
        let mut entry = a.create_label();
        let mut skip = a.create_label();
        let mut done = a.create_label();
        a.set_label(&mut entry).unwrap();
        a.cmp(rdi, rcx).unwrap();
        a.jae(done).unwrap();
        a.cmp(byte_ptr(rdi), 0).unwrap();
        a.jne(skip).unwrap();
        a.test(byte_ptr(rdi + 4), 1).unwrap();
        a.jz(skip).unwrap();
        a.inc(r8d).unwrap();
        a.set_label(&mut skip).unwrap();
        a.movzx(eax, byte_ptr(rdi + 1)).unwrap();
        a.test(eax, eax).unwrap();
        a.jz(done).unwrap();
        a.add(rdi, rax).unwrap();
        a.jmp(entry).unwrap();
        a.set_label(&mut done).unwrap();
        a.mov(eax, r8d).unwrap();
        a.out(0xf4, eax).unwrap();
        a.set_label(&mut fail).unwrap();
        a.mov(eax, NOT_FOUND).unwrap();
        a.out(0xf4, eax).unwrap();
    })
}

fn count_mp_cpus() -> Vec<u8> {
    assemble(64, 0x1000, |a| {
        let mut scan = a.create_label();
        let mut found = a.create_label();
        let mut fail = a.create_label();
        a.mov(rsi, 0xf_0000u64).unwrap();
        a.set_label(&mut scan).unwrap();
        a.cmp(dword_ptr(rsi), u32::from_le_bytes(*b"_MP_") as i32)
            .unwrap();
        a.je(found).unwrap();
        a.add(rsi, 16).unwrap();
        a.cmp(rsi, 0x10_0000).unwrap();
        a.jb(scan).unwrap();
        a.jmp(fail).unwrap();
        a.set_label(&mut found).unwrap();
        // Configuration table at +4; entry count at +34, entries from +44:
        // processor entries (type 0) are 20 bytes, the others 8.
        a.mov(ebx, dword_ptr(rsi + 4)).unwrap();
        a.cmp(dword_ptr(rbx), u32::from_le_bytes(*b"PCMP") as i32)
            .unwrap();
        a.jne(fail).unwrap();
        a.movzx(ecx, word_ptr(rbx + 34)).unwrap();
        a.lea(rdi, qword_ptr(rbx + 44)).unwrap();
        a.xor(r8d, r8d).unwrap();
        let mut entry = a.create_label();
        let mut other = a.create_label();
        let mut done = a.create_label();
        a.set_label(&mut entry).unwrap();
        a.test(ecx, ecx).unwrap();
        a.jz(done).unwrap();
        a.dec(ecx).unwrap();
        a.cmp(byte_ptr(rdi), 0).unwrap();
        a.jne(other).unwrap();
        a.inc(r8d).unwrap();
        a.add(rdi, 20).unwrap();
        a.jmp(entry).unwrap();
        a.set_label(&mut other).unwrap();
        a.add(rdi, 8).unwrap();
        a.jmp(entry).unwrap();
        a.set_label(&mut done).unwrap();
        a.mov(eax, r8d).unwrap();
        a.out(0xf4, eax).unwrap();
        a.set_label(&mut fail).unwrap();
        a.mov(eax, NOT_FOUND).unwrap();
        a.out(0xf4, eax).unwrap();
    })
}

fn run(code: Vec<u8>, cpus: u32) -> integration_tests::Output {
    let g = TempFile::with_bytes(&code);
    run_vmm(&[
        "--kernel",
        g.path(),
        "--mode",
        "long",
        "--platform",
        "pc",
        "--cpus",
        &cpus.to_string(),
        "--timeout",
        "30",
    ])
}

#[test]
fn test_guest_finds_rsdp_and_counts_madt_cpus() {
    require_kvm();
    for cpus in [1u32, 2, 4] {
        let out = run(count_madt_cpus(), cpus);
        assert_eq!(
            out.status,
            debug_exit_status(cpus),
            "--cpus {cpus}: {}",
            out.stderr
        );
    }
}

#[test]
fn test_guest_finds_mp_table_and_counts_cpus() {
    require_kvm();
    for cpus in [1u32, 3] {
        let out = run(count_mp_cpus(), cpus);
        assert_eq!(
            out.status,
            debug_exit_status(cpus),
            "--cpus {cpus}: {}",
            out.stderr
        );
    }
}

#[test]
fn test_minimal_platform_has_no_tables() {
    require_kvm();
    let g = TempFile::with_bytes(&count_madt_cpus());
    let out = run_vmm(&["--kernel", g.path(), "--mode", "long", "--timeout", "30"]);
    assert_eq!(out.status, debug_exit_status(NOT_FOUND), "{}", out.stderr);
}
