//! From a decoded memory operand to a guest-physical address, as the CPU
//! computes it: the effective address from the registers, the segment
//! (base, limit, usability; canonical form in 64-bit mode), then the
//! guest's page tables (Intel SDM Vol. 3A, chapter 4: 32-bit, PAE, 4- and
//! 5-level paging, with their large pages), with the accessed and dirty bits
//! set as the walk goes.
//!
//! Faults are returned as the [`Exception`] hardware raises: #GP(0) (#SS(0)
//! for stack-segment operands) for segment and canonical violations, #PF
//! with the linear address and its error code for the page walk.
//!
//! The same walk serves a debugger ([`debugger_translate`]): it reads the
//! guest's tables as the MMU would but checks no permissions and marks
//! nothing, so looking at memory never changes the guest.

use iced_x86::Register;
use kvm_bindings::{kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::host_atomic::fetch_or;
use super::{Ctx, Exception, CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, CR4_PSE, EFER_LMA, RFLAGS_AC};

/// How the operand is accessed (writes need a writable, and set dirty,
/// mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A load (also what cache-line flushes are checked as).
    Read,
    /// A store (or a locked read-modify-write).
    Write,
}

/// Paging-entry bits.
const PTE_P: u64 = 1 << 0;
const PTE_RW: u64 = 1 << 1;
const PTE_US: u64 = 1 << 2;
const PTE_A: u64 = 1 << 5;
const PTE_D: u64 = 1 << 6;
const PTE_PS: u64 = 1 << 7;
/// Physical-address bits of a 64-bit paging entry (51:12).
const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;
/// CR4.SMAP.
const CR4_SMAP: u64 = 1 << 21;
/// EFER.NXE: bit 63 of paging entries is execute-disable, not reserved.
const EFER_NXE: u64 = 1 << 11;

/// Page-fault error-code bits.
const PF_PRESENT: u32 = 1 << 0;
const PF_WRITE: u32 = 1 << 1;
const PF_USER: u32 = 1 << 2;
const PF_RSVD: u32 = 1 << 3;

fn gpr(ctx: &Ctx<'_>, reg: Register) -> Option<u64> {
    let r = &ctx.regs;
    let full = match reg.full_register() {
        Register::RAX => r.rax,
        Register::RCX => r.rcx,
        Register::RDX => r.rdx,
        Register::RBX => r.rbx,
        Register::RSP => r.rsp,
        Register::RBP => r.rbp,
        Register::RSI => r.rsi,
        Register::RDI => r.rdi,
        Register::R8 => r.r8,
        Register::R9 => r.r9,
        Register::R10 => r.r10,
        Register::R11 => r.r11,
        Register::R12 => r.r12,
        Register::R13 => r.r13,
        Register::R14 => r.r14,
        Register::R15 => r.r15,
        Register::RIP => r.rip,
        _ => return None,
    };
    Some(match reg.size() {
        8 => full,
        4 => full & 0xffff_ffff,
        2 => full & 0xffff,
        _ => return None,
    })
}

fn segment<'a>(ctx: &'a Ctx<'_>, reg: Register) -> Option<&'a kvm_segment> {
    let s = &ctx.sregs;
    Some(match reg {
        Register::ES => &s.es,
        Register::CS => &s.cs,
        Register::SS => &s.ss,
        Register::DS => &s.ds,
        Register::FS => &s.fs,
        Register::GS => &s.gs,
        _ => return None,
    })
}

/// The fault a segment or canonical violation on `seg` raises.
fn segment_fault(seg: Register) -> Exception {
    if seg == Register::SS {
        Exception::StackFault(0)
    } else {
        Exception::GeneralProtection(0)
    }
}

/// Whether `la` is canonical with `bits` implemented linear-address bits.
fn canonical(la: u64, bits: u32) -> bool {
    let shift = 64 - bits;
    (((la << shift) as i64) >> shift) as u64 == la
}

