//! The fallback's logic on a mock vCPU and plain guest memory: every
//! listed instruction's result, its faults, and the address translation.
//! (`clflush` and `clflushopt` do not fail emulation on the development
//! machines, so these tests are their only check.)

use std::cell::RefCell;

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::address::{linear_address, translate, Access};
use super::*;
use crate::paging::write_identity_map;

const RAM: u64 = 0x40_0000;

struct MockCpu {
    regs: RefCell<kvm_regs>,
    sregs: kvm_sregs,
    tsc: Option<u64>,
    tsc_aux: Option<u64>,
    injected: RefCell<Vec<Exception>>,
}

impl VcpuAccess for MockCpu {
    fn regs(&self) -> Result<kvm_regs, kvm_ioctls::Error> {
        Ok(*self.regs.borrow())
    }
    fn set_regs(&self, regs: &kvm_regs) -> Result<(), kvm_ioctls::Error> {
        *self.regs.borrow_mut() = *regs;
        Ok(())
    }
    fn sregs(&self) -> Result<kvm_sregs, kvm_ioctls::Error> {
        Ok(self.sregs)
    }
    fn msrs(&self, indices: &[u32]) -> Result<Vec<Option<u64>>, kvm_ioctls::Error> {
        Ok(indices
            .iter()
            .map(|i| match *i {
                rdtscp::MSR_IA32_TSC => self.tsc,
                rdtscp::MSR_IA32_TSC_AUX => self.tsc_aux,
                _ => None,
            })
            .collect())
    }
    fn inject(&self, exception: Exception) -> Result<(), kvm_ioctls::Error> {
        self.injected.borrow_mut().push(exception);
        Ok(())
    }
}

fn all_features() -> GuestFeatures {
    GuestFeatures {
        clflush: true,
        cx16: true,
        smap: true,
        clflushopt: true,
        clwb: true,
        invpcid: false,
        rdtscp: true,
        rdpru: false,
        phys_bits: 40,
    }
}

fn ram() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap()
}

fn seg64(selector: u16, code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 0xb } else { 0x3 },
        present: 1,
        s: 1,
        l: u8::from(code),
        g: 1,
        ..Default::default()
    }
}

/// Long mode at CPL0 on the VMM's identity map (first 4 GiB, 2 MiB pages).
fn long_mode(mem: &GuestMemoryMmap) -> MockCpu {
    let cr3 = write_identity_map(mem, vmm_memory::layout::PML4_START).unwrap();
    let data = seg64(0x18, false);
    let sregs = kvm_sregs {
        cs: seg64(0x10, true),
        ds: data,
        es: data,
        ss: data,
        fs: data,
        gs: data,
        cr0: CR0_PE | CR0_PG | CR0_WP,
        cr3,
        cr4: CR4_PAE,
        efer: EFER_LMA | (1 << 8),
        ..Default::default()
    };
    MockCpu {
        regs: RefCell::new(kvm_regs {
            rip: 0x1000,
            rflags: 0x2,
            rsp: 0x7000,
            ..Default::default()
        }),
        sregs,
        tsc: Some(0x1234_5678_9abc_def0),
        tsc_aux: Some(0xffff_ffff_0000_0007),
        injected: RefCell::new(Vec::new()),
    }
}

fn run(fb: &EmulationFallback, cpu: &MockCpu, bytes: &[u8]) -> FallbackOutcome {
    // KVM reports 15 bytes whatever the instruction's length.
    let mut insn = bytes.to_vec();
    insn.resize(15, 0x90);
    fb.handle(cpu, &insn)
}

const CLWB_RBX: [u8; 4] = [0x66, 0x0f, 0xae, 0x33];
const CLFLUSHOPT_RBX: [u8; 4] = [0x66, 0x0f, 0xae, 0x3b];
const CLFLUSH_RBX: [u8; 3] = [0x0f, 0xae, 0x3b];
const CMPXCHG16B_RDI: [u8; 4] = [0x48, 0x0f, 0xc7, 0x0f];
const LOCK_CMPXCHG16B_RDI: [u8; 5] = [0xf0, 0x48, 0x0f, 0xc7, 0x0f];
const RDTSCP: [u8; 3] = [0x0f, 0x01, 0xf9];
const CLAC: [u8; 3] = [0x0f, 0x01, 0xca];
const STAC: [u8; 3] = [0x0f, 0x01, 0xcb];
const RDPRU: [u8; 3] = [0x0f, 0x01, 0xfd];
const INVPCID_RAX_RBX: [u8; 5] = [0x66, 0x0f, 0x38, 0x82, 0x03];

