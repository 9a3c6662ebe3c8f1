//! The emulation fallback (`vmm_cpu::fallback`) on a mock vCPU: arbitrary
//! instruction bytes (often starting with one of the listed opcodes, so the
//! handlers are reached), any code size and CPL, paging on or off with the
//! guest's page tables made of input bytes anywhere in a small RAM, any
//! register and segment values, any CPUID feature set, and a KVM that may
//! refuse the TSC MSRs.
//!
//! Checked: no panic; an injected exception or a declined instruction
//! leaves every register as it was; a completion moves RIP to exactly the
//! end of the decoded instruction (wrapped to the code size) and clears RF;
//! at most one exception per call; the per-instruction counters add up to
//! the handled calls.
#![no_main]

use std::cell::RefCell;

use arbitrary::Unstructured;
use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_cpu::fallback::{
    EmulationFallback, Exception, FallbackOutcome, GuestFeatures, VcpuAccess,
};

/// Guest RAM: 1 MiB, so page tables, operands and their misses all occur.
const RAM: u64 = 0x10_0000;

/// Listed opcodes the bytes may start with.
const PREFIXES: [&[u8]; 12] = [
    &[0x66, 0x0f, 0xae],       // clwb / clflushopt m8
    &[0x0f, 0xae],             // clflush m8
    &[0x0f, 0x01, 0xf9],       // rdtscp
    &[0x48, 0x0f, 0xc7],       // cmpxchg16b m128
    &[0xf0, 0x48, 0x0f, 0xc7], // lock cmpxchg16b
    &[0x0f, 0x01, 0xca],       // clac
    &[0x0f, 0x01, 0xcb],       // stac
    &[0x0f, 0x01, 0xfd],       // rdpru
    &[0x66, 0x0f, 0x38, 0x82], // invpcid
    &[0xf0, 0x0f, 0x01, 0xca], // lock clac
    &[0x67, 0x0f, 0xae],       // address-size override clflush
    &[],
];

struct Cpu {
    regs: RefCell<kvm_regs>,
    sregs: kvm_sregs,
    tsc: Option<u64>,
    aux: Option<u64>,
    injected: RefCell<Vec<Exception>>,
}

impl VcpuAccess for Cpu {
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
            .map(|i| if *i == 0x10 { self.tsc } else { self.aux })
            .collect())
    }
    fn inject(&self, e: Exception) -> Result<(), kvm_ioctls::Error> {
        self.injected.borrow_mut().push(e);
        Ok(())
    }
}

