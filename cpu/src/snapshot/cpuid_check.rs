//! Whether this host can run a restored guest: every CPU feature the
//! guest's CPUID advertises must be one the host's KVM supports
//! (KVM_GET_SUPPORTED_CPUID), or the guest would use an instruction the
//! host cannot execute for it.
//!
//! The feature leaves are checked: 1 (ECX, EDX), 7 subleaf 0 (EBX, ECX,
//! EDX) and subleaf 1 (EAX), 0x8000_0001 (ECX, EDX). Bits that describe
//! the guest's own state or topology rather than a host capability are
//! left out: OSXSAVE and OSPKE follow the guest's CR4, APIC follows its
//! APIC base MSR, and HTT is set by the VMM for SMP topologies.

use kvm_bindings::kvm_cpuid_entry2;

/// A CPUID output register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuidRegister {
    /// EAX.
    Eax,
    /// EBX.
    Ebx,
    /// ECX.
    Ecx,
    /// EDX.
    Edx,
}

impl std::fmt::Display for CpuidRegister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CpuidRegister::Eax => "EAX",
            CpuidRegister::Ebx => "EBX",
            CpuidRegister::Ecx => "ECX",
            CpuidRegister::Edx => "EDX",
        })
    }
}

impl CpuidRegister {
    fn of(self, e: &kvm_cpuid_entry2) -> u32 {
        match self {
            CpuidRegister::Eax => e.eax,
            CpuidRegister::Ebx => e.ebx,
            CpuidRegister::Ecx => e.ecx,
            CpuidRegister::Edx => e.edx,
        }
    }
}

/// A feature the guest was given that this host does not support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("CPUID leaf {leaf:#x} subleaf {subleaf} {register} bit {bit}: the snapshot's guest has this feature, this host's KVM does not support it (a different host CPU model)")]
pub struct CpuidMismatch {
    /// The leaf (EAX input).
    pub leaf: u32,
    /// The subleaf (ECX input).
    pub subleaf: u32,
    /// The register.
    pub register: CpuidRegister,
    /// The bit.
    pub bit: u32,
}

/// Leaf, subleaf, register, and the bits of it that are not host features.
const CHECKED: [(u32, u32, CpuidRegister, u32); 8] = [
    // OSXSAVE (27) follows CR4; HTT is topology.
    (0x1, 0, CpuidRegister::Ecx, 1 << 27),
    // APIC (9) follows IA32_APIC_BASE; HTT (28) is topology.
    (0x1, 0, CpuidRegister::Edx, (1 << 9) | (1 << 28)),
    (0x7, 0, CpuidRegister::Ebx, 0),
    // OSPKE (4) follows CR4.
    (0x7, 0, CpuidRegister::Ecx, 1 << 4),
    (0x7, 0, CpuidRegister::Edx, 0),
    (0x7, 1, CpuidRegister::Eax, 0),
    (0x8000_0001, 0, CpuidRegister::Ecx, 0),
    (0x8000_0001, 0, CpuidRegister::Edx, 0),
];

fn find(entries: &[kvm_cpuid_entry2], leaf: u32, subleaf: u32) -> Option<&kvm_cpuid_entry2> {
    entries
        .iter()
        .find(|e| e.function == leaf && e.index == subleaf)
}

/// Checks that `host` (KVM_GET_SUPPORTED_CPUID) has every feature bit that
/// `guest` (a saved vCPU's CPUID) sets in the feature leaves; the first
/// missing one is the error. A leaf the guest does not have is not
/// checked; one the host lacks counts as all zeros.
pub fn check_cpuid_compatible(
    host: &[kvm_cpuid_entry2],
    guest: &[kvm_cpuid_entry2],
) -> Result<(), CpuidMismatch> {
    for (leaf, subleaf, register, not_features) in CHECKED {
        let Some(g) = find(guest, leaf, subleaf) else {
            continue;
        };
        let have = find(host, leaf, subleaf).map_or(0, |h| register.of(h));
        let missing = register.of(g) & !have & !not_features;
        if missing != 0 {
            return Err(CpuidMismatch {
                leaf,
                subleaf,
                register,
                bit: missing.trailing_zeros(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ecx,
            edx,
            ..Default::default()
        }
    }

    #[test]
    fn test_cpuid_subset_is_compatible() {
        let host = [leaf(1, 0, 0xffff_ffff, 0xffff_ffff), leaf(7, 0, 0xff, 0)];
        let guest = [leaf(1, 0, 0x1234, 0x5678), leaf(7, 0, 0x0f, 0)];
        assert_eq!(check_cpuid_compatible(&host, &guest), Ok(()));
        // Leaves the guest lacks are not checked.
        assert_eq!(check_cpuid_compatible(&host, &[]), Ok(()));
    }

    #[test]
    fn test_cpuid_missing_feature_names_leaf_register_and_bit() {
        let host = [leaf(1, 0, 0x0, 0x1), leaf(0x8000_0001, 0, 0, 0)];
        let guest = [leaf(1, 0, 0, 0x1), leaf(0x8000_0001, 0, 0, 1 << 29)];
        let e = check_cpuid_compatible(&host, &guest).unwrap_err();
        assert_eq!(
            e,
            CpuidMismatch {
                leaf: 0x8000_0001,
                subleaf: 0,
                register: CpuidRegister::Edx,
                bit: 29
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("0x80000001") && msg.contains("EDX bit 29"),
            "{msg}"
        );
        // A leaf 7 subleaf the host does not list at all.
        let guest7 = [kvm_cpuid_entry2 {
            function: 7,
            index: 1,
            eax: 1 << 4,
            ..Default::default()
        }];
        let e = check_cpuid_compatible(&host, &guest7).unwrap_err();
        assert_eq!(
            (e.leaf, e.subleaf, e.register, e.bit),
            (7, 1, CpuidRegister::Eax, 4)
        );
    }

    #[test]
    fn test_cpuid_state_bits_are_not_features() {
        let host = [leaf(1, 0, 0, 0), leaf(7, 0, 0, 0)];
        let guest = [
            leaf(1, 0, 1 << 27, (1 << 9) | (1 << 28)),
            leaf(7, 0, 1 << 4, 0),
        ];
        assert_eq!(check_cpuid_compatible(&host, &guest), Ok(()));
    }
}