#[test]
fn test_flushes_advance_rip_and_count() {
    let mem = ram();
    let fb = EmulationFallback::new(mem.clone(), all_features());
    for bytes in [&CLWB_RBX[..], &CLFLUSHOPT_RBX, &CLFLUSH_RBX] {
        let cpu = long_mode(&mem);
        cpu.regs.borrow_mut().rbx = RAM - 1; // the last byte of RAM
        cpu.regs.borrow_mut().rflags |= RFLAGS_RF;
        assert_eq!(run(&fb, &cpu, bytes), FallbackOutcome::Completed);
        let r = cpu.regs.borrow();
        assert_eq!(r.rip, 0x1000 + bytes.len() as u64);
        assert_eq!(r.rflags & RFLAGS_RF, 0, "RF cleared after the instruction");
        assert!(cpu.injected.borrow().is_empty());
    }
    let names: Vec<_> = fb
        .stats()
        .iter()
        .map(|s| (s.mnemonic, s.completed))
        .collect();
    assert_eq!(names, [("clwb", 1), ("clflushopt", 1), ("clflush", 1)]);
}

#[test]
fn test_flush_beyond_ram_completes_but_unmapped_faults() {
    let mem = ram();
    let fb = EmulationFallback::new(mem.clone(), all_features());
    // Mapped by the identity map but not RAM: no fault, as on hardware.
    let cpu = long_mode(&mem);
    cpu.regs.borrow_mut().rbx = RAM + 0x40;
    assert_eq!(run(&fb, &cpu, &CLWB_RBX), FallbackOutcome::Completed);
    // Above 4 GiB nothing is mapped: #PF, not present, read, supervisor.
    let cpu = long_mode(&mem);
    cpu.regs.borrow_mut().rbx = 0x1_0000_0040;
    let pf = Exception::PageFault {
        address: 0x1_0000_0040,
        error: 0,
    };
    assert_eq!(run(&fb, &cpu, &CLWB_RBX), FallbackOutcome::Injected(pf));
    assert_eq!(*cpu.injected.borrow(), [pf]);
    assert_eq!(cpu.regs.borrow().rip, 0x1000, "RIP stays on the fault");
    // Non-canonical: #GP(0); through RSP (the stack segment): #SS(0).
    let cpu = long_mode(&mem);
    cpu.regs.borrow_mut().rbx = 0x8000_0000_0000;
    assert_eq!(
        run(&fb, &cpu, &CLFLUSH_RBX),
        FallbackOutcome::Injected(Exception::GeneralProtection(0))
    );
    let cpu = long_mode(&mem);
    cpu.regs.borrow_mut().rsp = 0xffff_0000_0000_0000;
    assert_eq!(
        run(&fb, &cpu, &[0x0f, 0xae, 0x3c, 0x24]), // clflush [rsp]
        FallbackOutcome::Injected(Exception::StackFault(0))
    );
    let s = fb.stats();
    assert_eq!((s[0].mnemonic, s[0].completed, s[0].pf), ("clwb", 1, 1));
    assert_eq!((s[1].mnemonic, s[1].gp, s[1].ss), ("clflush", 1, 1));
}

