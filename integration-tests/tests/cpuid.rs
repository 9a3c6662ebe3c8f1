//! CPUID as the guest sees it: the fields the VMM sets per vCPU and per VM
//! that these machines pass through (leaf 1's APIC ID and logical count are
//! also covered by the SMP test; leaf 7 and some leaf 1 bits come from the
//! host here, so they are not asserted).

use integration_tests::code_asm::*;
use integration_tests::{assemble, le_u32, require_kvm, run_vmm, TempFile};
use vmm_bin::exit_status::debug_exit_status;

/// Dumps EAX..EDX of CPUID(leaf, subleaf) to the debug console, 16 bytes.
fn cpuid_dump(leaf: u32, subleaf: u32) -> Vec<u8> {
    assemble(64, 0x1000, |a| {
        a.mov(eax, leaf).unwrap();
        a.mov(ecx, subleaf).unwrap();
        a.cpuid().unwrap();
        a.mov(dword_ptr(0x6000u64), eax).unwrap();
        a.mov(dword_ptr(0x6004u64), ebx).unwrap();
        a.mov(dword_ptr(0x6008u64), ecx).unwrap();
        a.mov(dword_ptr(0x600cu64), edx).unwrap();
        a.mov(rsi, 0x6000u64).unwrap();
        a.mov(ecx, 16).unwrap();
        a.mov(dx, 0xe9).unwrap();
        a.rep().outsb().unwrap();
        // debug-exit 0 (status 1): works with and without an irqchip.
        a.mov(al, 0).unwrap();
        a.out(0xf4, al).unwrap();
    })
}

fn regs(leaf: u32, subleaf: u32, extra: &[&str]) -> [u32; 4] {
    let g = TempFile::with_bytes(&cpuid_dump(leaf, subleaf));
    let mut args = vec!["--kernel", g.path(), "--mode", "long", "--timeout", "20"];
    args.extend_from_slice(extra);
    let out = run_vmm(&args);
    assert_eq!(out.status, debug_exit_status(0), "{}", out.stderr);
    assert_eq!(out.stdout_raw.len(), 16);
    let w = |i: usize| le_u32(&out.stdout_raw, i * 4);
    [w(0), w(1), w(2), w(3)]
}

#[test]
fn test_hypervisor_leaf_is_kvm() {
    require_kvm();
    let [max, b, c, d] = regs(0x4000_0000, 0, &[]);
    let sig: Vec<u8> = [b, c, d].iter().flat_map(|r| r.to_le_bytes()).collect();
    assert_eq!(&sig, b"KVMKVMKVM\0\0\0");
    assert!(max >= 0x4000_0001);
}

#[test]
fn test_hypercall_pv_features_hidden_unless_asked() {
    require_kvm();
    // PV_UNHALT(7), PV_TLB_FLUSH(9), PV_SEND_IPI(11), POLL_CONTROL(12),
    // PV_SCHED_YIELD(13): each needs a working vmcall.
    const HYPERCALL_FEATURES: u32 = (1 << 7) | (1 << 9) | (1 << 11) | (1 << 12) | (1 << 13);
    let [hidden, ..] = regs(0x4000_0001, 0, &[]);
    assert_eq!(hidden & HYPERCALL_FEATURES, 0, "features {hidden:#x}");
    let [shown, ..] = regs(0x4000_0001, 0, &["--pv-hypercalls"]);
    assert_eq!(
        shown & !HYPERCALL_FEATURES,
        hidden & !HYPERCALL_FEATURES,
        "other features unchanged"
    );
    assert_ne!(
        shown & HYPERCALL_FEATURES,
        0,
        "this KVM offers none of them? {shown:#x}"
    );
}

#[test]
fn test_topology_leaf_0xb_describes_the_cpus() {
    require_kvm();
    // Subleaf 1 is the core level: the number of vCPUs; EDX the x2APIC ID.
    let [_, b, c, d] = regs(0xb, 1, &[]);
    assert_eq!((b & 0xffff, (c >> 8) & 0xff, d), (1, 2, 0));
    let [a3, b3, c3, d3] = regs(0xb, 1, &["--platform", "pc", "--cpus", "3"]);
    assert_eq!((a3 & 0x1f, b3 & 0xffff, (c3 >> 8) & 0xff, d3), (2, 3, 2, 0));
    let [_, b1, ..] = regs(1, 0, &["--platform", "pc", "--cpus", "3"]);
    assert_eq!(b1 >> 24, 0, "BSP APIC ID");
    assert_eq!((b1 >> 16) & 0xff, 3, "logical processor count");
}
