//! The register state a vCPU starts in: 16-bit real mode, 32-bit flat
//! protected mode or 64-bit long mode, plus whatever registers the boot
//! protocol or the user asked for.
//!
//! The state is computed by pure functions (`real_mode_sregs` and friends) so
//! it can be unit-tested without KVM; [`setup_boot_state`] writes the GDT and
//! page tables into guest memory and loads the result into a vCPU.

use kvm_bindings::{kvm_regs, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_memory::boot_plan::{GDT_LEN, PAGE_TABLES_LEN};

use crate::gdt::{boot_gdt, kvm_segment_from, BOOT_CS_INDEX, BOOT_DS_INDEX, TSS_INDEX};
use crate::paging::write_identity_map;
use crate::start_state::{BootTables, CpuMode, Entry, Reg, StartState};

/// CR0.PE: protection enable.
pub const X86_CR0_PE: u64 = 1 << 0;
/// CR0.ET: extension type, hard-wired to 1 on every CPU since the 486.
pub const X86_CR0_ET: u64 = 1 << 4;
/// CR0.PG: paging.
pub const X86_CR0_PG: u64 = 1 << 31;
/// CR4.PAE: physical address extension, required for long mode.
pub const X86_CR4_PAE: u64 = 1 << 5;
/// EFER.LME: long mode enable.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;
/// RFLAGS bit 1 is reserved and always reads as 1.
pub const RFLAGS_RESERVED: u64 = 0x2;

/// Errors preparing a vCPU's initial state.
#[derive(Debug, thiserror::Error)]
pub enum BootStateError {
    /// A linear real-mode entry point beyond what CS=0:IP can reach.
    #[error("entry point {0:#x} cannot be reached in real mode as CS=0:IP (IP is 16 bits); give it as a segment:offset entry (Entry::Segmented)")]
    RealModeEntry(u64),
    /// The image overlaps memory the vCPU set-up needs for the GDT or page
    /// tables.
    #[error("image at [{start:#x}, {end:#x}) overlaps the boot GDT or page tables at [{tables_start:#x}, {tables_end:#x}) needed for {mode:?} mode; the image must lie outside them (for example at 1 MiB, 0x100000)")]
    OverlapsBootTables {
        /// Image start.
        start: u64,
        /// Image end.
        end: u64,
        /// First byte of the boot structures.
        tables_start: u64,
        /// End of the boot structures.
        tables_end: u64,
        /// The mode that needs them.
        mode: CpuMode,
    },
    /// Guest RAM is too small to hold the boot structures.
    #[error("writing the boot GDT/page tables to guest memory failed: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
    /// KVM_GET_SREGS failed.
    #[error("KVM_GET_SREGS failed: {0}")]
    GetSregs(kvm_ioctls::Error),
    /// KVM_SET_SREGS failed.
    #[error("KVM_SET_SREGS failed: {0}")]
    SetSregs(kvm_ioctls::Error),
    /// KVM_SET_REGS failed.
    #[error("KVM_SET_REGS failed: {0}")]
    SetRegs(kvm_ioctls::Error),
}

/// Real mode: CS selector/base from the entry, everything else as after reset
/// (KVM's defaults for the other segments).
pub fn real_mode_sregs(
    mut sregs: kvm_sregs,
    entry: Entry,
) -> Result<(kvm_sregs, u64), BootStateError> {
    let (segment, ip) = match entry {
        Entry::Segmented { segment, offset } => (segment, u64::from(offset)),
        Entry::Linear(a) if a.0 <= 0xffff => (0, a.0),
        Entry::Linear(a) => return Err(BootStateError::RealModeEntry(a.0)),
    };
    sregs.cs.selector = segment;
    sregs.cs.base = u64::from(segment) << 4;
    Ok((sregs, ip))
}

/// Protected or long mode: flat segments from the boot GDT at `gdt_base`,
/// the control registers the mode needs. `cr3` is the identity map's root
/// (long mode).
pub fn flat_mode_sregs(mut sregs: kvm_sregs, long: bool, gdt_base: u64, cr3: u64) -> kvm_sregs {
    let gdt = boot_gdt(long);
    let code = kvm_segment_from(gdt[usize::from(BOOT_CS_INDEX)], BOOT_CS_INDEX);
    let data = kvm_segment_from(gdt[usize::from(BOOT_DS_INDEX)], BOOT_DS_INDEX);
    let tss = kvm_segment_from(gdt[usize::from(TSS_INDEX)], TSS_INDEX);
    sregs.gdt.base = gdt_base;
    sregs.gdt.limit = (std::mem::size_of_val(&gdt) - 1) as u16;
    // An empty IDT: any exception before the guest loads its own triple-faults,
    // which is the documented, visible outcome (KVM_EXIT_SHUTDOWN).
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    // Every boot ABI we serve wants PE set and the other writable bits
    // clear (PVH says so explicitly); KVM's reset value has CD|NW set.
    sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
    sregs.cr4 = 0;
    if long {
        sregs.cr3 = cr3;
        sregs.cr4 |= X86_CR4_PAE;
        sregs.cr0 |= X86_CR0_PG;
        sregs.efer |= EFER_LME | EFER_LMA;
    }
    sregs
}

/// General-purpose registers at entry: RIP, RFLAGS, then `regs` in order.
pub fn entry_regs(rip: u64, regs: &[(Reg, u64)]) -> kvm_regs {
    let mut r = kvm_regs {
        rip,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    };
    for &(reg, value) in regs {
        set_reg(&mut r, reg, value);
    }
    r
}

/// Sets one register in a `kvm_regs`.
pub fn set_reg(r: &mut kvm_regs, reg: Reg, value: u64) {
    let slot = match reg {
        Reg::Rax => &mut r.rax,
        Reg::Rbx => &mut r.rbx,
        Reg::Rcx => &mut r.rcx,
        Reg::Rdx => &mut r.rdx,
        Reg::Rsi => &mut r.rsi,
        Reg::Rdi => &mut r.rdi,
        Reg::Rsp => &mut r.rsp,
        Reg::Rbp => &mut r.rbp,
        Reg::R8 => &mut r.r8,
        Reg::R9 => &mut r.r9,
        Reg::R10 => &mut r.r10,
        Reg::R11 => &mut r.r11,
        Reg::R12 => &mut r.r12,
        Reg::R13 => &mut r.r13,
        Reg::R14 => &mut r.r14,
        Reg::R15 => &mut r.r15,
        Reg::Rip => &mut r.rip,
        // Bit 1 of RFLAGS cannot be cleared; KVM would reject the state.
        Reg::Rflags => {
            r.rflags = value | RFLAGS_RESERVED;
            return;
        }
    };
    *slot = value;
}

/// The guest-physical ranges, `[start, end)`, the boot structures of `mode`
/// occupy when placed at `tables`.
pub fn boot_table_ranges(mode: CpuMode, tables: BootTables) -> Vec<(u64, u64)> {
    let gdt = (tables.gdt.0, tables.gdt.0.saturating_add(GDT_LEN));
    let pages = tables.page_tables.0;
    match mode {
        CpuMode::Real => vec![],
        CpuMode::Protected => vec![gdt],
        CpuMode::Long => vec![gdt, (pages, pages.saturating_add(PAGE_TABLES_LEN))],
    }
}

/// Checks that an image occupying `occupied` (`[start, end)` ranges, one per
/// loaded segment) leaves room for the boot structures `mode` needs at
/// `tables`.
pub fn check_boot_tables_free(
    mode: CpuMode,
    tables: BootTables,
    occupied: &[(u64, u64)],
) -> Result<(), BootStateError> {
    for (tables_start, tables_end) in boot_table_ranges(mode, tables) {
        if let Some(&(start, end)) = occupied
            .iter()
            .find(|&&(s, e)| s < tables_end && e > tables_start)
        {
            return Err(BootStateError::OverlapsBootTables {
                start,
                end,
                tables_start,
                tables_end,
                mode,
            });
        }
    }
    Ok(())
}

/// Checks that the entry of `start` can be reached in its mode.
pub fn check_entry(start: &StartState) -> Result<(), BootStateError> {
    if start.mode == CpuMode::Real {
        real_mode_sregs(kvm_sregs::default(), start.entry)?;
    }
    Ok(())
}

/// Checks everything about `start` that can be known before touching KVM:
/// the entry is reachable in its mode, and an image occupying `occupied`
/// (`[start, end)` ranges: the image's segments, not the gaps between them)
/// leaves room for the boot structures the mode needs where `start.tables`
/// puts them. [`setup_boot_state`] repeats the entry check; it does not
/// know where the image is, so call this first.
pub fn validate_start(start: &StartState, occupied: &[(u64, u64)]) -> Result<(), BootStateError> {
    check_entry(start)?;
    check_boot_tables_free(start.mode, start.tables, occupied)
}

/// What [`setup_boot_state`] wrote and loaded, for a VMM that shows its
/// steps (`--explain`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootStateLoaded {
    /// The special registers given to KVM_SET_SREGS.
    pub sregs: kvm_sregs,
    /// The general-purpose registers given to KVM_SET_REGS.
    pub regs: kvm_regs,
    /// The boot GDT written to guest memory: `(address, bytes)`
    /// (protected and long mode).
    pub gdt: Option<(GuestAddress, u64)>,
    /// The identity-mapping page tables: `[start, end)` of the guest-physical
    /// range they occupy (long mode).
    pub page_tables: Option<(GuestAddress, GuestAddress)>,
}