#[test]
fn test_missing_cpuid_bit_or_lock_prefix_is_ud() {
    let mem = ram();
    let none = GuestFeatures {
        phys_bits: 40,
        ..Default::default()
    };
    let fb = EmulationFallback::new(mem.clone(), none);
    for bytes in [
        &CLWB_RBX[..],
        &CLFLUSHOPT_RBX,
        &CLFLUSH_RBX,
        &RDTSCP,
        &CMPXCHG16B_RDI,
        &CLAC,
        &STAC,
        &RDPRU,
        &INVPCID_RAX_RBX,
    ] {
        let cpu = long_mode(&mem);
        cpu.regs.borrow_mut().rbx = 0x100;
        cpu.regs.borrow_mut().rdi = 0x100;
        assert_eq!(
            run(&fb, &cpu, bytes),
            FallbackOutcome::Injected(Exception::InvalidOpcode),
            "{bytes:02x?}"
        );
        assert_eq!(cpu.regs.borrow().rip, 0x1000);
    }
    assert_eq!(fb.stats().len(), 9);
    assert!(fb.stats().iter().all(|s| s.ud == 1 && s.total() == 1));
    let fb = EmulationFallback::new(mem.clone(), all_features());
    let cpu = long_mode(&mem);
    assert_eq!(
        run(&fb, &cpu, &[0xf0, 0x0f, 0x01, 0xca]), // lock clac
        FallbackOutcome::Injected(Exception::InvalidOpcode)
    );
}

#[test]
fn test_cmpxchg16b_success_and_failure() {
    let mem = ram();
    let fb = EmulationFallback::new(mem.clone(), all_features());
    let at = RAM - 16; // the last 16 bytes of RAM
    mem.write_obj(0xaaaa_u64, GuestAddress(at)).unwrap();
    mem.write_obj(0xbbbb_u64, GuestAddress(at + 8)).unwrap();
    let cpu = long_mode(&mem);
    {
        let mut r = cpu.regs.borrow_mut();
        (r.rdi, r.rax, r.rdx, r.rbx, r.rcx) = (at, 0xaaaa, 0xbbbb, 0x1111, 0x2222);
        r.rflags |= 0x1; // CF: must survive
    }
    assert_eq!(
        run(&fb, &cpu, &LOCK_CMPXCHG16B_RDI),
        FallbackOutcome::Completed
    );
    {
        let r = cpu.regs.borrow();
        assert_eq!(r.rflags & (RFLAGS_ZF | 1), RFLAGS_ZF | 1);
        assert_eq!((r.rax, r.rdx, r.rip), (0xaaaa, 0xbbbb, 0x1005));
    }
    assert_eq!(mem.read_obj::<u64>(GuestAddress(at)).unwrap(), 0x1111);
    assert_eq!(mem.read_obj::<u64>(GuestAddress(at + 8)).unwrap(), 0x2222);
    // Again with the old values: mismatch, RDX:RAX get memory, ZF clear.
    cpu.regs.borrow_mut().rip = 0x1000;
    assert_eq!(run(&fb, &cpu, &CMPXCHG16B_RDI), FallbackOutcome::Completed);
    {
        let r = cpu.regs.borrow();
        assert_eq!(r.rflags & RFLAGS_ZF, 0);
        assert_eq!((r.rax, r.rdx, r.rip), (0x1111, 0x2222, 0x1004));
    }
    assert_eq!(mem.read_obj::<u64>(GuestAddress(at)).unwrap(), 0x1111);
    let s = fb.stats();
    assert_eq!((s[0].mnemonic, s[0].completed), ("cmpxchg16b", 2));
}

#[test]
fn test_cmpxchg16b_faults() {
    let mem = ram();
    let fb = EmulationFallback::new(mem.clone(), all_features());
    for (rdi, expected) in [
        (0x108, Exception::GeneralProtection(0)), // misaligned
        (RAM, Exception::GeneralProtection(0)),   // mapped, not RAM
        (
            0x2_0000_0000,
            Exception::PageFault {
                address: 0x2_0000_0000,
                error: 0x2, // not present, write
            },
        ),
        (0x8000_0000_0000, Exception::GeneralProtection(0)), // non-canonical
    ] {
        let cpu = long_mode(&mem);
        cpu.regs.borrow_mut().rdi = rdi;
        assert_eq!(
            run(&fb, &cpu, &CMPXCHG16B_RDI),
            FallbackOutcome::Injected(expected),
            "rdi {rdi:#x}"
        );
        assert_eq!(cpu.regs.borrow().rip, 0x1000);
    }
}

