//! The vCPU state a PC's firmware leaves when the platform resumes from
//! ACPI S3: the CPUs were reset, the firmware ran, and it hands the boot
//! processor to the OS's waking vector (ACPI 6.5 §5.2.10, FACS
//! Firmware_Waking_Vector / X_Firmware_Waking_Vector, and §16.3.2); the
//! application processors wait for INIT/SIPI as after any reset.
//!
//! - Boot processor, [`WakeEntry::RealMode`]: 16-bit real mode at the
//!   20-bit vector as CS:IP = (vector >> 4):(vector & 0xf).
//! - Boot processor, [`WakeEntry::Protected32`]: 32-bit protected mode,
//!   paging off, flat 4 GiB code and data segments, EIP = the vector.
//! - Application processors: reset state, wait-for-SIPI
//!   (KVM_MP_STATE_INIT_RECEIVED).
//!
//! Every vCPU also gets what reset and firmware leave behind: general
//! registers zero, RFLAGS 0x2, CR0 with only ET (and PE for the 32-bit
//! entry) set (caches on, as firmware leaves them), CR3/CR4/EFER zero, the
//! local APIC at its reset values but for its ID (LVTs masked, software
//! disabled) with LINT0/LINT1 in virtual-wire mode, IA32_APIC_BASE at
//! 0xfee00000 enabled (BSP flag on vCPU 0), the FPU after FNINIT, and no
//! pending exception, interrupt or NMI. MSRs other than EFER and the APIC
//! base are left as they were (an OS disables its paravirtual MSRs, such
//! as async page faults, before it suspends).
//!
//! The state is computed by pure functions, tested without KVM;
//! [`crate::Vcpu::reset_for_wake`] loads it.

use kvm_bindings::{
    kvm_fpu, kvm_lapic_state, kvm_mp_state, kvm_regs, kvm_segment, kvm_sregs, kvm_vcpu_events,
    KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_RUNNABLE,
};

use crate::boot_state::{RFLAGS_RESERVED, X86_CR0_ET, X86_CR0_PE};
use crate::exit_handler::ExitHandler;
use crate::firmware_state::set_lint_virtual_wire;
use crate::vcpu::{Vcpu, VcpuError};

/// Where the boot processor resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeEntry {
    /// Real mode at a 20-bit physical address (FACS Firmware_Waking_Vector).
    RealMode {
        /// Physical address, below 1 MiB.
        vector: u32,
    },
    /// 32-bit flat protected mode, paging off (FACS X_Firmware_Waking_Vector
    /// without 64BIT_WAKE_F).
    Protected32 {
        /// Physical address of the first instruction.
        vector: u32,
    },
}

/// IA32_APIC_BASE: the xAPIC's default base.
pub const APIC_DEFAULT_BASE: u64 = 0xfee0_0000;
/// IA32_APIC_BASE: global enable.
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
/// IA32_APIC_BASE: this is the boot processor.
pub const APIC_BASE_BSP: u64 = 1 << 8;

/// Local APIC registers (Intel SDM Vol. 3A table 11-1) and their reset
/// values (§11.4.7.1).
const APIC_ID: usize = 0x20;
const APIC_VERSION: usize = 0x30;
const APIC_DFR: usize = 0xe0;
const APIC_SVR: usize = 0xf0;
const APIC_LVT_CMCI: usize = 0x2f0;
const APIC_LVT_TIMER: usize = 0x320;
const APIC_LVT_ERROR: usize = 0x370;
const APIC_LVT_MASKED: u32 = 1 << 16;
const APIC_DFR_FLAT: u32 = 0xffff_ffff;
/// Spurious vector 0xff, APIC software-disabled.
const APIC_SVR_RESET: u32 = 0xff;

/// Segment descriptor types (SDM Vol. 3A table 3-1) with the accessed bit.
const SEG_CODE_RX_ACCESSED: u8 = 0xb;
const SEG_DATA_RW_ACCESSED: u8 = 0x3;
const SEG_LDT: u8 = 0x2;
const SEG_TSS_BUSY: u8 = 0xb;
/// Selectors of the 32-bit entry's flat segments (Linux's __BOOT_CS/DS).
const FLAT_CS: u16 = 0x10;
const FLAT_DS: u16 = 0x18;

