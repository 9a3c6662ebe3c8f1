//! The CPUID a vCPU reports: what KVM supports on this host, with the
//! per-vCPU fields (APIC ID) filled in.

use kvm_bindings::{
    kvm_cpuid_entry2, CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, KVM_MAX_CPUID_ENTRIES,
};
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

/// KVM's paravirtual feature leaf.
pub const KVM_CPUID_FEATURES: u32 = 0x4000_0001;
/// Paravirtual features that are used through `vmcall`, which never returns
/// on the nested KVM of the development machines (see the project notes):
/// PV_UNHALT (7), PV_TLB_FLUSH (9), PV_SEND_IPI (11), PV_SCHED_YIELD (13),
/// and the hypercall-based POLL_CONTROL (12).
pub const HYPERCALL_PV_FEATURES: u32 = (1 << 7) | (1 << 9) | (1 << 11) | (1 << 12) | (1 << 13);

/// How the vCPUs are presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    /// vCPUs in the VM: one socket, one thread per core.
    pub cpus: u8,
    /// Keep the hypercall-based paravirtual features (they hang where
    /// `vmcall` does not exit).
    pub hypercall_pv_features: bool,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            cpus: 1,
            hypercall_pv_features: false,
        }
    }
}

/// Bits needed to number `n` items (ceil(log2(n))).
fn bits_for(n: u32) -> u32 {
    32 - n.saturating_sub(1).leading_zeros()
}

/// Fills what differs per vCPU and per VM: APIC IDs (leaf 1 EBX bits 31:24,
/// leaves 0xB/0x1F EDX), the package topology (leaf 1 logical count and HTT,
/// leaf 4 cores per package, leaf 0xB levels: 1 thread per core, `cpus`
/// cores), and the paravirtual features that need working hypercalls.
pub fn patch_for_vcpu(cpuid: &mut CpuId, apic_id: u8, topo: Topology) {
    let cpus = u32::from(topo.cpus.max(1));
    let core_bits = bits_for(cpus);
    // KVM lists only subleaf 0 of the extended topology leaf; the core level
    // (subleaf 1) must be added for the guest to see the package layout.
    for leaf in [0xb, 0x1f] {
        let has = |i: u32| {
            cpuid
                .as_slice()
                .iter()
                .any(|e| e.function == leaf && e.index == i)
        };
        if has(0) && !has(1) {
            let entry = kvm_cpuid_entry2 {
                function: leaf,
                index: 1,
                flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
                ..Default::default()
            };
            if cpuid.push(entry).is_err() {
                log::warn!("CPUID table full: leaf {leaf:#x} core level not reported");
            }
        }
    }
    for e in cpuid.as_mut_slice() {
        match e.function {
            0x1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | (u32::from(apic_id) << 24) | ((cpus & 0xff) << 16);
                if cpus > 1 {
                    e.edx |= 1 << 28; // HTT: the logical count field is valid
                }
            }
            0x4 => {
                // EAX[31:26]: addressable core IDs per package - 1.
                e.eax = (e.eax & 0x03ff_ffff) | (((1 << core_bits) - 1) << 26);
                // EAX[25:14]: logical processors sharing this cache - 1: one
                // thread per core, caches at level 3 shared by all.
                let level = (e.eax >> 5) & 0x7;
                let sharing = if level >= 3 { (1 << core_bits) - 1 } else { 0 };
                e.eax = (e.eax & !(0xfff << 14)) | (sharing << 14);
            }
            0xb | 0x1f => {
                e.edx = u32::from(apic_id);
                match e.index {
                    0 => {
                        e.eax = 0; // no SMT bits
                        e.ebx = 1;
                        e.ecx = (1 << 8) | e.index;
                    }
                    1 => {
                        e.eax = core_bits;
                        e.ebx = cpus;
                        e.ecx = (2 << 8) | e.index;
                    }
                    _ => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = e.index;
                    }
                }
            }
            // AMD: ECX[7:0] cores per package - 1, ECX[15:12] APIC ID bits
            // for the core number.
            0x8000_0008 => e.ecx = (e.ecx & !0xf0ff) | (core_bits << 12) | ((cpus - 1) & 0xff),
            KVM_CPUID_FEATURES if !topo.hypercall_pv_features => e.eax &= !HYPERCALL_PV_FEATURES,
            _ => {}
        }
    }
}

