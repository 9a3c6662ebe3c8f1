//! SMP on the PC platform: the BSP wakes the APs with INIT/SIPI through its
//! local APIC, each AP checks in with the APIC ID CPUID gives it, and the
//! number that checked in must match `--cpus`.

use integration_tests::code_asm::*;
use integration_tests::{assemble, expect_bad_input, require_kvm, run_vmm, TempFile};
use vmm_bin::exit_status::{self, debug_exit_status};

/// Where the APs count themselves in (guest-physical).
const COUNTER: u64 = 0x6000;
/// The AP trampoline's page: SIPI vector 0x08 starts APs at 0x8000.
const TRAMPOLINE: u64 = 0x8000;

/// BSP (32-bit flat protected mode at 0x1000) + AP trampoline (real mode at
/// 0x8000) as one raw image loaded at 0x1000.
fn smp_guest() -> Vec<u8> {
    let bsp = assemble(32, 0x1000, |a| {
        a.mov(dword_ptr(COUNTER), 0).unwrap();
        // INIT to all but self, then SIPI (twice, per the MP spec) with
        // vector 0x08 (start at 0x8000).
        a.mov(dword_ptr(0xfee0_0300u64), 0x000c_4500).unwrap();
        a.mov(dword_ptr(0xfee0_0300u64), 0x000c_4608).unwrap();
        a.mov(dword_ptr(0xfee0_0300u64), 0x000c_4608).unwrap();
        // Expected APs: CPUID.1:EBX[23:16] (logical processors) - 1.
        a.mov(eax, 1).unwrap();
        a.cpuid().unwrap();
        a.shr(ebx, 16).unwrap();
        a.and(ebx, 0xff).unwrap();
        a.dec(ebx).unwrap();
        let mut wait = a.create_label();
        a.set_label(&mut wait).unwrap();
        a.pause().unwrap();
        a.mov(eax, dword_ptr(COUNTER)).unwrap();
        a.cmp(eax, ebx).unwrap();
        a.jb(wait).unwrap();
        // Report the CPUs seen: APs + the BSP.
        a.inc(eax).unwrap();
        a.mov(edx, 0xf4).unwrap();
        a.out(dx, eax).unwrap();
        a.hlt().unwrap();
    });
    let ap = assemble(16, 0, |a| {
        a.mov(eax, 1).unwrap();
        a.cpuid().unwrap();
        a.shr(ebx, 24).unwrap();
        a.mov(al, bl).unwrap();
        a.add(al, b'0' as i32).unwrap();
        a.out(0xe9, al).unwrap();
        a.xor(ax, ax).unwrap();
        a.mov(ds, ax).unwrap();
        a.lock().inc(dword_ptr(COUNTER)).unwrap();
        a.cli().unwrap();
        let mut stop = a.create_label();
        a.set_label(&mut stop).unwrap();
        a.hlt().unwrap();
        a.jmp(stop).unwrap();
    });
    let mut image = bsp;
    let ap_offset = (TRAMPOLINE - 0x1000) as usize;
    assert!(image.len() <= ap_offset);
    image.resize(ap_offset, 0x90);
    image.extend_from_slice(&ap);
    image
}

fn run_smp(cpus: u32) -> integration_tests::Output {
    let g = TempFile::with_bytes(&smp_guest());
    run_vmm(&[
        "--kernel",
        g.path(),
        "--mode",
        "protected",
        "--platform",
        "pc",
        "--cpus",
        &cpus.to_string(),
        "--timeout",
        "30",
    ])
}

#[test]
fn test_two_cpus_check_in() {
    require_kvm();
    let out = run_smp(2);
    assert_eq!(
        out.status,
        debug_exit_status(2),
        "stdout {:?} stderr {}",
        out.stdout,
        out.stderr
    );
    assert_eq!(out.stdout, "1");
}

#[test]
fn test_four_cpus_check_in_with_distinct_apic_ids() {
    require_kvm();
    let out = run_smp(4);
    assert_eq!(
        out.status,
        debug_exit_status(4),
        "stdout {:?} stderr {}",
        out.stdout,
        out.stderr
    );
    let mut ids: Vec<char> = out.stdout.chars().collect();
    ids.sort();
    assert_eq!(ids, ['1', '2', '3']);
}

#[test]
fn test_cpu_count_errors() {
    let g = TempFile::with_bytes(&[0xf4]);
    for (cpus, needle) in [
        ("0", "--cpus 0"),
        ("100000", "--cpus 100000"),
        ("two", "'two'"),
    ] {
        expect_bad_input(
            &["--kernel", g.path(), "--platform", "pc", "--cpus", cpus],
            needle,
        );
    }
    expect_bad_input(
        &["--kernel", g.path(), "--platform", "minimal", "--cpus", "2"],
        "needs the PC platform",
    );
}

#[test]
fn test_one_vcpu_faulting_ends_vm_while_others_spin() {
    require_kvm();
    // The BSP wakes 3 APs that spin forever without exits, waits until they
    // all run, then triple-faults (ud2, no IDT). The VM must end with the
    // triple-fault status and every spinning AP must be stopped and joined.
    let bsp = assemble(32, 0x1000, |a| {
        a.mov(dword_ptr(COUNTER), 0).unwrap();
        a.mov(dword_ptr(0xfee0_0300u64), 0x000c_4500).unwrap();
        a.mov(dword_ptr(0xfee0_0300u64), 0x000c_4608).unwrap();
        let mut wait = a.create_label();
        a.set_label(&mut wait).unwrap();
        a.pause().unwrap();
        a.cmp(dword_ptr(COUNTER), 3).unwrap();
        a.jb(wait).unwrap();
        a.ud2().unwrap();
    });
    let ap = assemble(16, 0, |a| {
        a.xor(ax, ax).unwrap();
        a.mov(ds, ax).unwrap();
        a.lock().inc(dword_ptr(COUNTER)).unwrap();
        let mut spin = a.create_label();
        a.set_label(&mut spin).unwrap();
        a.jmp(spin).unwrap();
    });
    let mut image = bsp;
    image.resize((TRAMPOLINE - 0x1000) as usize, 0x90);
    image.extend_from_slice(&ap);
    let g = TempFile::with_bytes(&image);
    let out = run_vmm(&[
        "--kernel",
        g.path(),
        "--mode",
        "protected",
        "--platform",
        "pc",
        "--cpus",
        "4",
        "--timeout",
        "30",
    ]);
    assert_eq!(out.status, exit_status::TRIPLE_FAULT, "{}", out.stderr);
    assert!(
        out.stderr.contains("triple fault on vCPU 0"),
        "{}",
        out.stderr
    );
    assert!(
        out.elapsed < std::time::Duration::from_secs(25),
        "stopping took {:?}",
        out.elapsed
    );
}