/// Own 4-level tables with 4 KiB pages: VA 0x40_0000 + i*4K -> PA
/// 0x10_0000 + i*4K with `flags` per page.
fn four_k_tables(mem: &GuestMemoryMmap, flags: &[u64]) -> u64 {
    let (pml4, pdpt, pd, pt) = (0x20_0000u64, 0x20_1000u64, 0x20_2000u64, 0x20_3000u64);
    mem.write_obj(pdpt | 0x7, GuestAddress(pml4)).unwrap();
    mem.write_obj(pd | 0x7, GuestAddress(pdpt)).unwrap();
    mem.write_obj(pt | 0x7, GuestAddress(pd + 2 * 8)).unwrap();
    for (i, f) in flags.iter().enumerate() {
        let pa = 0x10_0000 + i as u64 * 0x1000;
        mem.write_obj(pa | f, GuestAddress(pt + i as u64 * 8))
            .unwrap();
    }
    pml4
}

#[test]
fn test_page_walk_4k_permissions_and_accessed_dirty_bits() {
    let mem = ram();
    let fb = EmulationFallback::new(mem.clone(), all_features());
    // Page 0 writable, page 1 read-only, page 2 user, page 3 not present.
    let cr3 = four_k_tables(&mem, &[0x3, 0x1, 0x7, 0x0]);
    let at = |cpu: &mut MockCpu, rdi: u64| {
        cpu.sregs.cr3 = cr3;
        cpu.regs.borrow_mut().rdi = rdi;
    };
    let mut cpu = long_mode(&mem);
    at(&mut cpu, 0x40_0010);
    assert_eq!(run(&fb, &cpu, &CMPXCHG16B_RDI), FallbackOutcome::Completed);
    let pte: u64 = mem.read_obj(GuestAddress(0x20_3000)).unwrap();
    assert_eq!(pte & 0x60, 0x60, "accessed and dirty set: {pte:#x}");
    let pml4e: u64 = mem.read_obj(GuestAddress(0x20_0000)).unwrap();
    assert_eq!(pml4e & 0x60, 0x20, "upper levels: accessed only");
    // Read-only page with CR0.WP: #PF present + write.
    let mut cpu = long_mode(&mem);
    at(&mut cpu, 0x40_1000);
    let ro = Exception::PageFault {
        address: 0x40_1000,
        error: 0x3,
    };
    assert_eq!(
        run(&fb, &cpu, &CMPXCHG16B_RDI),
        FallbackOutcome::Injected(ro)
    );
    // Without CR0.WP the supervisor may write it.
    let mut cpu = long_mode(&mem);
    at(&mut cpu, 0x40_1000);
    cpu.sregs.cr0 &= !CR0_WP;
    assert_eq!(run(&fb, &cpu, &CMPXCHG16B_RDI), FallbackOutcome::Completed);
    // A flush (a load) of the read-only page is fine; of page 3 a #PF.
    let mut cpu = long_mode(&mem);
    at(&mut cpu, 0);
    cpu.regs.borrow_mut().rbx = 0x40_1fff;
    assert_eq!(run(&fb, &cpu, &CLWB_RBX), FallbackOutcome::Completed);
    cpu.regs.borrow_mut().rip = 0x1000;
    cpu.regs.borrow_mut().rbx = 0x40_3004;
    let np = Exception::PageFault {
        address: 0x40_3004,
        error: 0,
    };
    assert_eq!(run(&fb, &cpu, &CLWB_RBX), FallbackOutcome::Injected(np));
    // CPL3 on a supervisor page: present + user.
    let mut cpu = long_mode(&mem);
    at(&mut cpu, 0);
    cpu.sregs.ss.dpl = 3;
    cpu.regs.borrow_mut().rbx = 0x40_0000;
    let user = Exception::PageFault {
        address: 0x40_0000,
        error: 0x5,
    };
    assert_eq!(
        run(&fb, &cpu, &CLFLUSH_RBX),
        FallbackOutcome::Injected(user)
    );
}

