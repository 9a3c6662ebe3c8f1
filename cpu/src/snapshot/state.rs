//! The saved state of one vCPU.

use kvm_bindings::{
    kvm_cpuid_entry2, kvm_debugregs, kvm_fpu, kvm_lapic_state, kvm_mp_state, kvm_msr_entry,
    kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave,
};
use serde::{Deserialize, Serialize};

/// 32-bit words in the legacy KVM_GET_XSAVE area (4 KiB).
pub const XSAVE_WORDS: usize = 1024;

/// Everything KVM holds for one vCPU (see the module docs of
/// [`crate::snapshot`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VcpuState {
    /// The vCPU's index (its APIC ID in this VMM).
    pub index: u64,
    /// KVM_GET_REGS.
    pub regs: kvm_regs,
    /// KVM_GET_SREGS.
    pub sregs: kvm_sregs,
    /// KVM_GET_FPU (the XSAVE area holds the same and more; kept so the
    /// restore does not depend on XSAVE alone).
    pub fpu: FpuState,
    /// KVM_GET_XSAVE.
    pub xsave: XsaveArea,
    /// KVM_GET_XCRS.
    pub xcrs: kvm_xcrs,
    /// KVM_GET_DEBUGREGS.
    pub debug_regs: kvm_debugregs,
    /// KVM_GET_LAPIC; only with an in-kernel irqchip.
    pub lapic: Option<kvm_lapic_state>,
    /// KVM_GET_MSRS of every MSR in the save list that this host let us
    /// read, in list order.
    pub msrs: Vec<kvm_msr_entry>,
    /// MSRs in the save list this host refused to read (left out).
    pub skipped_msrs: Vec<u32>,
    /// KVM_GET_CPUID2: the CPUID the vCPU was given.
    pub cpuid: Vec<kvm_cpuid_entry2>,
    /// KVM_GET_MP_STATE.
    pub mp_state: kvm_mp_state,
    /// KVM_GET_VCPU_EVENTS: pending exceptions, interrupts, NMIs, SMIs.
    pub vcpu_events: kvm_vcpu_events,
    /// KVM_GET_TSC_KHZ, when the host reports it.
    pub tsc_khz: Option<u32>,
}

impl VcpuState {
    /// The value saved for `msr`, if it was saved.
    pub fn msr(&self, msr: u32) -> Option<u64> {
        self.msrs.iter().find(|e| e.index == msr).map(|e| e.data)
    }
}

/// `kvm_fpu`, which kvm-bindings does not serialise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FpuState {
    /// ST0-ST7 / MM0-MM7, 16 bytes each.
    pub fpr: [[u8; 16]; 8],
    /// FPU control word.
    pub fcw: u16,
    /// FPU status word.
    pub fsw: u16,
    /// Abridged tag word.
    pub ftwx: u8,
    /// Last opcode.
    pub last_opcode: u16,
    /// Last instruction pointer.
    pub last_ip: u64,
    /// Last data pointer.
    pub last_dp: u64,
    /// XMM0-XMM15.
    pub xmm: [[u8; 16]; 16],
    /// MXCSR.
    pub mxcsr: u32,
}

impl From<&kvm_fpu> for FpuState {
    fn from(f: &kvm_fpu) -> Self {
        FpuState {
            fpr: f.fpr,
            fcw: f.fcw,
            fsw: f.fsw,
            ftwx: f.ftwx,
            last_opcode: f.last_opcode,
            last_ip: f.last_ip,
            last_dp: f.last_dp,
            xmm: f.xmm,
            mxcsr: f.mxcsr,
        }
    }
}

impl From<&FpuState> for kvm_fpu {
    fn from(f: &FpuState) -> Self {
        kvm_fpu {
            fpr: f.fpr,
            fcw: f.fcw,
            fsw: f.fsw,
            ftwx: f.ftwx,
            last_opcode: f.last_opcode,
            last_ip: f.last_ip,
            last_dp: f.last_dp,
            xmm: f.xmm,
            mxcsr: f.mxcsr,
            ..Default::default()
        }
    }
}

/// The XSAVE area, as 32-bit words (kvm-bindings' `kvm_xsave` is neither
/// `Clone` nor checked for length when deserialised).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct XsaveArea(pub Vec<u32>);

impl From<&kvm_xsave> for XsaveArea {
    fn from(x: &kvm_xsave) -> Self {
        XsaveArea(x.region.to_vec())
    }
}

impl XsaveArea {
    /// The area as KVM_SET_XSAVE takes it, if it has the right size.
    pub fn to_kvm(&self) -> Option<kvm_xsave> {
        let region: [u32; XSAVE_WORDS] = self.0.as_slice().try_into().ok()?;
        Some(kvm_xsave {
            region,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_fpu_state_round_trips() {
        let mut f = kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            last_ip: 0x1234,
            ..Default::default()
        };
        f.xmm[3][7] = 0xaa;
        f.fpr[7][15] = 0x55;
        let back = kvm_fpu::from(&FpuState::from(&f));
        assert_eq!(back, f);
    }

    #[test]
    fn test_xsave_area_checks_its_length() {
        let mut x = kvm_xsave::default();
        x.region[5] = 7;
        let area = XsaveArea::from(&x);
        assert_eq!(area.0.len(), XSAVE_WORDS);
        assert_eq!(area.to_kvm().unwrap().region[5], 7);
        assert!(XsaveArea(vec![0; 10]).to_kvm().is_none());
    }
}