/// The linear address of memory operand `op`, `size` bytes wide, after the
/// segment checks.
pub(crate) fn linear_address(ctx: &Ctx<'_>, op: u32, size: u64) -> Result<u64, Exception> {
    let seg_reg = ctx.instr.memory_segment();
    // The offset alone: segment bases are added below, with the checks.
    let offset = ctx
        .instr
        .virtual_address(op, 0, |reg, _, _| {
            if segment(ctx, reg).is_some() {
                Some(0)
            } else {
                gpr(ctx, reg)
            }
        })
        .ok_or(Exception::GeneralProtection(0))?;
    let seg = segment(ctx, seg_reg).ok_or(Exception::GeneralProtection(0))?;
    if ctx.bitness == 64 {
        // Only FS and GS have bases in 64-bit mode, and no limits.
        let base = match seg_reg {
            Register::FS | Register::GS => seg.base,
            _ => 0,
        };
        let la = base.wrapping_add(offset);
        let bits = if ctx.sregs.cr4 & CR4_LA57 != 0 {
            57
        } else {
            48
        };
        let last = la.wrapping_add(size.saturating_sub(1));
        if !canonical(la, bits) || !canonical(last, bits) {
            return Err(segment_fault(seg_reg));
        }
        return Ok(la);
    }
    let protected = ctx.sregs.cr0 & super::CR0_PE != 0 && ctx.regs.rflags & super::RFLAGS_VM == 0;
    if protected && (seg.unusable != 0 || seg.present == 0) {
        return Err(segment_fault(seg_reg));
    }
    let limit = u64::from(seg.limit);
    let last = offset.saturating_add(size.saturating_sub(1));
    // Data segment, expand-down: valid offsets are (limit, 64K or 4G).
    let expand_down = seg.type_ & 0b1100 == 0b0100;
    let within = if expand_down {
        let upper = if seg.db != 0 { 0xffff_ffff } else { 0xffff };
        offset > limit && last <= upper
    } else {
        last <= limit
    };
    if !within {
        return Err(segment_fault(seg_reg));
    }
    Ok(seg.base.wrapping_add(offset) & 0xffff_ffff)
}

/// What a page walk reads: guest RAM, the control registers and EFER, the
/// guest's MAXPHYADDR, and the privilege level the access is made at.
struct Paging<'a> {
    mem: &'a GuestMemoryMmap,
    sregs: &'a kvm_sregs,
    phys_bits: u32,
    cpl: u8,
}

impl<'a> Paging<'a> {
    fn of(ctx: &'a Ctx<'_>) -> Self {
        Paging {
            mem: ctx.mem,
            sregs: &ctx.sregs,
            phys_bits: ctx.phys_bits,
            cpl: ctx.cpl,
        }
    }
}

/// What a walk found: the physical address and the entries to mark.
struct Walked {
    gpa: u64,
    /// (entry address, entry size 4 or 8, is the leaf).
    entries: Vec<(u64, usize, bool)>,
    writable: bool,
    user: bool,
}

fn pf(la: u64, error: u32, ctx: &Paging<'_>, access: Access) -> Exception {
    let mut error = error;
    if access == Access::Write {
        error |= PF_WRITE;
    }
    if ctx.cpl == 3 {
        error |= PF_USER;
    }
    Exception::PageFault { address: la, error }
}

/// Reads a paging entry; an entry outside guest RAM reads as all ones, as
/// unbacked memory does on a PC, so it is present with reserved bits set.
fn read_entry(ctx: &Paging<'_>, addr: u64, size: usize) -> u64 {
    if size == 8 {
        ctx.mem
            .read_obj::<u64>(GuestAddress(addr))
            .unwrap_or(u64::MAX)
    } else {
        ctx.mem
            .read_obj::<u32>(GuestAddress(addr))
            .map_or(u64::MAX, u64::from)
    }
}

/// The 64-bit-entry walks: 4- and 5-level paging (long mode) and PAE.
fn walk64(ctx: &Paging<'_>, la: u64, access: Access) -> Result<Walked, Exception> {
    let long = ctx.sregs.efer & EFER_LMA != 0;
    let top = match (long, ctx.sregs.cr4 & CR4_LA57 != 0) {
        (true, true) => 5,
        (true, false) => 4,
        (false, _) => 3,
    };
    let mut table = if long {
        ctx.sregs.cr3 & PTE_ADDR
    } else {
        ctx.sregs.cr3 & 0xffff_ffe0
    };
    let phys_bits = ctx.phys_bits.clamp(32, 52);
    let mut reserved = ((1u64 << 52) - 1) & !((1u64 << phys_bits) - 1);
    if ctx.sregs.efer & EFER_NXE == 0 {
        reserved |= 1 << 63;
    }
    let mut w = Walked {
        gpa: 0,
        entries: Vec::new(),
        writable: true,
        user: true,
    };
    for level in (1..=top).rev() {
        let shift = 12 + 9 * (level - 1);
        let index = if !long && level == 3 {
            (la >> 30) & 3
        } else {
            (la >> shift) & 0x1ff
        };
        let addr = table + index * 8;
        let e = read_entry(ctx, addr, 8);
        if e & PTE_P == 0 {
            return Err(pf(la, 0, ctx, access));
        }
        // Bits 51:MAXPHYADDR are reserved, and bit 63 without EFER.NXE;
        // entries outside RAM (all ones) hit them.
        if e & reserved != 0 {
            return Err(pf(la, PF_PRESENT | PF_RSVD, ctx, access));
        }
        let pae_pdpte = !long && level == 3;
        if !pae_pdpte {
            w.writable &= e & PTE_RW != 0;
            w.user &= e & PTE_US != 0;
        }
        let large = e & PTE_PS != 0 && level > 1;
        if large && (level > 3 || pae_pdpte) {
            return Err(pf(la, PF_PRESENT | PF_RSVD, ctx, access));
        }
        w.entries.push((addr, 8, large || level == 1));
        if large || level == 1 {
            let offset_mask = (1u64 << shift) - 1;
            w.gpa = (e & PTE_ADDR & !offset_mask) | (la & offset_mask);
            return Ok(w);
        }
        table = e & PTE_ADDR;
    }
    Err(pf(la, PF_PRESENT | PF_RSVD, ctx, access))
}

