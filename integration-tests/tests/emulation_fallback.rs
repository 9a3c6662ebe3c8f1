//! The emulation fallback (vmm_cpu::fallback) end to end: 64-bit guests
//! execute the instructions the development machines' KVM fails to emulate
//! at CPL0 and report what the CPU left behind (registers, flags, memory,
//! RIP, or the exception their handler received) over the debug console.
//!
//! Measured on this machine before the fallback existed (a guest executing
//! each at CPL0 in long mode): `clwb`, `rdtscp`, `cmpxchg16b` (with and
//! without LOCK), `clac`, `stac`, `rdpru` and `invpcid` end in an emulation
//! failure; `clflush` and `clflushopt` do NOT (KVM emulates them), so they
//! cannot reach the fallback here and are tested only by the unit tests on a
//! mock vCPU (cpu/src/fallback/tests.rs). The guest's CPUID here has
//! CX16, CLWB, RDTSCP (advertised by the fallback), and neither SMAP in the
//! table the VMM sets, nor RDPRU nor INVPCID: so `clac`, `stac`, `rdpru`
//! and `invpcid` must raise #UD.

use integration_tests::code_asm::*;
use integration_tests::guest_asm::idt_gate64;
use integration_tests::{assemble, le_u64, require_kvm, run_vmm, Output, TempFile};
use vmm_bin::exit_status::{debug_exit_status, VCPU_FAULT};

const LOAD: u64 = 0x1000;
const IDTR: u64 = 0x2ff0;
const IDT: u64 = 0x3000;
const HANDLERS: u64 = 0x3200;
const HANDLER_SIZE: u64 = 0x80;
const VECTORS: u64 = 32;
const STACK: u64 = 0x7000;
const MEMORY_MIB: u64 = 16;
const RAM_END: u64 = MEMORY_MIB << 20;
/// First value a handler reports: this | vector.
const EXCEPTION_TAG: u64 = 0xe0e0_0000;
/// What the guest puts in R8 right after the instruction under test: it
/// proves RIP advanced to exactly the next instruction.
const NEXT_MARK: i32 = 0x5a5a;

/// Sends RAX (8 bytes, little-endian) to the debug console; clobbers RCX.
fn report_rax(a: &mut CodeAssembler) {
    a.mov(ecx, 8).unwrap();
    let mut again = a.create_label();
    a.set_label(&mut again).unwrap();
    a.out(0xe9, al).unwrap();
    a.shr(rax, 8).unwrap();
    a.dec(ecx).unwrap();
    a.jnz(again).unwrap();
}

fn report(a: &mut CodeAssembler, reg: AsmRegister64) {
    if reg != rax {
        a.mov(rax, reg).unwrap();
    }
    report_rax(a);
}

/// Reports the address of `label` (where an instruction under test sits).
fn report_label(a: &mut CodeAssembler, label: CodeLabel) {
    a.lea(rax, ptr(label)).unwrap();
    report_rax(a);
}

/// A long-mode guest: `main` at LOAD, then debug-exit 0. Exceptions 6, 12,
/// 13 and 14 report EXCEPTION_TAG | vector, the error code (if any), the
/// faulting RIP and, for #PF, CR2, then continue at the address in R15 with
/// a fresh stack; any other exception ends the run with debug-exit
/// 0x40 | vector.
fn guest(main: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    let mut img = assemble(64, LOAD, |a| {
        a.mov(rsp, STACK).unwrap();
        a.lidt(ptr(IDTR)).unwrap();
        main(a);
        a.mov(al, 0).unwrap();
        a.out(0xf4, al).unwrap();
        a.hlt().unwrap();
    });
    assert!(img.len() as u64 <= IDTR - LOAD, "main code too long");
    img.resize((IDTR - LOAD) as usize, 0x90);
    img.extend_from_slice(&((VECTORS * 16 - 1) as u16).to_le_bytes());
    img.extend_from_slice(&IDT.to_le_bytes());
    img.resize((IDT - LOAD) as usize, 0);
    for v in 0..VECTORS {
        img.extend_from_slice(&idt_gate64(HANDLERS + v * HANDLER_SIZE));
    }
    img.resize((HANDLERS - LOAD) as usize, 0);
    for v in 0..VECTORS {
        let at = HANDLERS + v * HANDLER_SIZE;
        let code = assemble(64, at, |a| match v {
            6 | 12 | 13 | 14 => {
                a.mov(rax, EXCEPTION_TAG | v).unwrap();
                report_rax(a);
                if v != 6 {
                    a.pop(rax).unwrap(); // error code
                    report_rax(a);
                }
                a.pop(rax).unwrap(); // RIP
                report_rax(a);
                if v == 14 {
                    a.mov(rax, cr2).unwrap();
                    report_rax(a);
                }
                a.mov(rsp, STACK).unwrap();
                a.jmp(r15).unwrap();
            }
            _ => {
                a.mov(al, (0x40 | v) as i32).unwrap();
                a.out(0xf4, al).unwrap();
                a.hlt().unwrap();
            }
        });
        assert!(code.len() as u64 <= HANDLER_SIZE);
        img.extend_from_slice(&code);
        img.resize((at + HANDLER_SIZE - LOAD) as usize, 0xcc);
    }
    img
}

