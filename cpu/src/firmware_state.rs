//! The vCPU state a PC BIOS leaves behind before handing over to a kernel:
//! local APIC LINT0/LINT1 in virtual-wire mode, FPU control words, and the
//! MSRs a freshly reset CPU has but KVM leaves zero.
//!
//! Needs the in-kernel irqchip (KVM_CREATE_IRQCHIP) for the LAPIC part.

use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_msr_entry, Msrs};
use kvm_ioctls::VcpuFd;

/// LAPIC register offsets (Intel SDM Vol. 3A, table 11-1).
const APIC_LVT_LINT0: usize = 0x350;
const APIC_LVT_LINT1: usize = 0x360;
/// LVT delivery-mode field and the two modes firmware uses.
const APIC_DELIVERY_MODE_MASK: u32 = 0x700;
const APIC_MODE_EXTINT: u32 = 0x700;
const APIC_MODE_NMI: u32 = 0x400;
/// LVT mask bit.
const APIC_LVT_MASKED: u32 = 1 << 16;

/// IA32_MISC_ENABLE and its fast-strings bit (set by every BIOS).
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MISC_ENABLE_FAST_STRING: u64 = 1;

/// Errors setting firmware state.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareStateError {
    /// KVM_GET_LAPIC failed.
    #[error("KVM_GET_LAPIC failed: {0}")]
    GetLapic(kvm_ioctls::Error),
    /// KVM_SET_LAPIC failed.
    #[error("KVM_SET_LAPIC failed: {0}")]
    SetLapic(kvm_ioctls::Error),
    /// KVM_SET_FPU failed.
    #[error("KVM_SET_FPU failed: {0}")]
    SetFpu(kvm_ioctls::Error),
    /// KVM_SET_MSRS failed or set fewer MSRs than asked.
    #[error("KVM_SET_MSRS failed: {0}")]
    SetMsrs(String),
}

fn lapic_reg(state: &kvm_lapic_state, off: usize) -> u32 {
    let b = &state.regs[off..off + 4];
    u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
}

fn set_lapic_reg(state: &mut kvm_lapic_state, off: usize, v: u32) {
    for (i, byte) in v.to_le_bytes().iter().enumerate() {
        state.regs[off + i] = *byte as _;
    }
}

/// Rewrites LINT0 as ExtINT and LINT1 as NMI (unmasked), the virtual-wire
/// setup firmware leaves so the 8259 PIC's interrupts reach the CPU.
pub fn set_lint_virtual_wire(state: &mut kvm_lapic_state) {
    for (reg, mode) in [
        (APIC_LVT_LINT0, APIC_MODE_EXTINT),
        (APIC_LVT_LINT1, APIC_MODE_NMI),
    ] {
        let v = lapic_reg(state, reg);
        set_lapic_reg(
            state,
            reg,
            (v & !(APIC_DELIVERY_MODE_MASK | APIC_LVT_MASKED)) | mode,
        );
    }
}

/// Applies [`set_lint_virtual_wire`] to a vCPU's in-kernel LAPIC.
pub fn setup_lapic(vcpu: &VcpuFd) -> Result<(), FirmwareStateError> {
    let mut state = vcpu.get_lapic().map_err(FirmwareStateError::GetLapic)?;
    set_lint_virtual_wire(&mut state);
    vcpu.set_lapic(&state).map_err(FirmwareStateError::SetLapic)
}

/// FPU state after FNINIT (FCW 0x37f) with SSE exceptions masked (MXCSR
/// 0x1f80), as a BIOS leaves it.
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<(), FirmwareStateError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(FirmwareStateError::SetFpu)
}

/// MSRs a BIOS sets: fast strings on in IA32_MISC_ENABLE.
pub fn setup_msrs(vcpu: &VcpuFd) -> Result<(), FirmwareStateError> {
    let entries = [kvm_msr_entry {
        index: MSR_IA32_MISC_ENABLE,
        data: MISC_ENABLE_FAST_STRING,
        ..Default::default()
    }];
    let msrs =
        Msrs::from_entries(&entries).map_err(|e| FirmwareStateError::SetMsrs(format!("{e:?}")))?;
    let set = vcpu
        .set_msrs(&msrs)
        .map_err(|e| FirmwareStateError::SetMsrs(e.to_string()))?;
    if set != entries.len() {
        return Err(FirmwareStateError::SetMsrs(format!(
            "KVM accepted {set} of {} MSRs (IA32_MISC_ENABLE refused)",
            entries.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_lint_virtual_wire_modes() {
        let mut s = kvm_lapic_state::default();
        set_lapic_reg(&mut s, APIC_LVT_LINT0, APIC_LVT_MASKED | 0x100);
        set_lapic_reg(&mut s, APIC_LVT_LINT1, APIC_LVT_MASKED);
        set_lint_virtual_wire(&mut s);
        assert_eq!(lapic_reg(&s, APIC_LVT_LINT0), APIC_MODE_EXTINT);
        assert_eq!(lapic_reg(&s, APIC_LVT_LINT1), APIC_MODE_NMI);
    }
}