/// 32-bit paging: page directory and page table of 4-byte entries, 4 MiB
/// pages with CR4.PSE (PSE-36 high bits included).
fn walk32(ctx: &Paging<'_>, la: u64, access: Access) -> Result<Walked, Exception> {
    let pde_addr = (ctx.sregs.cr3 & 0xffff_f000) + ((la >> 22) & 0x3ff) * 4;
    let pde = read_entry(ctx, pde_addr, 4);
    if pde & PTE_P == 0 {
        return Err(pf(la, 0, ctx, access));
    }
    let mut w = Walked {
        gpa: 0,
        entries: vec![(pde_addr, 4, false)],
        writable: pde & PTE_RW != 0,
        user: pde & PTE_US != 0,
    };
    if pde & PTE_PS != 0 && ctx.sregs.cr4 & CR4_PSE != 0 {
        w.entries[0].2 = true;
        w.gpa = (pde & 0xffc0_0000) | (((pde >> 13) & 0xff) << 32) | (la & 0x3f_ffff);
        return Ok(w);
    }
    let pte_addr = (pde & 0xffff_f000) + ((la >> 12) & 0x3ff) * 4;
    let pte = read_entry(ctx, pte_addr, 4);
    if pte & PTE_P == 0 {
        return Err(pf(la, 0, ctx, access));
    }
    w.writable &= pte & PTE_RW != 0;
    w.user &= pte & PTE_US != 0;
    w.entries.push((pte_addr, 4, true));
    w.gpa = (pte & 0xffff_f000) | (la & 0xfff);
    Ok(w)
}

/// Translates linear address `la` for `access` through the guest's paging
/// (identity when paging is off), checking write and user/supervisor
/// permissions (CR0.WP, SMAP) and setting accessed/dirty bits.
pub(crate) fn translate(ctx: &Ctx<'_>, la: u64, access: Access) -> Result<u64, Exception> {
    let s = &ctx.sregs;
    if s.cr0 & CR0_PG == 0 {
        return Ok(la);
    }
    let w = walk(&Paging::of(ctx), la, access)?;
    let write_denied =
        access == Access::Write && !w.writable && (ctx.cpl == 3 || s.cr0 & CR0_WP != 0);
    let user_denied = ctx.cpl == 3 && !w.user;
    let smap_denied =
        ctx.cpl < 3 && w.user && s.cr4 & CR4_SMAP != 0 && ctx.regs.rflags & RFLAGS_AC == 0;
    if write_denied || user_denied || smap_denied {
        return Err(pf(la, PF_PRESENT, &Paging::of(ctx), access));
    }
    for (addr, size, leaf) in &w.entries {
        let bits = if *leaf && access == Access::Write {
            PTE_A | PTE_D
        } else {
            PTE_A
        };
        fetch_or(ctx.mem, *addr, *size, bits);
    }
    Ok(w.gpa)
}

/// The walk the paging mode in CR4 selects (paging is on).
fn walk(p: &Paging<'_>, la: u64, access: Access) -> Result<Walked, Exception> {
    if p.sregs.cr4 & CR4_PAE != 0 {
        walk64(p, la, access)
    } else {
        walk32(p, la, access)
    }
}

/// The guest-physical address of linear address `la` as a debugger sees
/// it: through the page tables `sregs` points to (identity with paging
/// off), at CPL0, with no permission checks and no accessed or dirty bits
/// set. `phys_bits` is the guest's MAXPHYADDR. A non-present or reserved
/// entry is the #PF the walk would raise.
pub fn debugger_translate(
    mem: &GuestMemoryMmap,
    sregs: &kvm_sregs,
    phys_bits: u32,
    la: u64,
) -> Result<u64, Exception> {
    if sregs.cr0 & CR0_PG == 0 {
        return Ok(la);
    }
    let paging = Paging {
        mem,
        sregs,
        phys_bits,
        cpl: 0,
    };
    walk(&paging, la, Access::Read).map(|w| w.gpa)
}
