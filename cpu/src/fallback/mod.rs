//! Finishing the instructions the host's KVM instruction emulator gives up
//! on.
//!
//! On hosts whose KVM runs guest kernel code through its instruction
//! emulator (nested or paravirtual KVM such as `kvm_pvm`, see the project
//! notes), some instructions that hardware executes or rejects cleanly end in
//! KVM_EXIT_INTERNAL_ERROR (emulation failure) with the instruction bytes.
//! [`EmulationFallback::handle`] decodes those bytes (iced-x86) and, for the
//! short list below, does what the CPU would have done, then lets the vCPU
//! resume:
//!
//! | instruction | what is done | its CPUID bit |
//! | --- | --- | --- |
//! | `clwb`, `clflushopt`, `clflush` m8 | the operand is checked like a byte load (segment, canonical, page walk: #GP/#SS/#PF), then RIP advances: write-back and flush have no architectural effect on guest RAM | 7.0 EBX 24, 7.0 EBX 23, 1 EDX 19 |
//! | `rdtscp` | EDX:EAX = the guest's TSC, ECX = IA32_TSC_AUX (KVM_GET_MSRS); #GP(0) with CR4.TSD at CPL > 0 | 0x80000001 EDX 27 (advertised by the VMM while the fallback is on: [`crate::cpuid::advertise_rdtscp`]) |
//! | `cmpxchg16b` m128 | compared and exchanged atomically on the host mapping of guest RAM (`lock cmpxchg16b`), ZF as hardware sets it; #GP(0) when misaligned or outside guest RAM | 1 ECX 13 |
//! | `clac`, `stac` | EFLAGS.AC cleared / set; #UD at CPL > 0 | 7.0 EBX 20 |
//! | `rdpru`, `invpcid` | #UD when the guest's CPUID does not advertise them (otherwise not handled) | 0x80000008 EBX 4, 7.0 EBX 10 |
//!
//! Every listed instruction raises #UD when its CPUID bit is clear in the
//! table the VMM gave the vCPU ([`GuestFeatures::from_cpuid`]), or when it
//! carries a LOCK prefix (all but `cmpxchg16b`), as hardware does.
//! Exceptions are injected with KVM_SET_VCPU_EVENTS, RIP left on the
//! faulting instruction (CR2 set first for #PF). Anything else is
//! [`FallbackOutcome::NotHandled`] and stops the VM as before, with the
//! decoded instruction named ([`describe`]).
//!
//! Memory operands ([`address`]) go through the guest's own segmentation
//! and paging (4- and 5-level, PAE and 32-bit tables; 4 KiB, 2 MiB, 4 MiB and
//! 1 GiB pages), setting accessed and dirty bits as the MMU does; a
//! guest-physical address outside guest RAM is never dereferenced.
//!
//! Not modelled: the single-step trap (EFLAGS.TF) after a completed
//! instruction, and dirty-page logging of the fallback's own writes to guest
//! RAM (`cmpxchg16b`, accessed/dirty bits), which bypass KVM's MMU as a
//! device's writes do.
//!
//! The module is called from [`crate::Vcpu::run`] at the emulation-failure
//! exit and counts what it did per instruction ([`FallbackStat`]), logging
//! each instruction the first time it is handled.

pub mod address;
mod cacheline;
mod cmpxchg16b;
mod host_atomic;
mod rdtscp;
mod smap;
#[cfg(test)]
mod tests;
mod vcpu_access;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, Mnemonic};
use kvm_bindings::{kvm_regs, kvm_sregs, CpuId};
use vm_memory::GuestMemoryMmap;

pub use vcpu_access::VcpuAccess;

/// RFLAGS bits the fallback reads or writes.
pub(crate) const RFLAGS_ZF: u64 = 1 << 6;
pub(crate) const RFLAGS_RF: u64 = 1 << 16;
pub(crate) const RFLAGS_VM: u64 = 1 << 17;
pub(crate) const RFLAGS_AC: u64 = 1 << 18;
/// Control-register and EFER bits.
pub(crate) const CR0_PE: u64 = 1 << 0;
pub(crate) const CR0_WP: u64 = 1 << 16;
pub(crate) const CR0_PG: u64 = 1 << 31;
pub(crate) const CR4_TSD: u64 = 1 << 2;
pub(crate) const CR4_PSE: u64 = 1 << 4;
pub(crate) const CR4_PAE: u64 = 1 << 5;
pub(crate) const CR4_LA57: u64 = 1 << 12;
pub(crate) const EFER_LMA: u64 = 1 << 10;