fn segment(u: &mut Unstructured<'_>) -> arbitrary::Result<kvm_segment> {
    Ok(kvm_segment {
        base: u64::from(u.arbitrary::<u32>()?),
        limit: u.arbitrary()?,
        selector: u.arbitrary()?,
        type_: u.int_in_range(0..=15)?,
        present: u.int_in_range(0..=1)?,
        dpl: u.int_in_range(0..=3)?,
        db: u.int_in_range(0..=1)?,
        s: 1,
        l: u.int_in_range(0..=1)?,
        g: u.int_in_range(0..=1)?,
        unusable: u.int_in_range(0..=1)?,
        ..Default::default()
    })
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)])
        .expect("1 MiB of RAM");
    // Up to 16 chunks of input bytes anywhere in RAM: page tables, operands.
    for _ in 0..u.int_in_range(0..=16)? {
        let at = u.int_in_range(0..=RAM - 1)? & !7;
        let len = u.int_in_range(0..=64usize)?;
        let bytes = u.bytes(len)?;
        let _ = mem.write_slice(bytes, GuestAddress(at));
    }
    let features = GuestFeatures {
        clflush: u.arbitrary()?,
        cx16: u.arbitrary()?,
        smap: u.arbitrary()?,
        clflushopt: u.arbitrary()?,
        clwb: u.arbitrary()?,
        invpcid: u.arbitrary()?,
        rdtscp: u.arbitrary()?,
        rdpru: u.arbitrary()?,
        phys_bits: u.int_in_range(32..=52)?,
    };
    let mode = u.int_in_range(0..=3u8)?; // real, 32-bit paged, PAE, long
    let mut sregs = kvm_sregs {
        cs: segment(u)?,
        ds: segment(u)?,
        es: segment(u)?,
        ss: segment(u)?,
        fs: segment(u)?,
        gs: segment(u)?,
        cr3: u.int_in_range(0..=RAM + 0x1000)? & !0xfff,
        cr4: u64::from(u.arbitrary::<u32>()?) & 0x30_1034, // TSD PSE PAE LA57 SMAP
        ..Default::default()
    };
    let pe_pg_wp = 1 | (1 << 31) | (u64::from(u.arbitrary::<bool>()?) << 16);
    match mode {
        0 => sregs.cr0 = 0,
        1 => sregs.cr0 = pe_pg_wp,
        2 => {
            sregs.cr0 = pe_pg_wp;
            sregs.cr4 |= 1 << 5;
        }
        _ => {
            sregs.cr0 = pe_pg_wp;
            sregs.cr4 |= 1 << 5;
            sregs.efer = (1 << 8) | (1 << 10) | (u64::from(u.arbitrary::<bool>()?) << 11);
        }
    }
    let mut regs = kvm_regs::default();
    for r in [
        &mut regs.rax,
        &mut regs.rbx,
        &mut regs.rcx,
        &mut regs.rdx,
        &mut regs.rsi,
        &mut regs.rdi,
        &mut regs.rsp,
        &mut regs.rbp,
        &mut regs.r8,
        &mut regs.r13,
    ] {
        *r = if u.arbitrary()? {
            u.int_in_range(0..=RAM + 0x100)?
        } else {
            u.arbitrary()?
        };
    }
    regs.rip = u.arbitrary()?;
    regs.rflags = (u.arbitrary::<u64>()? & 0x25_0fd5) | 2;
    let prefix = PREFIXES[u.int_in_range(0..=PREFIXES.len() - 1)?];
    let mut insn = prefix.to_vec();
    insn.extend_from_slice(u.bytes(15 - prefix.len())?);
    let cpu = Cpu {
        regs: RefCell::new(regs),
        sregs,
        tsc: u.arbitrary()?,
        aux: u.arbitrary()?,
        injected: RefCell::new(Vec::new()),
    };
    let fb = EmulationFallback::new(mem, features);
    let mut handled = 0;
    for _ in 0..u.int_in_range(1..=3)? {
        let before = *cpu.regs.borrow();
        let injected_before = cpu.injected.borrow().len();
        let outcome = fb.handle(&cpu, &insn);
        let after = *cpu.regs.borrow();
        let injected = cpu.injected.borrow().len() - injected_before;
        match &outcome {
            FallbackOutcome::Completed => {
                handled += 1;
                assert_eq!(injected, 0);
                assert_eq!(after.rflags & (1 << 16), 0, "RF cleared");
                let d = vmm_cpu::fallback::describe(&Cpu {
                    regs: RefCell::new(before),
                    sregs: cpu.sregs,
                    tsc: None,
                    aux: None,
                    injected: RefCell::new(Vec::new()),
                }, &insn)
                .expect("the mock never fails");
                let len = d.bytes.len() as u64;
                let bits = vmm_cpu::fallback::code_bitness(&before, &cpu.sregs);
                let mask = match bits {
                    64 => u64::MAX,
                    32 => 0xffff_ffff,
                    _ => 0xffff,
                };
                assert_eq!(after.rip, before.rip.wrapping_add(len) & mask, "{outcome:?}");
            }
            FallbackOutcome::Injected(_) => {
                handled += 1;
                assert_eq!(injected, 1);
                assert_eq!(after, before, "registers untouched by a fault");
            }
            FallbackOutcome::NotHandled(_) => {
                assert_eq!(injected, 0);
                assert_eq!(after, before, "registers untouched when declined");
            }
        }
    }
    let counted: u64 = fb.stats().iter().map(|s| s.total()).sum();
    assert_eq!(counted, handled);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