/// RDTSCP's bit: leaf 0x80000001 EDX bit 27.
pub const RDTSCP_LEAF: u32 = 0x8000_0001;
/// RDTSCP's bit in [`RDTSCP_LEAF`] EDX.
pub const RDTSCP_EDX_BIT: u32 = 1 << 27;

/// Advertises RDTSCP (leaf 0x80000001 EDX bit 27), for when the emulation
/// fallback completes it ([`crate::fallback`]): KVM on the development
/// machines hides it because its emulator cannot run it. Returns whether the
/// leaf exists (nothing is added when it does not).
pub fn advertise_rdtscp(cpuid: &mut CpuId) -> bool {
    let mut found = false;
    for e in cpuid.as_mut_slice() {
        if e.function == RDTSCP_LEAF {
            e.edx |= RDTSCP_EDX_BIT;
            found = true;
        }
    }
    found
}

/// `cpuid` patched for `apic_id` in `topo`: what [`set_vcpu_cpuid`] sets.
pub fn vcpu_cpuid(cpuid: &CpuId, apic_id: u8, topo: Topology) -> CpuId {
    let mut own = cpuid.clone();
    patch_for_vcpu(&mut own, apic_id, topo);
    own
}

/// Sets `cpuid`, patched for `apic_id` in `topo`, on `vcpu`. Returns how
/// many entries KVM_SET_CPUID2 was given.
pub fn set_vcpu_cpuid(
    vcpu: &VcpuFd,
    cpuid: &CpuId,
    apic_id: u8,
    topo: Topology,
) -> Result<usize, CpuidError> {
    let mut own = cpuid.clone();
    patch_for_vcpu(&mut own, apic_id, topo);
    vcpu.set_cpuid2(&own).map_err(CpuidError::SetCpuid)?;
    Ok(own.as_slice().len())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        patch_for_vcpu(
            &mut c,
            3,
            Topology {
                cpus: 4,
                hypercall_pv_features: false,
            },
        );
        assert_eq!(c.as_slice()[0].ebx, 0x0304_ccdd);
        assert_ne!(c.as_slice()[0].edx & (1 << 28), 0);
        assert_eq!(c.as_slice()[1].edx, 3);
        assert_eq!((c.as_slice()[1].ebx, c.as_slice()[1].ecx >> 8), (1, 1));
    }

    #[test]
    fn test_advertise_rdtscp_sets_only_its_bit() {
        let mut c = CpuId::from_entries(&[kvm_cpuid_entry2 {
            function: RDTSCP_LEAF,
            edx: 0x0000_0001,
            ..Default::default()
        }])
        .unwrap();
        assert!(advertise_rdtscp(&mut c));
        assert_eq!(c.as_slice()[0].edx, 0x0800_0001);
        let mut empty = CpuId::new(0).unwrap();
        assert!(!advertise_rdtscp(&mut empty));
    }

    #[test]
    fn test_core_level_added_when_kvm_lists_only_subleaf_0() {
        let mut c = CpuId::from_entries(&[kvm_cpuid_entry2 {
            function: 0xb,
            index: 0,
            ..Default::default()
        }])
        .unwrap();
        patch_for_vcpu(
            &mut c,
            1,
            Topology {
                cpus: 2,
                hypercall_pv_features: false,
            },
        );
        let core = c
            .as_slice()
            .iter()
            .find(|e| e.function == 0xb && e.index == 1)
            .unwrap();
        assert_eq!((core.eax, core.ebx, core.ecx >> 8, core.edx), (1, 2, 2, 1));
    }

    #[test]
    fn test_topology_core_level_and_pv_hiding() {
        let mut c = CpuId::from_entries(&[
            kvm_cpuid_entry2 {
                function: 0xb,
                index: 1,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: KVM_CPUID_FEATURES,
                eax: 0xffff_ffff,
                ..Default::default()
            },
        ])
        .unwrap();
        patch_for_vcpu(
            &mut c,
            2,
            Topology {
                cpus: 3,
                hypercall_pv_features: false,
            },
        );
        let core = c.as_slice()[0];
        assert_eq!((core.eax, core.ebx, core.ecx >> 8, core.edx), (2, 3, 2, 2));
        assert_eq!(c.as_slice()[1].eax & HYPERCALL_PV_FEATURES, 0);
        assert_ne!(c.as_slice()[1].eax & 1, 0, "kvmclock (MSR-based) stays");
        assert_eq!(bits_for(1), 0);
        assert_eq!(bits_for(2), 1);
        assert_eq!(bits_for(5), 3);
    }
}