fn run(img: &[u8], extra: &[&str]) -> Output {
    let g = TempFile::with_bytes(img);
    let mem = MEMORY_MIB.to_string();
    let mut args = vec![
        "--kernel",
        g.path(),
        "--mode",
        "long",
        "--memory",
        &mem,
        "--timeout",
        "30",
    ];
    args.extend_from_slice(extra);
    run_vmm(&args)
}

/// Runs `img` and returns the u64 values it reported, asserting it ended
/// with debug-exit 0.
fn values(img: &[u8], extra: &[&str]) -> (Vec<u64>, Output) {
    let out = run(img, extra);
    assert_eq!(
        out.status,
        debug_exit_status(0),
        "guest did not finish: stderr {}",
        out.stderr
    );
    assert_eq!(out.stdout_raw.len() % 8, 0, "{:?}", out.stdout_raw);
    let v = (0..out.stdout_raw.len() / 8)
        .map(|i| le_u64(&out.stdout_raw, i * 8))
        .collect();
    (v, out)
}

/// Sets R15 to the label the exception handlers continue at.
fn continue_at(a: &mut CodeAssembler, label: CodeLabel) {
    a.lea(r15, ptr(label)).unwrap();
}

#[test]
fn test_clwb_completes_in_ram_and_beyond_and_faults_unmapped() {
    require_kvm();
    let img = guest(|a| {
        // The last byte of RAM, then a mapped address past RAM (no RAM
        // behind it: hardware flushes nothing and does not fault), each
        // followed by the marker instruction.
        for addr in [RAM_END - 1, RAM_END + 0x40] {
            a.mov(rbx, addr).unwrap();
            a.xor(r8d, r8d).unwrap();
            a.clwb(byte_ptr(rbx)).unwrap();
            a.mov(r8d, NEXT_MARK).unwrap();
            report(a, r8);
        }
        // Above 4 GiB the VMM's identity map has nothing: #PF, CR2 set.
        let mut fault = a.create_label();
        let mut after = a.create_label();
        continue_at(a, after);
        report_label(a, fault);
        a.mov(rbx, 0x1_0000_0040u64).unwrap();
        a.set_label(&mut fault).unwrap();
        a.clwb(byte_ptr(rbx)).unwrap();
        a.set_label(&mut after).unwrap();
        a.nop().unwrap();
    });
    let (v, out) = values(&img, &["--stats"]);
    let mark = NEXT_MARK as u64;
    assert_eq!(v.len(), 7, "{v:x?}");
    assert_eq!(&v[..2], &[mark, mark], "RIP advanced past clwb: {v:x?}");
    let at = v[2];
    assert_eq!(
        &v[3..],
        &[EXCEPTION_TAG | 14, 0, at, 0x1_0000_0040],
        "#PF (not present, read, supervisor) at the clwb with CR2: {v:x?}"
    );
    assert!(
        out.stderr
            .contains("clwb             completed=2 #UD=0 #GP=0 #SS=0 #PF=1"),
        "stats: {}",
        out.stderr
    );
}

