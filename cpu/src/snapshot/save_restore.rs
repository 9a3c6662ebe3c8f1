//! Reading a vCPU's state out of KVM and setting it on a fresh vCPU, in the
//! order the kernel needs.

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::VcpuFd;

use super::error::VcpuStateError;
use super::msrs::{read_msrs, write_msrs};
use super::state::{FpuState, VcpuState, XsaveArea, XSAVE_WORDS};
use crate::Vcpu;

/// What [`save`] needs besides the vCPU.
#[derive(Debug, Clone, Copy)]
pub struct SaveOptions<'a> {
    /// The vCPU's index.
    pub index: u64,
    /// The MSRs to save ([`super::msrs_to_save`]).
    pub msrs: &'a [u32],
    /// Whether the VM has an in-kernel irqchip (and so a LAPIC to save).
    pub lapic: bool,
    /// The CPUID the vCPU was given ([`crate::Vcpu::cpuid`]); without it,
    /// KVM_GET_CPUID2's, which on some hosts is what the guest sees
    /// rather than what was set.
    pub cpuid: Option<&'a [kvm_cpuid_entry2]>,
}

fn ioctl<T>(
    index: u64,
    op: &'static str,
    r: Result<T, kvm_ioctls::Error>,
) -> Result<T, VcpuStateError> {
    r.map_err(|source| VcpuStateError::Ioctl { index, op, source })
}

/// Whether a KVM_GET_CPUID2 entry is padding: the kernel does not shrink
/// the array to what it filled, and leaf 0 always has EAX > 0.
fn is_padding(e: &kvm_cpuid_entry2) -> bool {
    e.function == 0 && e.index == 0 && e.flags == 0 && e.eax == 0
}

/// Saves the state of the vCPU `fd`, which must not be running and must
/// have completed its pending I/O ([`crate::Vcpu::complete_pending_io`]).
///
/// Order: KVM_GET_MP_STATE first (it lets the LAPIC accept pending INIT
/// and SIPI events, changing the state the later calls see); the LAPIC
/// before the MSRs; KVM_GET_VCPU_EVENTS last, as Firecracker does, so the
/// events reflect what the other calls may have moved.
pub fn save(fd: &VcpuFd, opts: &SaveOptions<'_>) -> Result<VcpuState, VcpuStateError> {
    let index = opts.index;
    let mp_state = ioctl(index, "KVM_GET_MP_STATE", fd.get_mp_state())?;
    let regs = ioctl(index, "KVM_GET_REGS", fd.get_regs())?;
    let sregs = ioctl(index, "KVM_GET_SREGS", fd.get_sregs())?;
    let fpu = FpuState::from(&ioctl(index, "KVM_GET_FPU", fd.get_fpu())?);
    let xsave = XsaveArea::from(&ioctl(index, "KVM_GET_XSAVE", fd.get_xsave())?);
    let xcrs = ioctl(index, "KVM_GET_XCRS", fd.get_xcrs())?;
    let debug_regs = ioctl(index, "KVM_GET_DEBUGREGS", fd.get_debug_regs())?;
    let lapic = if opts.lapic {
        Some(ioctl(index, "KVM_GET_LAPIC", fd.get_lapic())?)
    } else {
        None
    };
    let tsc_khz = fd.get_tsc_khz().ok();
    let cpuid = match opts.cpuid {
        Some(set) => set.to_vec(),
        None => {
            let mut got = ioctl(
                index,
                "KVM_GET_CPUID2",
                fd.get_cpuid2(KVM_MAX_CPUID_ENTRIES),
            )?
            .as_slice()
            .to_vec();
            got.retain(|e| !is_padding(e));
            got
        }
    };
    let (msrs, skipped_msrs) = read_msrs(fd, index, opts.msrs)?;
    let vcpu_events = ioctl(index, "KVM_GET_VCPU_EVENTS", fd.get_vcpu_events())?;
    Ok(VcpuState {
        index,
        regs,
        sregs,
        fpu,
        xsave,
        xcrs,
        debug_regs,
        lapic,
        msrs,
        skipped_msrs,
        cpuid,
        mp_state,
        vcpu_events,
        tsc_khz,
    })
}

