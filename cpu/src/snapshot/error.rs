//! Why a vCPU's state could not be saved or restored.

/// Errors saving or restoring a vCPU's state.
#[derive(Debug, thiserror::Error)]
pub enum VcpuStateError {
    /// A KVM state ioctl failed.
    #[error("vCPU {index}: {op} failed: {source}")]
    Ioctl {
        /// vCPU index.
        index: u64,
        /// The ioctl (`KVM_GET_REGS`, ...).
        op: &'static str,
        /// The ioctl's error.
        source: kvm_ioctls::Error,
    },
    /// KVM_SET_MSRS stopped at an MSR this host refuses.
    #[error("vCPU {index}: KVM_SET_MSRS refused MSR {msr:#x} (value {value:#x}); this host cannot take the saved MSRs")]
    MsrRefused {
        /// vCPU index.
        index: u64,
        /// The refused MSR.
        msr: u32,
        /// The value it was to get.
        value: u64,
    },
    /// The saved XSAVE area does not have the size KVM uses.
    #[error("vCPU {index}: the saved XSAVE area has {found} 32-bit words, KVM_SET_XSAVE takes {expected}")]
    XsaveSize {
        /// vCPU index.
        index: u64,
        /// Words found.
        found: usize,
        /// Words expected.
        expected: usize,
    },
    /// This host's XSAVE state does not fit the 4 KiB KVM_GET_XSAVE area
    /// (AMX tile data needs KVM_GET_XSAVE2, which is not supported).
    #[error("vCPU {index}: this host's XSAVE state is {size} bytes, more than the {max} bytes supported")]
    XsaveTooLarge {
        /// vCPU index.
        index: u64,
        /// KVM_CAP_XSAVE2's size.
        size: usize,
        /// Supported size.
        max: usize,
    },
    /// A list (MSRs, CPUID entries) has more entries than KVM takes.
    #[error("vCPU {index}: {what} has {len} entries, more than KVM takes ({max})")]
    TooManyEntries {
        /// vCPU index.
        index: u64,
        /// Which list.
        what: &'static str,
        /// Its length.
        len: usize,
        /// KVM's limit.
        max: usize,
    },
}