#[test]
fn test_rdtscp_returns_tsc_between_rdtscs_and_tsc_aux() {
    require_kvm();
    const AUX: u32 = 0x0123_4567;
    let img = guest(|a| {
        // CPUID 0x80000001 EDX, as the guest sees it.
        a.mov(eax, 0x8000_0001u32).unwrap();
        a.cpuid().unwrap();
        report(a, rdx);
        // TSC_AUX, if this KVM lets the guest write it (the development
        // machines' does not: #GP, and it keeps its reset value 0); R9
        // holds what it should read as.
        let mut refused = a.create_label();
        let mut written = a.create_label();
        continue_at(a, refused);
        a.mov(r9d, AUX).unwrap();
        a.mov(ecx, 0xc000_0103u32).unwrap();
        a.mov(eax, AUX).unwrap();
        a.xor(edx, edx).unwrap();
        a.wrmsr().unwrap();
        a.jmp(written).unwrap();
        a.set_label(&mut refused).unwrap();
        a.xor(r9d, r9d).unwrap();
        a.set_label(&mut written).unwrap();
        report(a, r9);
        // rdtsc / rdtscp / rdtsc.
        a.rdtsc().unwrap();
        a.shl(rdx, 32).unwrap();
        a.or(rax, rdx).unwrap();
        a.mov(r10, rax).unwrap();
        a.mov(rcx, -1i64).unwrap();
        a.mov(rdx, -1i64).unwrap();
        a.xor(r8d, r8d).unwrap();
        a.rdtscp().unwrap();
        a.mov(r8d, NEXT_MARK).unwrap();
        a.mov(r11, rcx).unwrap();
        a.mov(r12, rdx).unwrap(); // upper half cleared by rdtscp
        a.shl(rdx, 32).unwrap();
        a.or(rax, rdx).unwrap();
        a.mov(r13, rax).unwrap();
        a.rdtsc().unwrap();
        a.shl(rdx, 32).unwrap();
        a.or(rax, rdx).unwrap();
        a.mov(r14, rax).unwrap();
        for r in [r8, r10, r13, r14, r11, r12] {
            report(a, r);
        }
    });
    let (mut v, _) = values(&img, &["--stats"]);
    assert_ne!(v[0] & (1 << 27), 0, "RDTSCP advertised: {:#x}", v[0]);
    if v[1] == EXCEPTION_TAG | 13 {
        eprintln!("this KVM refuses the guest's wrmsr to IA32_TSC_AUX (#GP)");
        v.drain(1..4);
    }
    let aux = v.remove(1);
    assert!(aux == 0 || aux == u64::from(AUX), "{v:x?}");
    assert_eq!(v.len(), 7, "{v:x?}");
    assert_eq!(v[1], NEXT_MARK as u64, "RIP advanced past rdtscp");
    let (before, tsc, after) = (v[2], v[3], v[4]);
    assert!(
        before <= tsc && tsc <= after,
        "rdtscp's TSC {tsc} not between rdtsc {before} and {after}"
    );
    assert_eq!(v[5], aux, "ECX = TSC_AUX, upper half cleared");
    assert_eq!(v[6] >> 32, 0, "RDX upper half cleared");
}

#[test]
fn test_rdtscp_hidden_without_fallback() {
    require_kvm();
    let img = guest(|a| {
        a.mov(eax, 0x8000_0001u32).unwrap();
        a.cpuid().unwrap();
        report(a, rdx);
    });
    let (v, _) = values(&img, &["--no-emulation-fallback"]);
    assert_eq!(v[0] & (1 << 27), 0, "RDTSCP advertised: {:#x}", v[0]);
}

/// cmpxchg16b on the 16 bytes at `at` holding (lo, hi) with RDX:RAX =
/// `expected`; reports the marker, RFLAGS, RDX, RAX and the memory after.
fn cmpxchg16b_case(a: &mut CodeAssembler, at: u64, mem: (u64, u64), expected: (u64, u64)) {
    a.mov(rdi, at).unwrap();
    a.mov(rax, mem.0).unwrap();
    a.mov(qword_ptr(rdi), rax).unwrap();
    a.mov(rax, mem.1).unwrap();
    a.mov(qword_ptr(rdi + 8), rax).unwrap();
    a.mov(rax, expected.0).unwrap();
    a.mov(rdx, expected.1).unwrap();
    a.mov(rbx, 0x1111_2222_3333_4444u64).unwrap();
    a.mov(rcx, 0x5555_6666_7777_8888u64).unwrap();
    a.xor(r8d, r8d).unwrap();
    a.stc().unwrap(); // CF must survive: cmpxchg16b changes only ZF
    a.lock().cmpxchg16b(xmmword_ptr(rdi)).unwrap();
    a.pushfq().unwrap(); // the first instruction after: RIP advanced exactly
    a.mov(r8d, NEXT_MARK).unwrap();
    a.pop(r11).unwrap();
    a.mov(r9, rax).unwrap();
    a.mov(r10, rdx).unwrap();
    report(a, r8);
    report(a, r11);
    report(a, r10);
    report(a, r9);
    a.mov(rax, qword_ptr(rdi)).unwrap();
    report_rax(a);
    a.mov(rax, qword_ptr(rdi + 8)).unwrap();
    report_rax(a);
}