/// FPU control word after FNINIT, and MXCSR with every exception masked.
const FPU_FCW_INIT: u16 = 0x37f;
const MXCSR_RESET: u32 = 0x1f80;

fn segment(selector: u16, base: u64, limit: u32, type_: u8) -> kvm_segment {
    kvm_segment {
        base,
        limit,
        selector,
        type_,
        present: 1,
        s: 1,
        ..Default::default()
    }
}

/// The segment and control registers for a vCPU waking with `entry` (the
/// boot processor) or waiting for SIPI (`None`). `current` provides what is
/// kept (the interrupt bitmap is cleared).
pub fn wake_sregs(current: kvm_sregs, entry: Option<WakeEntry>, bsp: bool) -> kvm_sregs {
    let mut s = current;
    let data16 = segment(0, 0, 0xffff, SEG_DATA_RW_ACCESSED);
    s.ds = data16;
    s.es = data16;
    s.fs = data16;
    s.gs = data16;
    s.ss = data16;
    // Wait-for-SIPI CPUs get CS from the SIPI vector; reset leaves
    // F000:FFF0's selector, which does not matter here.
    s.cs = segment(0xf000, 0xffff_0000, 0xffff, SEG_CODE_RX_ACCESSED);
    s.ldt = kvm_segment {
        s: 0,
        type_: SEG_LDT,
        ..segment(0, 0, 0xffff, SEG_LDT)
    };
    s.tr = kvm_segment {
        s: 0,
        type_: SEG_TSS_BUSY,
        ..segment(0, 0, 0xffff, SEG_TSS_BUSY)
    };
    s.gdt.base = 0;
    s.gdt.limit = 0xffff;
    s.idt.base = 0;
    s.idt.limit = 0xffff;
    s.cr0 = X86_CR0_ET;
    s.cr2 = 0;
    s.cr3 = 0;
    s.cr4 = 0;
    s.cr8 = 0;
    s.efer = 0;
    s.apic_base = APIC_DEFAULT_BASE | APIC_BASE_ENABLE | if bsp { APIC_BASE_BSP } else { 0 };
    s.interrupt_bitmap = [0; 4];
    match entry {
        Some(WakeEntry::RealMode { vector }) => {
            let selector = ((vector >> 4) & 0xffff) as u16;
            s.cs = segment(
                selector,
                u64::from(selector) << 4,
                0xffff,
                SEG_CODE_RX_ACCESSED,
            );
        }
        Some(WakeEntry::Protected32 { .. }) => {
            let flat = |selector, type_| kvm_segment {
                db: 1,
                g: 1,
                ..segment(selector, 0, 0xffff_ffff, type_)
            };
            s.cs = flat(FLAT_CS, SEG_CODE_RX_ACCESSED);
            let data = flat(FLAT_DS, SEG_DATA_RW_ACCESSED);
            s.ds = data;
            s.es = data;
            s.fs = data;
            s.gs = data;
            s.ss = data;
            s.cr0 |= X86_CR0_PE;
        }
        None => {}
    }
    s
}

/// General registers: zero, RFLAGS 0x2, RIP at the entry (within CS).
pub fn wake_regs(entry: Option<WakeEntry>) -> kvm_regs {
    let rip = match entry {
        Some(WakeEntry::RealMode { vector }) => u64::from(vector & 0xf),
        Some(WakeEntry::Protected32 { vector }) => u64::from(vector),
        None => 0xfff0,
    };
    kvm_regs {
        rip,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    }
}

fn set_reg(state: &mut kvm_lapic_state, off: usize, v: u32) {
    for (i, byte) in v.to_le_bytes().iter().enumerate() {
        state.regs[off + i] = *byte as _;
    }
}