/// An exception the fallback delivers to the guest instead of completing
/// the instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exception {
    /// #UD (vector 6), no error code.
    InvalidOpcode,
    /// #GP (vector 13) with its error code.
    GeneralProtection(u32),
    /// #SS (vector 12) with its error code.
    StackFault(u32),
    /// #PF (vector 14): CR2 gets `address`.
    PageFault {
        /// The linear address that faulted.
        address: u64,
        /// The page-fault error code (P, W/R, U/S, RSVD bits).
        error: u32,
    },
}

impl Exception {
    /// The vector number.
    pub fn vector(self) -> u8 {
        match self {
            Exception::InvalidOpcode => 6,
            Exception::StackFault(_) => 12,
            Exception::GeneralProtection(_) => 13,
            Exception::PageFault { .. } => 14,
        }
    }

    /// The error code pushed, if the vector has one.
    pub fn error_code(self) -> Option<u32> {
        match self {
            Exception::InvalidOpcode => None,
            Exception::GeneralProtection(e) | Exception::StackFault(e) => Some(e),
            Exception::PageFault { error, .. } => Some(error),
        }
    }

    fn slot(self) -> usize {
        match self {
            Exception::InvalidOpcode => 1,
            Exception::GeneralProtection(_) => 2,
            Exception::StackFault(_) => 3,
            Exception::PageFault { .. } => 4,
        }
    }
}

/// Why an emulation failure was left to stop the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotHandled {
    /// The bytes do not decode to an instruction.
    Undecodable,
    /// The instruction is not in the fallback's list.
    NotInList,
    /// The guest's CPUID advertises the instruction, and the fallback only
    /// implements the #UD a CPU without it raises.
    Advertised,
    /// A KVM call the fallback needed failed.
    Kvm(String),
    /// The fallback is off (`--no-emulation-fallback`).
    Off,
}

impl std::fmt::Display for NotHandled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotHandled::Undecodable => write!(f, "the bytes do not decode"),
            NotHandled::NotInList => write!(f, "not in the emulation fallback's list"),
            NotHandled::Advertised => write!(
                f,
                "advertised in the guest's CPUID, and the emulation fallback only raises #UD for it"
            ),
            NotHandled::Kvm(e) => write!(f, "emulation fallback: {e}"),
            NotHandled::Off => write!(f, "the emulation fallback is off"),
        }
    }
}

/// What [`EmulationFallback::handle`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FallbackOutcome {
    /// The instruction was completed (registers, flags, memory, RIP).
    Completed,
    /// An exception was injected; RIP still points at the instruction.
    Injected(Exception),
    /// Nothing was changed; the VM should stop on the emulation failure.
    NotHandled(NotHandled),
}

/// The instructions the fallback knows, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listed {
    Clwb,
    Clflushopt,
    Clflush,
    Rdtscp,
    Cmpxchg16b,
    Clac,
    Stac,
    Rdpru,
    Invpcid,
}

const LISTED: [Listed; 9] = [
    Listed::Clwb,
    Listed::Clflushopt,
    Listed::Clflush,
    Listed::Rdtscp,
    Listed::Cmpxchg16b,
    Listed::Clac,
    Listed::Stac,
    Listed::Rdpru,
    Listed::Invpcid,
];