#[test]
fn test_page_walk_reserved_bits_and_large_pages() {
    let mem = ram();
    let fb = EmulationFallback::new(mem.clone(), all_features());
    let cpu = long_mode(&mem);
    // A 2 MiB entry of the identity map with a bit above MAXPHYADDR (40).
    let pde_addr = vmm_memory::layout::PDE_START.0 + 8;
    let pde: u64 = mem.read_obj(GuestAddress(pde_addr)).unwrap();
    mem.write_obj(pde | (1 << 45), GuestAddress(pde_addr))
        .unwrap();
    let ctx = Ctx {
        mem: &mem,
        regs: *cpu.regs.borrow(),
        sregs: cpu.sregs,
        instr: iced_x86::Instruction::default(),
        cpl: 0,
        bitness: 64,
        phys_bits: fb.features().phys_bits,
    };
    assert_eq!(
        translate(&ctx, 0x20_0123, Access::Read),
        Err(Exception::PageFault {
            address: 0x20_0123,
            error: 0x9
        })
    );
    assert_eq!(translate(&ctx, 0x40_0123, Access::Read), Ok(0x40_0123));
    // A 1 GiB page in the PDPT.
    let pdpt = vmm_memory::layout::PDPTE_START.0;
    mem.write_obj(0x4000_0000u64 | 0x83, GuestAddress(pdpt + 8))
        .unwrap();
    assert_eq!(translate(&ctx, 0x7fff_fff0, Access::Write), Ok(0x7fff_fff0));
    let e: u64 = mem.read_obj(GuestAddress(pdpt + 8)).unwrap();
    assert_eq!(e & 0x60, 0x60);
}

fn protected32(cr0: u64, cr3: u64, cr4: u64) -> Ctx<'static> {
    let mem = Box::leak(Box::new(ram()));
    let mut s = kvm_sregs {
        cs: seg64(0x8, true),
        ds: seg64(0x10, false),
        cr0,
        cr3,
        cr4,
        ..Default::default()
    };
    s.cs.l = 0;
    s.cs.db = 1;
    s.ds.db = 1;
    Ctx {
        mem,
        regs: kvm_regs::default(),
        sregs: s,
        instr: iced_x86::Instruction::default(),
        cpl: 0,
        bitness: 32,
        phys_bits: 36,
    }
}

#[test]
fn test_pae_and_32_bit_paging() {
    // PAE: PDPT at 0x3000 (4 entries), PD at 0x4000 with a 2 MiB page
    // and a 4 KiB table.
    let ctx = protected32(CR0_PE | CR0_PG, 0x3000, CR4_PAE);
    let mem = ctx.mem;
    mem.write_obj(0x4001u64, GuestAddress(0x3000 + 8)).unwrap(); // 1 GiB slot 1
    mem.write_obj(0x20_0083u64, GuestAddress(0x4000)).unwrap(); // 2 MiB page
    assert_eq!(translate(&ctx, 0x4000_1234, Access::Read), Ok(0x20_1234));
    assert!(matches!(
        translate(&ctx, 0x1234, Access::Read),
        Err(Exception::PageFault { error: 0, .. })
    ));
    // 32-bit: PD at 0x5000; a 4 MiB page with PSE, a 4 KiB page without.
    let ctx = protected32(CR0_PE | CR0_PG, 0x5000, CR4_PSE);
    let mem = ctx.mem;
    mem.write_obj(0x0040_0083u32, GuestAddress(0x5000 + 4))
        .unwrap();
    mem.write_obj(0x6003u32, GuestAddress(0x5000 + 8)).unwrap();
    mem.write_obj(0x0030_1003u32, GuestAddress(0x6000 + 4))
        .unwrap();
    assert_eq!(translate(&ctx, 0x0041_2345, Access::Read), Ok(0x41_2345));
    assert_eq!(translate(&ctx, 0x0080_1abc, Access::Write), Ok(0x30_1abc));
    let pte: u32 = mem.read_obj(GuestAddress(0x6004)).unwrap();
    assert_eq!(pte & 0x60, 0x60);
    // Paging off: linear is physical.
    let ctx = protected32(CR0_PE, 0, 0);
    assert_eq!(translate(&ctx, 0xdead_beef, Access::Read), Ok(0xdead_beef));
}