#[test]
fn test_cmpxchg16b_success_and_failure_at_the_end_of_ram() {
    require_kvm();
    let at = RAM_END - 16;
    let img = guest(|a| {
        cmpxchg16b_case(a, at, (0xaa, 0xbb), (0xaa, 0xbb));
        cmpxchg16b_case(a, at, (0xcc, 0xdd), (0xaa, 0xbb));
    });
    let (v, _) = values(&img, &[]);
    assert_eq!(v.len(), 12, "{v:x?}");
    const ZF: u64 = 1 << 6;
    let mark = NEXT_MARK as u64;
    // Equal: ZF set, RDX:RAX kept, memory = RCX:RBX.
    assert_eq!(v[0], mark);
    assert_eq!(v[1] & (ZF | 1), ZF | 1, "ZF and CF set: {:#x}", v[1]);
    assert_eq!(
        &v[2..6],
        &[0xbb, 0xaa, 0x1111_2222_3333_4444, 0x5555_6666_7777_8888]
    );
    // Different: ZF clear, RDX:RAX = memory, memory unchanged.
    assert_eq!(v[6], mark);
    assert_eq!(v[7] & (ZF | 1), 1, "ZF clear, CF set: {:#x}", v[7]);
    assert_eq!(&v[8..], &[0xdd, 0xcc, 0xcc, 0xdd]);
}

#[test]
fn test_cmpxchg16b_faults_beyond_ram_misaligned_and_unmapped() {
    require_kvm();
    let img = guest(|a| {
        for addr in [
            RAM_END,             // mapped, no RAM: #GP(0)
            RAM_END - 0x18,      // misaligned: #GP(0)
            0x2_0000_0000,       // not mapped: #PF (write)
            0x8000_0000_0000u64, // non-canonical: #GP(0)
        ] {
            let mut fault = a.create_label();
            let mut after = a.create_label();
            continue_at(a, after);
            report_label(a, fault);
            a.mov(rdi, addr).unwrap();
            a.set_label(&mut fault).unwrap();
            a.lock().cmpxchg16b(xmmword_ptr(rdi)).unwrap();
            a.mov(al, 0x7f).unwrap(); // never reached
            a.out(0xf4, al).unwrap();
            a.set_label(&mut after).unwrap();
            a.nop().unwrap();
        }
    });
    let (v, _) = values(&img, &[]);
    let gp = |at: u64| vec![at, EXCEPTION_TAG | 13, 0, at];
    let mut expected = gp(v[0]);
    expected.extend(gp(v[4]));
    let pf_at = v[8];
    expected.extend([pf_at, EXCEPTION_TAG | 14, 0x2, pf_at, 0x2_0000_0000]);
    expected.extend(gp(v[13]));
    assert_eq!(v, expected);
}

#[test]
fn test_clac_stac_rdpru_invpcid_raise_ud_at_their_rip() {
    require_kvm();
    let img = guest(|a| {
        a.mov(rbx, 0x5000u64).unwrap();
        a.xor(eax, eax).unwrap();
        for i in 0..4 {
            let mut fault = a.create_label();
            let mut after = a.create_label();
            continue_at(a, after);
            report_label(a, fault);
            a.set_label(&mut fault).unwrap();
            match i {
                0 => a.clac().unwrap(),
                1 => a.stac().unwrap(),
                2 => a.rdpru().unwrap(),
                _ => a.invpcid(rax, xmmword_ptr(rbx)).unwrap(),
            }
            a.mov(al, 0x7f).unwrap(); // never reached
            a.out(0xf4, al).unwrap();
            a.set_label(&mut after).unwrap();
            a.nop().unwrap();
        }
    });
    let (v, out) = values(&img, &["--stats", "-v"]);
    assert_eq!(v.len(), 12, "{v:x?}");
    for case in v.chunks(3) {
        assert_eq!(
            case,
            &[case[0], EXCEPTION_TAG | 6, case[0]],
            "#UD at the instruction: {v:x?}"
        );
    }
    for m in ["clac", "stac", "rdpru", "invpcid"] {
        let line = format!("{m:<16} completed=0 #UD=1 ");
        assert!(out.stderr.contains(&line), "{line:?} in {}", out.stderr);
        assert_eq!(
            out.stderr
                .matches(&format!("could not emulate {m} at rip"))
                .count(),
            1,
            "logged once: {}",
            out.stderr
        );
    }
}

