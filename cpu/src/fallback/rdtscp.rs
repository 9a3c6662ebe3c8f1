//! `rdtscp`: EDX:EAX = the time-stamp counter, ECX = IA32_TSC_AUX[31:0]
//! (Intel SDM, RDTSCP); #GP(0) when CR4.TSD is set and CPL > 0.
//!
//! The counter is the guest's IA32_TSC as KVM_GET_MSRS reads it: KVM
//! computes it from the host TSC with this vCPU's own offset and scaling
//! ratio, exactly what the guest's `rdtsc` returns at that moment.
//! `rdtsc` in the VMM plus an offset would need the offset (KVM_VCPU_TSC_CTRL,
//! absent on some hosts) and would be wrong whenever KVM scales the guest's
//! TSC rate. The read happens after the instruction began, as a real
//! `rdtscp` reads the counter after all earlier instructions, so the value
//! never goes backwards for the guest.

use super::{Action, Ctx, Exception, VcpuAccess, CR4_TSD};

/// IA32_TIME_STAMP_COUNTER.
pub(crate) const MSR_IA32_TSC: u32 = 0x10;
/// IA32_TSC_AUX.
pub(crate) const MSR_IA32_TSC_AUX: u32 = 0xc000_0103;

/// Reads the TSC and TSC_AUX and puts them where `rdtscp` does.
pub(crate) fn rdtscp<C: VcpuAccess + ?Sized>(
    ctx: &Ctx<'_>,
    cpu: &C,
) -> Result<Action, kvm_ioctls::Error> {
    if ctx.sregs.cr4 & CR4_TSD != 0 && ctx.cpl > 0 {
        return Ok(Action::Raise(Exception::GeneralProtection(0)));
    }
    let msrs = cpu.msrs(&[MSR_IA32_TSC, MSR_IA32_TSC_AUX])?;
    let Some(tsc) = msrs.first().copied().flatten() else {
        return Ok(Action::Leave(super::NotHandled::Kvm(
            "KVM_GET_MSRS refused IA32_TSC".into(),
        )));
    };
    // A KVM that cannot return TSC_AUX cannot have let the guest write it
    // either: it holds its reset value, 0.
    let aux = msrs.get(1).copied().flatten().unwrap_or(0);
    let mut regs = ctx.regs_after();
    regs.rax = tsc & 0xffff_ffff;
    regs.rdx = tsc >> 32;
    regs.rcx = aux & 0xffff_ffff;
    Ok(Action::Complete(Box::new(regs)))
}