impl Listed {
    fn of(mnemonic: Mnemonic) -> Option<Listed> {
        Some(match mnemonic {
            Mnemonic::Clwb => Listed::Clwb,
            Mnemonic::Clflushopt => Listed::Clflushopt,
            Mnemonic::Clflush => Listed::Clflush,
            Mnemonic::Rdtscp => Listed::Rdtscp,
            Mnemonic::Cmpxchg16b => Listed::Cmpxchg16b,
            Mnemonic::Clac => Listed::Clac,
            Mnemonic::Stac => Listed::Stac,
            Mnemonic::Rdpru => Listed::Rdpru,
            Mnemonic::Invpcid => Listed::Invpcid,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Listed::Clwb => "clwb",
            Listed::Clflushopt => "clflushopt",
            Listed::Clflush => "clflush",
            Listed::Rdtscp => "rdtscp",
            Listed::Cmpxchg16b => "cmpxchg16b",
            Listed::Clac => "clac",
            Listed::Stac => "stac",
            Listed::Rdpru => "rdpru",
            Listed::Invpcid => "invpcid",
        }
    }

    fn advertised(self, f: &GuestFeatures) -> bool {
        match self {
            Listed::Clwb => f.clwb,
            Listed::Clflushopt => f.clflushopt,
            Listed::Clflush => f.clflush,
            Listed::Rdtscp => f.rdtscp,
            Listed::Cmpxchg16b => f.cx16,
            Listed::Clac | Listed::Stac => f.smap,
            Listed::Rdpru => f.rdpru,
            Listed::Invpcid => f.invpcid,
        }
    }
}

/// The CPUID feature bits of the listed instructions, as the VMM set them
/// on the vCPU.
///
/// On the development machines' nested KVM the guest reads leaf 7 from the
/// host whatever the VMM sets (see the project notes); the fallback follows
/// the table KVM was given, which is what KVM itself enforces (CR4.SMAP,
/// for one, is refused without the SMAP bit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestFeatures {
    /// CLFLUSH (leaf 1 EDX bit 19).
    pub clflush: bool,
    /// CMPXCHG16B (leaf 1 ECX bit 13).
    pub cx16: bool,
    /// SMAP: CLAC/STAC (leaf 7.0 EBX bit 20).
    pub smap: bool,
    /// CLFLUSHOPT (leaf 7.0 EBX bit 23).
    pub clflushopt: bool,
    /// CLWB (leaf 7.0 EBX bit 24).
    pub clwb: bool,
    /// INVPCID (leaf 7.0 EBX bit 10).
    pub invpcid: bool,
    /// RDTSCP (leaf 0x80000001 EDX bit 27).
    pub rdtscp: bool,
    /// RDPRU (leaf 0x80000008 EBX bit 4).
    pub rdpru: bool,
    /// MAXPHYADDR (leaf 0x80000008 EAX bits 7:0; 36 without the leaf):
    /// paging-entry bits from here to 51 are reserved.
    pub phys_bits: u32,
}

impl GuestFeatures {
    /// Reads the bits from a CPUID table (missing leaves read as zero).
    pub fn from_cpuid(cpuid: &CpuId) -> Self {
        let leaf = |function: u32, index: u32| {
            cpuid
                .as_slice()
                .iter()
                .find(|e| e.function == function && e.index == index)
                .map(|e| (e.eax, e.ebx, e.ecx, e.edx))
        };
        let regs = |function: u32| leaf(function, 0).unwrap_or_default();
        let bit = |reg: u32, n: u32| reg & (1 << n) != 0;
        let (_, _, ecx1, edx1) = regs(1);
        let (_, ebx7, _, _) = regs(7);
        let (_, _, _, edx81) = regs(0x8000_0001);
        let phys_bits = leaf(0x8000_0008, 0).map_or(36, |(eax, ..)| eax & 0xff);
        let (_, ebx88, _, _) = regs(0x8000_0008);
        GuestFeatures {
            clflush: bit(edx1, 19),
            cx16: bit(ecx1, 13),
            smap: bit(ebx7, 20),
            clflushopt: bit(ebx7, 23),
            clwb: bit(ebx7, 24),
            invpcid: bit(ebx7, 10),
            rdtscp: bit(edx81, 27),
            rdpru: bit(ebx88, 4),
            phys_bits,
        }
    }
}

/// How many times one listed instruction was handled, by result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FallbackStat {
    /// The instruction's mnemonic (`cmpxchg16b`).
    pub mnemonic: &'static str,
    /// Completed and resumed.
    pub completed: u64,
    /// #UD injected.
    pub ud: u64,
    /// #GP injected.
    pub gp: u64,
    /// #SS injected.
    pub ss: u64,
    /// #PF injected.
    pub pf: u64,
}

impl FallbackStat {
    /// All handlings of this instruction.
    pub fn total(&self) -> u64 {
        self.completed + self.ud + self.gp + self.ss + self.pf
    }
}

/// Results per instruction: completed, #UD, #GP, #SS, #PF.
const RESULTS: usize = 5;