#[test]
fn test_fallback_counts_in_metrics_json() {
    require_kvm();
    let img = guest(|a| {
        for _ in 0..3 {
            a.mov(rbx, 0x5000u64).unwrap();
            a.clwb(byte_ptr(rbx)).unwrap();
        }
    });
    let dir = std::env::temp_dir().join(format!("fallback-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.json");
    let (_, _) = values(&img, &["--metrics-file", path.to_str().unwrap()]);
    let json = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        json.contains(
            r#""emulation_fallback":{"clwb":{"completed":3,"ud":0,"gp":0,"ss":0,"pf":0}}"#
        ),
        "{json}"
    );
}

#[test]
fn test_no_emulation_fallback_stops_on_the_failure_naming_it() {
    require_kvm();
    let img = guest(|a| {
        a.mov(rdi, 0x5000u64).unwrap();
        a.cmpxchg16b(xmmword_ptr(rdi)).unwrap();
    });
    let out = run(&img, &["--no-emulation-fallback"]);
    assert_eq!(out.status, VCPU_FAULT, "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("emulation failure at rip 0x")
            && out
                .stderr
                .contains(": cmpxchg16b [rdi] (48 0f c7 0f): the emulation fallback is off"),
        "{}",
        out.stderr
    );
    // With the fallback on, an instruction outside its list still stops
    // the VM, named.
    let img = guest(|a| {
        a.popcnt(rax, rbx).unwrap();
    });
    let out = run(&img, &[]);
    assert_eq!(out.status, VCPU_FAULT, "stderr: {}", out.stderr);
    assert!(
        out.stderr
            .contains(": popcnt rax,rbx (f3 48 0f b8 c3): not in the emulation fallback's list"),
        "{}",
        out.stderr
    );
}