/// Writes the boot structures the mode needs (GDT, and page tables for long
/// mode) into `mem` and loads the entry state of `start` into `vcpu`. The
/// CPUID must already be set (KVM refuses EFER.LME when the guest's CPUID
/// lacks long mode). Check the image's placement with [`validate_start`]
/// first: the boot structures overwrite whatever is at their addresses.
/// Returns what it wrote and loaded.
pub fn setup_boot_state<M: GuestMemoryBackend>(
    vcpu: &VcpuFd,
    mem: &M,
    start: &StartState,
) -> Result<BootStateLoaded, BootStateError> {
    check_entry(start)?;
    let base = vcpu.get_sregs().map_err(BootStateError::GetSregs)?;
    let mut gdt_written = None;
    let mut page_tables = None;
    let (sregs, rip) = match start.mode {
        CpuMode::Real => real_mode_sregs(base, start.entry)?,
        CpuMode::Protected | CpuMode::Long => {
            let long = start.mode == CpuMode::Long;
            let gdt = boot_gdt(long);
            let at = start.tables.gdt;
            let bytes: Vec<u8> = gdt.iter().flat_map(|d| d.to_le_bytes()).collect();
            mem.write_slice(&bytes, at)?;
            gdt_written = Some((at, bytes.len() as u64));
            let cr3 = if long {
                let pml4 = start.tables.page_tables;
                page_tables = Some((pml4, GuestAddress(pml4.0 + PAGE_TABLES_LEN)));
                write_identity_map(mem, pml4)?
            } else {
                // Paging is off; CR3 is not loaded from this.
                0
            };
            (
                flat_mode_sregs(base, long, at.0, cr3),
                start.entry.linear().0,
            )
        }
    };
    vcpu.set_sregs(&sregs).map_err(BootStateError::SetSregs)?;
    let regs = entry_regs(rip, &start.regs);
    vcpu.set_regs(&regs).map_err(BootStateError::SetRegs)?;
    Ok(BootStateLoaded {
        sregs,
        regs,
        gdt: gdt_written,
        page_tables,
    })
}

