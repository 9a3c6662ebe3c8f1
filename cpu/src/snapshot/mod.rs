//! A vCPU's whole state, saved from KVM and set back on a fresh vCPU: the
//! part of a VM snapshot that lives in the CPU.
//!
//! - [`VcpuState`]: general and special registers, FPU, XSAVE area, XCRs,
//!   debug registers, local APIC, every MSR in KVM's save/restore list,
//!   the CPUID the vCPU was given, its multiprocessor state, pending
//!   events and TSC frequency. Serialisable (the KVM structures through
//!   kvm-bindings' `serde` feature, as opaque bytes in the kernel's
//!   layout).
//! - [`save`] and [`restore`]: the ioctls in the order KVM needs them
//!   (Firecracker's and QEMU's experience, written down at each function).
//! - [`msrs`]: which MSRs to save, reading them in batches while skipping
//!   the few a host refuses, writing them back with the TSC first.
//! - [`cpuid_check`]: whether this host can give a restored guest the CPU
//!   features its CPUID advertises.
//!
//! The vCPU must not be running: a VMM saves from the vCPU's own thread
//! while it is parked, after [`crate::Vcpu::complete_pending_io`].

pub mod cpuid_check;
mod error;
pub mod msrs;
mod save_restore;
mod state;

pub use cpuid_check::{check_cpuid_compatible, CpuidMismatch, CpuidRegister};
pub use error::VcpuStateError;
pub use msrs::{msrs_to_save, probe_msrs};
pub use save_restore::{check_xsave_size, restore, save, SaveOptions};
pub use state::{FpuState, VcpuState, XsaveArea, XSAVE_WORDS};