/// Resets a local APIC's register page (keeping its ID and version), then
/// puts LINT0/LINT1 in virtual-wire mode as firmware does.
pub fn reset_lapic(state: &mut kvm_lapic_state) {
    let keep = |off: usize| state.regs[off..off + 4].to_vec();
    let (id, version) = (keep(APIC_ID), keep(APIC_VERSION));
    state.regs.fill(0);
    state.regs[APIC_ID..APIC_ID + 4].copy_from_slice(&id);
    state.regs[APIC_VERSION..APIC_VERSION + 4].copy_from_slice(&version);
    set_reg(state, APIC_DFR, APIC_DFR_FLAT);
    set_reg(state, APIC_SVR, APIC_SVR_RESET);
    set_reg(state, APIC_LVT_CMCI, APIC_LVT_MASKED);
    for lvt in (APIC_LVT_TIMER..=APIC_LVT_ERROR).step_by(0x10) {
        set_reg(state, lvt, APIC_LVT_MASKED);
    }
    set_lint_virtual_wire(state);
}

/// Errors loading the wake state into a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum WakeStateError {
    /// Finishing the instruction the vCPU stopped in failed.
    #[error("finishing the pending I/O before the wake failed: {0}")]
    CompleteIo(VcpuError),
    /// A KVM state ioctl failed.
    #[error("{ioctl} for the S3 wake failed: {source}")]
    Ioctl {
        /// Which ioctl.
        ioctl: &'static str,
        /// The error.
        source: kvm_ioctls::Error,
    },
}