#[test]
fn test_real_mode_segment_base_and_limit() {
    let mem = ram();
    let fb = EmulationFallback::new(mem.clone(), all_features());
    let real = |bx: u64, edi: u64| {
        let seg = |base: u64| kvm_segment {
            base,
            limit: 0xffff,
            selector: (base >> 4) as u16,
            type_: 0x3,
            present: 1,
            s: 1,
            ..Default::default()
        };
        let mut code = seg(0);
        code.type_ = 0xb;
        MockCpu {
            regs: RefCell::new(kvm_regs {
                rip: 0x7c00,
                rflags: 0x2,
                rbx: bx,
                rdi: edi,
                ..Default::default()
            }),
            sregs: kvm_sregs {
                cs: code,
                ds: seg(0x1000),
                es: seg(0),
                ss: seg(0),
                fs: seg(0),
                gs: seg(0),
                ..Default::default()
            },
            tsc: None,
            tsc_aux: None,
            injected: RefCell::new(Vec::new()),
        }
    };
    let ctx_for = |cpu: &MockCpu, bytes: &[u8]| {
        let mut d = iced_x86::Decoder::with_ip(16, bytes, 0x7c00, iced_x86::DecoderOptions::NONE);
        Ctx {
            mem: &mem,
            regs: *cpu.regs.borrow(),
            sregs: cpu.sregs,
            instr: d.decode(),
            cpl: 0,
            bitness: 16,
            phys_bits: 36,
        }
    };
    let cpu = real(0xfff0, 0);
    let clflush_bx = [0x0f, 0xae, 0x3f];
    assert_eq!(
        linear_address(&ctx_for(&cpu, &clflush_bx), 0, 1),
        Ok(0x10ff0)
    );
    assert_eq!(run(&fb, &cpu, &clflush_bx), FallbackOutcome::Completed);
    assert_eq!(cpu.regs.borrow().rip, 0x7c03);
    // clflush [edi] (address-size prefix) past the 64 KiB limit: #GP(0).
    let cpu = real(0, 0x1_0000);
    assert_eq!(
        run(&fb, &cpu, &[0x67, 0x0f, 0xae, 0x3f]),
        FallbackOutcome::Injected(Exception::GeneralProtection(0))
    );
}

#[test]
fn test_rdtscp_reads_the_guest_tsc_and_aux() {
    let mem = ram();
    let fb = EmulationFallback::new(mem.clone(), all_features());
    let cpu = long_mode(&mem);
    cpu.regs.borrow_mut().rcx = 0xffff_ffff_ffff_ffff;
    assert_eq!(run(&fb, &cpu, &RDTSCP), FallbackOutcome::Completed);
    let r = *cpu.regs.borrow();
    assert_eq!((r.rax, r.rdx, r.rcx), (0x9abc_def0, 0x1234_5678, 7));
    assert_eq!(r.rip, 0x1003);
    // CR4.TSD at CPL3: #GP(0); at CPL0 allowed.
    let mut cpu = long_mode(&mem);
    cpu.sregs.cr4 |= CR4_TSD;
    cpu.sregs.ss.dpl = 3;
    assert_eq!(
        run(&fb, &cpu, &RDTSCP),
        FallbackOutcome::Injected(Exception::GeneralProtection(0))
    );
    // No TSC_AUX from KVM: its reset value.
    let mut cpu = long_mode(&mem);
    cpu.tsc_aux = None;
    assert_eq!(run(&fb, &cpu, &RDTSCP), FallbackOutcome::Completed);
    assert_eq!(cpu.regs.borrow().rcx, 0);
    // No TSC at all: left to stop the VM.
    let mut cpu = long_mode(&mem);
    cpu.tsc = None;
    assert!(matches!(
        run(&fb, &cpu, &RDTSCP),
        FallbackOutcome::NotHandled(NotHandled::Kvm(_))
    ));
}

#[test]
fn test_clac_stac_toggle_ac_at_cpl0_only() {
    let mem = ram();
    let fb = EmulationFallback::new(mem.clone(), all_features());
    let cpu = long_mode(&mem);
    assert_eq!(run(&fb, &cpu, &STAC), FallbackOutcome::Completed);
    assert_ne!(cpu.regs.borrow().rflags & RFLAGS_AC, 0);
    cpu.regs.borrow_mut().rip = 0x1000;
    assert_eq!(run(&fb, &cpu, &CLAC), FallbackOutcome::Completed);
    assert_eq!(cpu.regs.borrow().rflags & RFLAGS_AC, 0);
    assert_eq!(cpu.regs.borrow().rip, 0x1003);
    let mut cpu = long_mode(&mem);
    cpu.sregs.ss.dpl = 3;
    assert_eq!(
        run(&fb, &cpu, &CLAC),
        FallbackOutcome::Injected(Exception::InvalidOpcode)
    );
}