/// The value of `reg` in `r`.
pub fn get_reg(r: &kvm_regs, reg: Reg) -> u64 {
    match reg {
        Reg::Rax => r.rax,
        Reg::Rbx => r.rbx,
        Reg::Rcx => r.rcx,
        Reg::Rdx => r.rdx,
        Reg::Rsi => r.rsi,
        Reg::Rdi => r.rdi,
        Reg::Rsp => r.rsp,
        Reg::Rbp => r.rbp,
        Reg::R8 => r.r8,
        Reg::R9 => r.r9,
        Reg::R10 => r.r10,
        Reg::R11 => r.r11,
        Reg::R12 => r.r12,
        Reg::R13 => r.r13,
        Reg::R14 => r.r14,
        Reg::R15 => r.r15,
        Reg::Rip => r.rip,
        Reg::Rflags => r.rflags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_real_mode_segmented_entry() {
        let (s, ip) = real_mode_sregs(
            kvm_sregs::default(),
            Entry::Segmented {
                segment: 0x1000,
                offset: 0x20,
            },
        )
        .unwrap();
        assert_eq!((s.cs.selector, s.cs.base, ip), (0x1000, 0x10000, 0x20));
    }

    #[test]
    fn test_real_mode_linear_entry_limits() {
        let (s, ip) =
            real_mode_sregs(kvm_sregs::default(), Entry::Linear(GuestAddress(0x1000))).unwrap();
        assert_eq!((s.cs.selector, s.cs.base, ip), (0, 0, 0x1000));
        let e = real_mode_sregs(kvm_sregs::default(), Entry::Linear(GuestAddress(0x10000)))
            .unwrap_err();
        assert!(e.to_string().contains("0x10000"));
    }

    #[test]
    fn test_long_mode_sregs() {
        let s = flat_mode_sregs(kvm_sregs::default(), true, 0x1_2340, 0x9000);
        assert_eq!(s.cr3, 0x9000);
        assert_eq!((s.gdt.base, s.gdt.limit), (0x1_2340, 39));
        assert_eq!(s.cr0 & (X86_CR0_PE | X86_CR0_PG), X86_CR0_PE | X86_CR0_PG);
        assert_ne!(s.cr4 & X86_CR4_PAE, 0);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!((s.cs.selector, s.cs.l, s.ds.selector), (0x10, 1, 0x18));
    }

    #[test]
    fn test_protected_mode_sregs() {
        let s = flat_mode_sregs(kvm_sregs::default(), false, 0x500, 0);
        assert_eq!(s.cr0 & (X86_CR0_PE | X86_CR0_PG), X86_CR0_PE);
        assert_eq!(s.efer & EFER_LME, 0);
        let reset = kvm_sregs {
            cr0: 0x6000_0010,
            ..Default::default()
        };
        assert_eq!(
            flat_mode_sregs(reset, false, 0x500, 0).cr0,
            X86_CR0_PE | X86_CR0_ET,
            "CD/NW cleared"
        );
        assert_eq!((s.cs.db, s.cs.l, s.cs.limit), (1, 0, 0xffff_ffff));
    }

    #[test]
    fn test_entry_regs_apply_in_order_and_keep_rflags_bit1() {
        let r = entry_regs(
            0x1000,
            &[
                (Reg::Rax, 1),
                (Reg::Rax, 2),
                (Reg::Rflags, 0),
                (Reg::R15, 7),
            ],
        );
        assert_eq!((r.rip, r.rax, r.rflags, r.r15), (0x1000, 2, 2, 7));
        assert_eq!(get_reg(&r, Reg::Rax), 2);
        assert_eq!(get_reg(&r, Reg::R15), 7);
        assert_eq!(get_reg(&r, Reg::Rip), 0x1000);
    }

    #[test]
    fn test_boot_table_overlap_detected() {
        let t = BootTables::default();
        // An image at [0x1000, 0xa000) covers the page tables at 0x9000.
        let e = check_boot_tables_free(CpuMode::Long, t, &[(0x1000, 0xa000)]).unwrap_err();
        assert!(e.to_string().contains("0x9000"), "{e}");
        assert!(check_boot_tables_free(CpuMode::Long, t, &[(0x1000, 0x9000)]).is_ok());
        // The GDT at 0x500.
        assert!(check_boot_tables_free(CpuMode::Long, t, &[(0x520, 0x530)]).is_err());
        assert!(
            check_boot_tables_free(CpuMode::Protected, t, &[(0x1000, 0xa000)]).is_ok(),
            "protected mode needs no page tables"
        );
        assert!(check_boot_tables_free(CpuMode::Real, t, &[(0x1000, 0xa000)]).is_ok());
        // Tables placed elsewhere are checked where they are.
        let moved = BootTables {
            gdt: GuestAddress(0x3_0000),
            page_tables: GuestAddress(0x4_0000),
        };
        assert!(check_boot_tables_free(CpuMode::Long, moved, &[(0x500, 0x3_0000)]).is_ok());
        let e = check_boot_tables_free(CpuMode::Long, moved, &[(0x4_5fff, 0x4_6000)]).unwrap_err();
        assert!(e.to_string().contains("0x46000"), "{e}");
    }

    #[test]
    fn test_sparse_image_may_straddle_the_boot_tables() {
        // A trampoline page below the page tables and a kernel at 1 MiB:
        // their span covers 0x9000-0xf000, the segments do not.
        let start = StartState::new(CpuMode::Long, Entry::Linear(GuestAddress(0x10_0000)));
        let segments = [(0x8000, 0x9000), (0x10_0000, 0x10_8000)];
        assert!(validate_start(&start, &segments).is_ok());
        let touching = [(0x8000, 0x9001), (0x10_0000, 0x10_8000)];
        let e = validate_start(&start, &touching).unwrap_err();
        assert!(
            e.to_string().contains("0x8000") && e.to_string().contains("0x9001"),
            "{e}"
        );
        // The whole span counts when that is what is occupied.
        assert!(validate_start(&start, &[(0x8000, 0x10_8000)]).is_err());
    }

    #[test]
    fn test_validate_start_checks_the_real_mode_entry() {
        let far = StartState::new(CpuMode::Real, Entry::Linear(GuestAddress(0x12345)));
        let e = validate_start(&far, &[]).unwrap_err();
        assert!(matches!(e, BootStateError::RealModeEntry(0x12345)), "{e}");
        let seg = StartState::new(
            CpuMode::Real,
            Entry::Segmented {
                segment: 0x1234,
                offset: 5,
            },
        );
        assert!(validate_start(&seg, &[]).is_ok());
    }
}