/// Sets `state` on the fresh vCPU (created on a VM whose irqchip, if any,
/// already holds its restored state).
///
/// Order: CPUID first (the other calls check against it); SET_REGS before
/// SET_VCPU_EVENTS (it clears pending exceptions); SET_SREGS before
/// SET_LAPIC (SREGS carries the APIC base); the FPU before XSAVE (which
/// supersedes it); SET_LAPIC before SET_MSRS (the TSC deadline MSR needs
/// the LAPIC's timer mode); the MP state and the pending events last, so
/// nothing set afterwards overrides them.
pub fn restore(vcpu: &mut Vcpu, state: &VcpuState) -> Result<(), VcpuStateError> {
    let index = state.index;
    let cpuid = CpuId::from_entries(&state.cpuid).map_err(|_| VcpuStateError::TooManyEntries {
        index,
        what: "the CPUID",
        len: state.cpuid.len(),
        max: KVM_MAX_CPUID_ENTRIES,
    })?;
    let xsave = state.xsave.to_kvm().ok_or(VcpuStateError::XsaveSize {
        index,
        found: state.xsave.0.len(),
        expected: XSAVE_WORDS,
    })?;
    ioctl(index, "KVM_SET_CPUID2", vcpu.set_cpuid2(&cpuid))?;
    let fd = vcpu.fd();
    ioctl(index, "KVM_SET_REGS", fd.set_regs(&state.regs))?;
    ioctl(index, "KVM_SET_SREGS", fd.set_sregs(&state.sregs))?;
    ioctl(index, "KVM_SET_FPU", fd.set_fpu(&(&state.fpu).into()))?;
    // SAFETY: `xsave` is a whole 4 KiB kvm_xsave, which is all the legacy
    // KVM_SET_XSAVE reads on a host whose XSAVE state fits in it (the only
    // hosts `save` produces state on: see `check_xsave_size`).
    ioctl(index, "KVM_SET_XSAVE", unsafe { fd.set_xsave(&xsave) })?;
    ioctl(index, "KVM_SET_XCRS", fd.set_xcrs(&state.xcrs))?;
    ioctl(
        index,
        "KVM_SET_DEBUGREGS",
        fd.set_debug_regs(&state.debug_regs),
    )?;
    if let Some(lapic) = &state.lapic {
        ioctl(index, "KVM_SET_LAPIC", fd.set_lapic(lapic))?;
    }
    write_msrs(fd, index, &state.msrs)?;
    ioctl(index, "KVM_SET_MP_STATE", fd.set_mp_state(state.mp_state))?;
    ioctl(
        index,
        "KVM_SET_VCPU_EVENTS",
        fd.set_vcpu_events(&state.vcpu_events),
    )?;
    Ok(())
}

/// Refuses hosts whose XSAVE state is larger than the 4 KiB area this
/// module saves: `xsave2_size` is KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2)
/// (0 when the capability is absent).
pub fn check_xsave_size(index: u64, xsave2_size: usize) -> Result<(), VcpuStateError> {
    let max = XSAVE_WORDS * 4;
    if xsave2_size > max {
        return Err(VcpuStateError::XsaveTooLarge {
            index,
            size: xsave2_size,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cpuid_padding_is_recognised() {
        assert!(is_padding(&kvm_cpuid_entry2::default()));
        let leaf0 = kvm_cpuid_entry2 {
            eax: 0xd,
            ..Default::default()
        };
        assert!(!is_padding(&leaf0));
        let leaf1 = kvm_cpuid_entry2 {
            function: 1,
            ..Default::default()
        };
        assert!(!is_padding(&leaf1));
    }

    #[test]
    fn test_xsave_size_limit() {
        assert!(check_xsave_size(0, 0).is_ok());
        assert!(check_xsave_size(0, 4096).is_ok());
        let e = check_xsave_size(2, 11008).unwrap_err();
        assert!(e.to_string().contains("11008"), "{e}");
    }
}
