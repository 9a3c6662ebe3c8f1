//! vCPUs for a KVM virtual machine on x86_64: their initial state and the
//! loop that runs them.
//!
//! - [`start_state`]: what a vCPU needs to start, in this crate's own types:
//!   [`StartState`] ([`CpuMode`], [`Entry`], preset [`Reg`] values). A VMM
//!   converts its loader's result into one; the crate knows no image format.
//! - [`boot_state`], [`gdt`], [`paging`]: the entry state for 16-bit real
//!   mode (CS:IP), 32-bit flat protected mode (flat GDT in guest memory) and
//!   64-bit long mode (GDT plus page tables identity-mapping the first 4 GiB),
//!   computed by pure functions; [`validate_start`] checks a start state
//!   against the ranges the image occupies, [`setup_boot_state`] writes the
//!   structures and loads KVM_SET_SREGS/REGS.
//! - [`cpuid`]: the CPUID each vCPU reports (APIC IDs, topology, hidden
//!   hypercall-based paravirtual features).
//! - [`firmware_state`]: LAPIC virtual wire, FPU and MSRs as a BIOS leaves
//!   them.
//! - [`vcpu`]: [`Vcpu::run`], the KVM_RUN loop. It decodes every exit, splits
//!   string I/O into elements, hands port and MMIO accesses to an
//!   [`ExitHandler`] and returns a typed [`VcpuStop`]. EINTR/EAGAIN are retried.
//! - [`wake_state`]: the state firmware leaves when the platform resumes
//!   from ACPI S3 (the boot processor at the FACS waking vector, the others
//!   waiting for SIPI), [`Vcpu::reset_for_wake`].
//! - [`fallback`]: finishing the instructions the host's KVM emulator
//!   gives up on (KVM_EXIT_INTERNAL_ERROR, emulation failure): a short list
//!   completed or answered with the exception hardware raises, called from
//!   the run loop at that exit.
//! - [`exit_record`]: the `kvm_run` fields of each exit, for handlers that
//!   observe every exit (`--explain`, exit timelines); free when unused.
//! - [`kick`]: stopping a vCPU thread at any moment (signal + `immediate_exit`).
//! - [`metrics`]: lock-free per-vCPU counters and per-exit-kind latency
//!   histograms, readable while the vCPU runs.
//! - `snapshot` (feature `snapshot`): a vCPU's whole state (registers,
//!   FPU/XSAVE, LAPIC, MSRs, CPUID, events), saved and restored in the
//!   order KVM needs, and the CPUID compatibility check a restore makes.
//!
//! The crate depends on vmm-memory (for the guest memory map: where the GDT
//! and page tables go) and rust-vmm crates only: no loader, no device
//! model. Anything implementing [`ExitHandler`] can drive the loop.
//!
//! `examples/real_mode.rs` runs the classic real-mode "hello" guest on a
//! bare kvm-ioctls VM with this crate alone
//! (`cargo run -p vmm-cpu --example real_mode` prints `4`).
//!
//! # Example
//!
//! Computing the long-mode entry state needs no KVM:
//!
//! ```
//! use kvm_bindings::kvm_sregs;
//! use vmm_cpu::boot_state::{flat_mode_sregs, EFER_LMA};
//!
//! let sregs = flat_mode_sregs(kvm_sregs::default(), true, 0x9000);
//! assert_eq!(sregs.cs.selector, 0x10); // Linux's __BOOT_CS
//! assert_ne!(sregs.efer & EFER_LMA, 0);
//! ```
//!
//! Neither does checking a start state against where the image lies:
//!
//! ```
//! use vm_memory::GuestAddress;
//! use vmm_cpu::{validate_start, CpuMode, Entry, Reg, StartState};
//!
//! let start = StartState::new(CpuMode::Long, Entry::Linear(GuestAddress(0x10_0000)))
//!     .with_reg(Reg::Rsi, 0x7000);
//! assert!(validate_start(&start, &[(0x10_0000, 0x20_0000)]).is_ok());
//! // An image over the page tables at 0x9000 is refused.
//! assert!(validate_start(&start, &[(0x8000, 0xa000)]).is_err());
//! ```
//!
//! Running a vCPU with your own handler (needs `/dev/kvm`; the example
//! program does all of it):
//!
//! ```no_run
//! use vm_device::bus::{MmioAddress, PioAddress};
//! use vm_memory::GuestAddress;
//! use vmm_cpu::{setup_boot_state, CpuMode, Entry, ExitHandler, StartState, Vcpu, VcpuStop};
//!
//! struct Console;
//! impl ExitHandler for Console {
//!     fn pio_read(&self, _: PioAddress, data: &mut [u8]) { data.fill(0xff) }
//!     fn pio_write(&self, port: PioAddress, data: &[u8]) {
//!         if port.0 == 0x3f8 { print!("{}", data[0] as char) }
//!     }
//!     fn mmio_read(&self, _: MmioAddress, data: &mut [u8]) { data.fill(0xff) }
//!     fn mmio_write(&self, _: MmioAddress, _: &[u8]) {}
//! }
//!
//! # fn ram() -> vm_memory::GuestMemoryMmap { unimplemented!() }
//! let kvm = kvm_ioctls::Kvm::new().unwrap();
//! let vm = kvm.create_vm().unwrap();
//! // ... map guest memory into `vm` and copy the code to 0x1000 ...
//! let mem = ram();
//! let mut vcpu = Vcpu::new(&vm, 0).unwrap();
//! let start = StartState::new(CpuMode::Real, Entry::Linear(GuestAddress(0x1000)));
//! setup_boot_state(vcpu.fd(), &mem, &start).unwrap();
//! let stop = vcpu.run(&Console).unwrap();
//! assert_eq!(stop, VcpuStop::Halted);
//! ```

pub mod boot_state;
pub mod cpuid;
pub mod exit_handler;
pub mod exit_record;
pub mod fallback;
pub mod firmware_state;
pub mod gdt;
pub mod kick;
pub mod metrics;
pub mod paging;
#[cfg(feature = "snapshot")]
pub mod snapshot;
pub mod start_state;
pub mod vcpu;
pub mod wake_state;

pub use boot_state::{setup_boot_state, validate_start, BootStateError, BootStateLoaded};
pub use exit_handler::{ExitAction, ExitHandler, ExitKind};
pub use exit_record::{ExitFields, ExitRecord};
pub use fallback::{EmulationFallback, FallbackStat, GuestFeatures};
pub use start_state::{CpuMode, Entry, Reg, StartState, UnknownReg};
pub use vcpu::{InternalError, Vcpu, VcpuError, VcpuStats, VcpuStop, PENDING_IO_LIMIT};
pub use wake_state::{WakeEntry, WakeStateError};