/// The emulation fallback of one VM, shared by its vCPUs: the guest's
/// memory and CPUID features, and the counters.
pub struct EmulationFallback {
    mem: GuestMemoryMmap,
    features: GuestFeatures,
    counts: [[AtomicU64; RESULTS]; LISTED.len()],
    logged: [AtomicBool; LISTED.len()],
}

impl std::fmt::Debug for EmulationFallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulationFallback")
            .field("features", &self.features)
            .finish()
    }
}

/// What a listed instruction's handler decided, before it is applied.
pub(crate) enum Action {
    /// Write these registers back (RIP already advanced).
    Complete(Box<kvm_regs>),
    /// Inject this exception.
    Raise(Exception),
    /// Leave the VM to stop.
    Leave(NotHandled),
}

/// The state a handler works on.
pub(crate) struct Ctx<'a> {
    pub mem: &'a GuestMemoryMmap,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub instr: Instruction,
    pub cpl: u8,
    pub bitness: u32,
    pub phys_bits: u32,
}

impl Ctx<'_> {
    /// The registers with RIP past the instruction (wrapped to the code
    /// size) and RF cleared, as after any completed instruction.
    pub fn regs_after(&self) -> kvm_regs {
        let mut r = self.regs;
        r.rip = match self.bitness {
            64 => self.instr.next_ip(),
            32 => u64::from(self.instr.next_ip32()),
            _ => u64::from(self.instr.next_ip16()),
        };
        r.rflags &= !RFLAGS_RF;
        r
    }
}

/// The code size a vCPU runs at: 64 in a 64-bit code segment of long mode,
/// 32 in a 32-bit protected-mode segment, 16 in real, virtual-8086 and
/// 16-bit protected mode.
pub fn code_bitness(regs: &kvm_regs, sregs: &kvm_sregs) -> u32 {
    if sregs.efer & EFER_LMA != 0 && sregs.cs.l != 0 {
        64
    } else if sregs.cr0 & CR0_PE != 0 && regs.rflags & RFLAGS_VM == 0 && sregs.cs.db != 0 {
        32
    } else {
        16
    }
}

/// The current privilege level: SS.DPL in protected mode (what KVM
/// reports), 3 in virtual-8086 mode, 0 in real mode.
pub fn cpl(regs: &kvm_regs, sregs: &kvm_sregs) -> u8 {
    if sregs.cr0 & CR0_PE == 0 {
        0
    } else if regs.rflags & RFLAGS_VM != 0 {
        3
    } else {
        sregs.ss.dpl & 3
    }
}

fn decode(bytes: &[u8], bitness: u32, rip: u64) -> Option<Instruction> {
    // A LOCK prefix where none is allowed is the #UD this module raises
    // itself, so such encodings must still decode.
    let mut decoder = Decoder::with_ip(bitness, bytes, rip, DecoderOptions::NO_INVALID_CHECK);
    let instr = decoder.decode();
    (!instr.is_invalid()).then_some(instr)
}

/// An emulation failure, decoded for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// Guest RIP of the instruction.
    pub rip: u64,
    /// The instruction in Intel syntax (`xrstor64 [rdi]`), or `None` when
    /// the bytes do not decode.
    pub text: Option<String>,
    /// The instruction's own bytes (all of KVM's when it does not decode).
    pub bytes: Vec<u8>,
}

/// Decodes the failed instruction at the vCPU's RIP, for the stop message.
pub fn describe<C: VcpuAccess + ?Sized>(cpu: &C, insn: &[u8]) -> Option<Described> {
    let regs = cpu.regs().ok()?;
    let sregs = cpu.sregs().ok()?;
    let bitness = code_bitness(&regs, &sregs);
    match decode(insn, bitness, regs.rip) {
        Some(instr) => {
            let mut text = String::new();
            IntelFormatter::new().format(&instr, &mut text);
            Some(Described {
                rip: regs.rip,
                text: Some(text),
                bytes: insn[..instr.len().min(insn.len())].to_vec(),
            })
        }
        None => Some(Described {
            rip: regs.rip,
            text: None,
            bytes: insn.to_vec(),
        }),
    }
}

impl EmulationFallback {
    /// A fallback over the guest's `mem`, deciding #UD from `features`.
    pub fn new(mem: GuestMemoryMmap, features: GuestFeatures) -> Self {
        EmulationFallback {
            mem,
            features,
            counts: Default::default(),
            logged: Default::default(),
        }
    }

