//! The few vCPU operations the fallback needs, as a trait so its logic can
//! be tested on a mock without KVM.

use kvm_bindings::{kvm_msr_entry, kvm_regs, kvm_sregs, Msrs};
use kvm_ioctls::VcpuFd;

use super::Exception;

/// Registers, MSRs and exception injection of one vCPU.
pub trait VcpuAccess {
    /// KVM_GET_REGS.
    fn regs(&self) -> Result<kvm_regs, kvm_ioctls::Error>;
    /// KVM_SET_REGS.
    fn set_regs(&self, regs: &kvm_regs) -> Result<(), kvm_ioctls::Error>;
    /// KVM_GET_SREGS.
    fn sregs(&self) -> Result<kvm_sregs, kvm_ioctls::Error>;
    /// Reads MSRs with one KVM_GET_MSRS: `None` for each MSR KVM did not
    /// return (it stops at the first it refuses).
    fn msrs(&self, indices: &[u32]) -> Result<Vec<Option<u64>>, kvm_ioctls::Error>;
    /// Delivers `exception` on the next entry, as hardware raises it at
    /// the current RIP: KVM_SET_VCPU_EVENTS with the exception injected
    /// (and for #PF, CR2 set through KVM_SET_SREGS first).
    fn inject(&self, exception: Exception) -> Result<(), kvm_ioctls::Error>;
}

impl VcpuAccess for VcpuFd {
    fn regs(&self) -> Result<kvm_regs, kvm_ioctls::Error> {
        self.get_regs()
    }

    fn set_regs(&self, regs: &kvm_regs) -> Result<(), kvm_ioctls::Error> {
        VcpuFd::set_regs(self, regs)
    }

    fn sregs(&self) -> Result<kvm_sregs, kvm_ioctls::Error> {
        self.get_sregs()
    }

    fn msrs(&self, indices: &[u32]) -> Result<Vec<Option<u64>>, kvm_ioctls::Error> {
        let entries: Vec<kvm_msr_entry> = indices
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs =
            Msrs::from_entries(&entries).map_err(|_| kvm_ioctls::Error::new(libc::EINVAL))?;
        let read = self.get_msrs(&mut msrs)?;
        Ok(msrs
            .as_slice()
            .iter()
            .enumerate()
            .map(|(i, e)| (i < read).then_some(e.data))
            .collect())
    }

    fn inject(&self, exception: Exception) -> Result<(), kvm_ioctls::Error> {
        if let Exception::PageFault { address, .. } = exception {
            let mut sregs = self.get_sregs()?;
            sregs.cr2 = address;
            self.set_sregs(&sregs)?;
        }
        let mut events = self.get_vcpu_events()?;
        events.exception.injected = 1;
        events.exception.pending = 0;
        events.exception.nr = exception.vector();
        events.exception.has_error_code = u8::from(exception.error_code().is_some());
        events.exception.error_code = exception.error_code().unwrap_or(0);
        events.exception_has_payload = 0;
        events.exception_payload = 0;
        self.set_vcpu_events(&events)
    }
}