#[test]
fn test_unlisted_advertised_and_undecodable_are_not_handled() {
    let mem = ram();
    let mut f = all_features();
    f.rdpru = true;
    let fb = EmulationFallback::new(mem.clone(), f);
    let cpu = long_mode(&mem);
    let popcnt = [0xf3, 0x48, 0x0f, 0xb8, 0xc3];
    assert_eq!(
        run(&fb, &cpu, &popcnt),
        FallbackOutcome::NotHandled(NotHandled::NotInList)
    );
    assert_eq!(
        run(&fb, &cpu, &RDPRU),
        FallbackOutcome::NotHandled(NotHandled::Advertised)
    );
    assert_eq!(
        fb.handle(&cpu, &[0x0f]),
        FallbackOutcome::NotHandled(NotHandled::Undecodable)
    );
    assert_eq!(*cpu.regs.borrow(), *long_mode(&mem).regs.borrow());
    assert!(cpu.injected.borrow().is_empty());
    assert!(
        fb.stats().is_empty(),
        "declined instructions are not counted"
    );
    let d = describe(&cpu, &RDPRU).unwrap();
    assert_eq!(
        (d.rip, d.text.as_deref(), d.bytes.len()),
        (0x1000, Some("rdpru"), 3)
    );
    let d = describe(&cpu, &popcnt).unwrap();
    assert_eq!(d.text.as_deref(), Some("popcnt rax,rbx"));
}

#[test]
fn test_guest_features_from_cpuid() {
    use kvm_bindings::{kvm_cpuid_entry2, CpuId};
    let e = |function, ebx, ecx, edx, eax| kvm_cpuid_entry2 {
        function,
        eax,
        ebx,
        ecx,
        edx,
        ..Default::default()
    };
    let c = CpuId::from_entries(&[
        e(1, 0, 1 << 13, 1 << 19, 0),
        e(7, (1 << 24) | (1 << 20), 0, 0, 0),
        e(0x8000_0001, 0, 0, 1 << 27, 0),
        e(0x8000_0008, 0, 0, 0, 0x3027),
    ])
    .unwrap();
    let f = GuestFeatures::from_cpuid(&c);
    assert!(f.cx16 && f.clflush && f.clwb && f.smap && f.rdtscp);
    assert!(!f.clflushopt && !f.invpcid && !f.rdpru);
    assert_eq!(f.phys_bits, 0x27);
    let empty = GuestFeatures::from_cpuid(&CpuId::new(0).unwrap());
    assert_eq!(empty.phys_bits, 36);
    assert!(!empty.cx16);
}

#[test]
fn test_debugger_translate_walks_without_marking_or_checking() {
    use super::address::debugger_translate;
    // PAE: PDPT at 0x3000, PD at 0x4000 with a read-only supervisor 2 MiB
    // page whose accessed bit is clear.
    let ctx = protected32(CR0_PE | CR0_PG | CR0_WP, 0x3000, CR4_PAE);
    let mem = ctx.mem;
    mem.write_obj(0x4001u64, GuestAddress(0x3000 + 8)).unwrap();
    mem.write_obj(0x20_0081u64, GuestAddress(0x4000)).unwrap();
    assert_eq!(
        debugger_translate(mem, &ctx.sregs, 36, 0x4000_1234),
        Ok(0x20_1234)
    );
    let pde: u64 = mem.read_obj(GuestAddress(0x4000)).unwrap();
    assert_eq!(pde & 0x20, 0, "the debugger's walk set the accessed bit");
    assert!(matches!(
        debugger_translate(mem, &ctx.sregs, 36, 0x1234),
        Err(Exception::PageFault { error: 0, .. })
    ));
    // Paging off: linear is physical.
    let off = protected32(CR0_PE, 0, 0);
    assert_eq!(
        debugger_translate(off.mem, &off.sregs, 36, 0xdead_beef),
        Ok(0xdead_beef)
    );
}