    /// The CPUID features it decides on.
    pub fn features(&self) -> GuestFeatures {
        self.features
    }

    /// Handles one emulation failure of `cpu`, whose instruction bytes KVM
    /// reported as `insn`: completes the instruction or injects the
    /// exception hardware would raise, or changes nothing.
    pub fn handle<C: VcpuAccess + ?Sized>(&self, cpu: &C, insn: &[u8]) -> FallbackOutcome {
        match self.try_handle(cpu, insn) {
            Ok(outcome) => outcome,
            Err(e) => FallbackOutcome::NotHandled(NotHandled::Kvm(e.to_string())),
        }
    }

    fn try_handle<C: VcpuAccess + ?Sized>(
        &self,
        cpu: &C,
        insn: &[u8],
    ) -> Result<FallbackOutcome, kvm_ioctls::Error> {
        let regs = cpu.regs()?;
        let sregs = cpu.sregs()?;
        let bitness = code_bitness(&regs, &sregs);
        let Some(instr) = decode(insn, bitness, regs.rip) else {
            return Ok(FallbackOutcome::NotHandled(NotHandled::Undecodable));
        };
        let Some(listed) = Listed::of(instr.mnemonic()) else {
            return Ok(FallbackOutcome::NotHandled(NotHandled::NotInList));
        };
        let ctx = Ctx {
            mem: &self.mem,
            regs,
            sregs,
            instr,
            cpl: cpl(&regs, &sregs),
            bitness,
            phys_bits: self.features.phys_bits,
        };
        let bad_lock = instr.has_lock_prefix() && listed != Listed::Cmpxchg16b;
        let action = if bad_lock || !listed.advertised(&self.features) {
            Action::Raise(Exception::InvalidOpcode)
        } else {
            match listed {
                Listed::Clwb | Listed::Clflushopt | Listed::Clflush => cacheline::flush(&ctx),
                Listed::Rdtscp => rdtscp::rdtscp(&ctx, cpu)?,
                Listed::Cmpxchg16b => cmpxchg16b::cmpxchg16b(&ctx),
                Listed::Clac => smap::set_ac(&ctx, false),
                Listed::Stac => smap::set_ac(&ctx, true),
                // Only the #UD of a CPU without them is implemented.
                Listed::Rdpru | Listed::Invpcid => Action::Leave(NotHandled::Advertised),
            }
        };
        let outcome = match action {
            Action::Complete(regs) => {
                cpu.set_regs(&regs)?;
                FallbackOutcome::Completed
            }
            Action::Raise(e) => {
                cpu.inject(e)?;
                FallbackOutcome::Injected(e)
            }
            Action::Leave(why) => return Ok(FallbackOutcome::NotHandled(why)),
        };
        self.count(listed, &outcome, regs.rip);
        Ok(outcome)
    }

    fn count(&self, listed: Listed, outcome: &FallbackOutcome, rip: u64) {
        let i = LISTED.iter().position(|l| *l == listed).unwrap_or(0);
        let slot = match outcome {
            FallbackOutcome::Injected(e) => e.slot(),
            _ => 0,
        };
        self.counts[i][slot].fetch_add(1, Ordering::Relaxed);
        if !self.logged[i].swap(true, Ordering::Relaxed) {
            let what = match outcome {
                FallbackOutcome::Injected(e) => format!("injected {e:?}"),
                _ => "completed it".to_string(),
            };
            log::info!(
                "emulation fallback: KVM could not emulate {} at rip {rip:#x}; {what} (logged once per instruction)",
                listed.name()
            );
        }
    }

    /// Counts per instruction, for every listed instruction handled at
    /// least once, in list order.
    pub fn stats(&self) -> Vec<FallbackStat> {
        LISTED
            .iter()
            .zip(&self.counts)
            .map(|(l, c)| {
                let n = |i: usize| c[i].load(Ordering::Relaxed);
                FallbackStat {
                    mnemonic: l.name(),
                    completed: n(0),
                    ud: n(1),
                    gp: n(2),
                    ss: n(3),
                    pf: n(4),
                }
            })
            .filter(|s| s.total() > 0)
            .collect()
    }
}