/// Two vCPUs each add 1 to a 128-bit counter `ITERATIONS` times with a
/// `lock cmpxchg16b` retry loop. Every one of those fails emulation here
/// and is finished by the fallback on its vCPU's thread, both threads at
/// once on the two host cores: a non-atomic compare-exchange would lose
/// increments. The counter starts just below a carry into its high half.
#[test]
fn test_cmpxchg16b_is_atomic_across_vcpus() {
    require_kvm();
    const ITERATIONS: i32 = 3000;
    const COUNTER: u64 = 0x5000;
    const AP_DONE: u64 = 0x5010;
    const AP_RETRIES: u64 = 0x5018;
    const START: u128 = (7u128 << 64) | (u64::MAX as u128 - 1000);
    const TRAMPOLINE: u64 = 0x8000;
    const AP64: u64 = 0x8100;
    const AP_GDTR: u64 = 0x8f00;
    /// RDI = COUNTER; retries counted in R13; clobbers RAX-RDX, R12.
    fn add_loop(a: &mut CodeAssembler) {
        a.mov(rdi, COUNTER).unwrap();
        a.xor(r13d, r13d).unwrap();
        a.mov(r12d, ITERATIONS).unwrap();
        let mut again = a.create_label();
        let mut retry = a.create_label();
        let mut done = a.create_label();
        a.set_label(&mut again).unwrap();
        a.mov(rax, qword_ptr(rdi)).unwrap();
        a.mov(rdx, qword_ptr(rdi + 8)).unwrap();
        a.set_label(&mut retry).unwrap();
        a.mov(rbx, rax).unwrap();
        a.mov(rcx, rdx).unwrap();
        a.add(rbx, 1).unwrap();
        a.adc(rcx, 0).unwrap();
        a.lock().cmpxchg16b(xmmword_ptr(rdi)).unwrap();
        a.jz(done).unwrap();
        a.inc(r13).unwrap();
        a.jmp(retry).unwrap();
        a.set_label(&mut done).unwrap();
        a.dec(r12d).unwrap();
        a.jnz(again).unwrap();
    }
    let mut img = guest(|a| {
        a.mov(rax, START as u64).unwrap();
        a.mov(qword_ptr(COUNTER), rax).unwrap();
        a.mov(qword_ptr(COUNTER + 8), (START >> 64) as i32).unwrap();
        a.mov(qword_ptr(AP_DONE), 0).unwrap();
        // INIT, then SIPI twice with vector 0x08 (start at 0x8000).
        a.mov(rsi, 0xfee0_0300u64).unwrap(); // the LAPIC's ICR
        for icr in [0x000c_4500, 0x000c_4608, 0x000c_4608] {
            a.mov(dword_ptr(rsi), icr).unwrap();
        }
        add_loop(a);
        let mut wait = a.create_label();
        a.set_label(&mut wait).unwrap();
        a.pause().unwrap();
        a.cmp(qword_ptr(AP_DONE), 1).unwrap();
        a.jne(wait).unwrap();
        report(a, r13);
        a.mov(rax, qword_ptr(AP_RETRIES)).unwrap();
        report_rax(a);
        a.mov(rax, qword_ptr(COUNTER)).unwrap();
        report_rax(a);
        a.mov(rax, qword_ptr(COUNTER + 8)).unwrap();
        report_rax(a);
    });
    // The AP: real mode at 0x8000 -> long mode on the VMM's GDT (0x500)
    // and page tables (0x9000), then the same loop.
    let real = assemble(16, TRAMPOLINE, |a| {
        a.cli().unwrap();
        a.xor(ax, ax).unwrap();
        a.mov(ds, ax).unwrap();
        a.lgdt(ptr(AP_GDTR)).unwrap();
        a.mov(eax, cr4).unwrap();
        a.or(eax, 0x20).unwrap(); // PAE
        a.mov(cr4, eax).unwrap();
        a.mov(eax, 0x9000).unwrap();
        a.mov(cr3, eax).unwrap();
        a.mov(ecx, 0xc000_0080u32).unwrap();
        a.rdmsr().unwrap();
        a.or(eax, 0x100).unwrap(); // EFER.LME
        a.wrmsr().unwrap();
        a.mov(eax, cr0).unwrap();
        a.or(eax, 0x8000_0001u32 as i32).unwrap(); // PG | PE
        a.mov(cr0, eax).unwrap();
        // jmp dword 0x10:AP64
        let mut far = vec![0x66, 0xea];
        far.extend_from_slice(&(AP64 as u32).to_le_bytes());
        far.extend_from_slice(&0x10u16.to_le_bytes());
        a.db(&far).unwrap();
    });
    let long = assemble(64, AP64, |a| {
        a.mov(ax, 0x18).unwrap();
        a.mov(ds, ax).unwrap();
        a.mov(es, ax).unwrap();
        a.mov(ss, ax).unwrap();
        a.mov(rsp, 0x6c00u64).unwrap();
        add_loop(a);
        a.mov(qword_ptr(AP_RETRIES), r13).unwrap();
        a.mov(qword_ptr(AP_DONE), 1).unwrap();
        let mut stop = a.create_label();
        a.set_label(&mut stop).unwrap();
        a.cli().unwrap();
        a.hlt().unwrap();
        a.jmp(stop).unwrap();
    });
    assert!(img.len() as u64 <= TRAMPOLINE - LOAD);
    img.resize((TRAMPOLINE - LOAD) as usize, 0);
    img.extend_from_slice(&real);
    assert!(img.len() as u64 <= AP64 - LOAD);
    img.resize((AP64 - LOAD) as usize, 0);
    img.extend_from_slice(&long);
    img.resize((AP_GDTR - LOAD) as usize, 0);
    img.extend_from_slice(&0x27u16.to_le_bytes()); // the 5 boot descriptors
    img.extend_from_slice(&0x500u32.to_le_bytes());
    let (v, out) = values(&img, &["--platform", "pc", "--cpus", "2", "--stats"]);
    assert_eq!(v.len(), 4, "{v:x?}");
    let got = (u128::from(v[3]) << 64) | u128::from(v[2]);
    eprintln!(
        "cmpxchg16b across 2 vCPUs: {} retries on the BSP, {} on the AP",
        v[0], v[1]
    );
    assert_eq!(
        got,
        START + 2 * ITERATIONS as u128,
        "lost increments: counter {got:#x}; stats: {}",
        out.stderr
    );
    let completed = 2 * ITERATIONS as u64 + v[0] + v[1];
    assert!(
        out.stderr
            .contains(&format!("cmpxchg16b       completed={completed} #UD=0")),
        "every cmpxchg16b went through the fallback: {}",
        out.stderr
    );
}
