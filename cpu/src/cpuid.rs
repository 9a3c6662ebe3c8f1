//! The CPUID a vCPU reports: what KVM supports on this host, with the
//! per-vCPU fields (APIC ID) filled in.

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd};

/// Errors setting up CPUID.
#[derive(Debug, thiserror::Error)]
pub enum CpuidError {
    /// KVM_GET_SUPPORTED_CPUID failed.
    #[error("KVM_GET_SUPPORTED_CPUID failed: {0}")]
    GetSupported(kvm_ioctls::Error),
    /// KVM_SET_CPUID2 failed.
    #[error("KVM_SET_CPUID2 failed: {0}")]
    SetCpuid(kvm_ioctls::Error),
}

/// Host-supported CPUID, fetched once and shared by all vCPUs.
pub fn supported_cpuid(kvm: &Kvm) -> Result<CpuId, CpuidError> {
    kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(CpuidError::GetSupported)
}

/// Fills the fields that differ per vCPU: the initial APIC ID in leaf 1
/// (EBX[31:24]) and the x2APIC ID in leaves 0xB/0x1F (EDX).
pub fn patch_for_vcpu(cpuid: &mut CpuId, apic_id: u8) {
    for e in cpuid.as_mut_slice() {
        match e.function {
            0x1 => e.ebx = (e.ebx & 0x00ff_ffff) | (u32::from(apic_id) << 24),
            0xb | 0x1f => e.edx = u32::from(apic_id),
            _ => {}
        }
    }
}

/// Sets `cpuid`, patched for `apic_id`, on `vcpu`.
pub fn set_vcpu_cpuid(vcpu: &VcpuFd, cpuid: &CpuId, apic_id: u8) -> Result<(), CpuidError> {
    let mut own = cpuid.clone();
    patch_for_vcpu(&mut own, apic_id);
    vcpu.set_cpuid2(&own).map_err(CpuidError::SetCpuid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn test_patch_sets_apic_id() {
        let mut c = CpuId::from_entries(&[
            kvm_cpuid_entry2 {
                function: 1,
                ebx: 0xaabb_ccdd,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                edx: 9,
                ..Default::default()
            },
        ])
        .unwrap();
        patch_for_vcpu(&mut c, 3);
        assert_eq!(c.as_slice()[0].ebx, 0x03bb_ccdd);
        assert_eq!(c.as_slice()[1].edx, 3);
    }
}