impl Vcpu {
    /// Loads the state of [`crate::wake_state`] for a resume from S3:
    /// the boot processor (`entry` is `Some`) at its waking vector, any
    /// other vCPU (`None`) waiting for SIPI. Call on the vCPU's thread, out
    /// of KVM_RUN; the instruction it stopped in is finished first (see
    /// [`Vcpu::complete_pending_io`]), its exits, if any, going to `handler`.
    pub fn reset_for_wake<H: ExitHandler + ?Sized>(
        &mut self,
        entry: Option<WakeEntry>,
        handler: &H,
    ) -> Result<(), WakeStateError> {
        self.complete_pending_io(handler)
            .map_err(WakeStateError::CompleteIo)?;
        let bsp = self.index() == 0;
        let fd = self.fd();
        let ioctl = |ioctl| move |source| WakeStateError::Ioctl { ioctl, source };
        let sregs = fd.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
        fd.set_sregs(&wake_sregs(sregs, entry, bsp))
            .map_err(ioctl("KVM_SET_SREGS"))?;
        fd.set_regs(&wake_regs(entry))
            .map_err(ioctl("KVM_SET_REGS"))?;
        let fpu = kvm_fpu {
            fcw: FPU_FCW_INIT,
            mxcsr: MXCSR_RESET,
            ..Default::default()
        };
        fd.set_fpu(&fpu).map_err(ioctl("KVM_SET_FPU"))?;
        let mut lapic = fd.get_lapic().map_err(ioctl("KVM_GET_LAPIC"))?;
        reset_lapic(&mut lapic);
        fd.set_lapic(&lapic).map_err(ioctl("KVM_SET_LAPIC"))?;
        fd.set_vcpu_events(&kvm_vcpu_events::default())
            .map_err(ioctl("KVM_SET_VCPU_EVENTS"))?;
        let mp_state = if entry.is_some() {
            KVM_MP_STATE_RUNNABLE
        } else {
            KVM_MP_STATE_INIT_RECEIVED
        };
        fd.set_mp_state(kvm_mp_state { mp_state })
            .map_err(ioctl("KVM_SET_MP_STATE"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(state: &kvm_lapic_state, off: usize) -> u32 {
        let b = &state.regs[off..off + 4];
        u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
    }

    #[test]
    fn test_wake_real_mode_cs_ip_from_20_bit_vector() {
        let e = Some(WakeEntry::RealMode { vector: 0x12345 });
        let s = wake_sregs(kvm_sregs::default(), e, true);
        assert_eq!(
            (s.cs.selector, s.cs.base, s.cs.limit),
            (0x1234, 0x12340, 0xffff)
        );
        assert_eq!(wake_regs(e).rip, 5);
        assert_eq!(wake_regs(e).rflags, 2);
        assert_eq!(s.cr0, X86_CR0_ET);
        assert_eq!((s.cr3, s.cr4, s.efer), (0, 0, 0));
        assert_eq!(s.apic_base, 0xfee0_0900);
        assert_eq!((s.ds.base, s.ds.limit, s.ds.selector), (0, 0xffff, 0));
        assert_eq!(s.cs.db, 0, "16-bit code");
        // kvm-unit-tests' s3.flat: vector 0x1000 is 0100:0000.
        let e = Some(WakeEntry::RealMode { vector: 0x1000 });
        let s = wake_sregs(kvm_sregs::default(), e, true);
        assert_eq!((s.cs.selector, wake_regs(e).rip), (0x100, 0));
    }

    #[test]
    fn test_wake_leaves_long_mode_behind() {
        let mut current = kvm_sregs {
            cr0: 0x8000_0011,
            cr4: 0x20,
            cr3: 0x9000,
            efer: 0x500,
            interrupt_bitmap: [1; 4],
            ..Default::default()
        };
        current.cs.l = 1;
        let s = wake_sregs(current, Some(WakeEntry::RealMode { vector: 0x8000 }), true);
        assert_eq!((s.cr0, s.cr3, s.cr4, s.efer), (X86_CR0_ET, 0, 0, 0));
        assert_eq!((s.cs.l, s.interrupt_bitmap), (0, [0; 4]));
    }

    #[test]
    fn test_wake_protected32_flat_segments() {
        let e = Some(WakeEntry::Protected32 { vector: 0x10_0000 });
        let s = wake_sregs(kvm_sregs::default(), e, true);
        assert_eq!(s.cr0, X86_CR0_ET | X86_CR0_PE);
        for seg in [s.cs, s.ds, s.ss] {
            assert_eq!((seg.base, seg.limit, seg.db, seg.g), (0, 0xffff_ffff, 1, 1));
        }
        assert_eq!((s.cs.selector, s.cs.type_), (0x10, 0xb));
        assert_eq!(wake_regs(e).rip, 0x10_0000);
    }

    #[test]
    fn test_wake_ap_waits_for_sipi_without_bsp_flag() {
        let s = wake_sregs(kvm_sregs::default(), None, false);
        assert_eq!(s.apic_base, 0xfee0_0800);
        assert_eq!(s.cr0, X86_CR0_ET);
        assert_eq!(wake_regs(None).rip, 0xfff0);
    }

    #[test]
    fn test_reset_lapic_keeps_id_and_masks_everything_but_virtual_wire() {
        let mut st = kvm_lapic_state::default();
        st.regs.fill(0x55);
        set_reg(&mut st, APIC_ID, 3 << 24);
        set_reg(&mut st, APIC_VERSION, 0x0005_0014);
        reset_lapic(&mut st);
        assert_eq!(reg(&st, APIC_ID), 3 << 24);
        assert_eq!(reg(&st, APIC_VERSION), 0x0005_0014);
        assert_eq!(reg(&st, APIC_SVR), 0xff);
        assert_eq!(reg(&st, APIC_DFR), 0xffff_ffff);
        assert_eq!(reg(&st, 0x80), 0, "TPR");
        assert_eq!(reg(&st, 0x100), 0, "ISR");
        assert_eq!(reg(&st, 0x200), 0, "IRR");
        assert_eq!(reg(&st, APIC_LVT_TIMER), APIC_LVT_MASKED);
        assert_eq!(reg(&st, APIC_LVT_ERROR), APIC_LVT_MASKED);
        assert_eq!(reg(&st, 0x350), 0x700, "LINT0 ExtINT");
        assert_eq!(reg(&st, 0x360), 0x400, "LINT1 NMI");
        assert_eq!(reg(&st, 0x380), 0, "timer initial count");
    }
}
