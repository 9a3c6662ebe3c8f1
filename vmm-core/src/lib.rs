//! vmm-core composes the workspace's crates into a running VM: guest RAM
//! ([`vmm_memory`]), the image ([`vmm_loader`]), vCPUs and their run loop
//! ([`vmm_cpu`]), and the bus with its devices ([`vmm_devices`]).
//!
//! It owns the [`dispatch::ExitDispatcher`] (the `ExitHandler` every vCPU
//! exit goes through), the per-exit-kind counters, the run limits, and the
//! typed [`VmOutcome`] a run ends with.
//!
//! ```no_run
//! use std::time::Duration;
//! use vmm_core::{VmBuilder, VmOutcome};
//!
//! let report = VmBuilder::new()
//!     .memory_mib(64)
//!     .kernel_path("integration-tests/guests/hello.bin")
//!     .timeout(Duration::from_secs(10))
//!     .build()?
//!     .run()?;
//! println!("{}", report.outcome);
//! # Ok::<(), vmm_core::VmmError>(())
//! ```

mod boot;
pub mod builder;
pub mod config;
pub mod control;
pub mod create;
pub mod dispatch;
pub mod error;
pub mod explain;
pub mod firmware;
pub mod gdb;
pub mod handle;
mod head_start;
pub mod host_input;
pub mod host_requests;
pub mod kvm;
pub mod outcome;
mod pause;
pub mod platform;
pub mod private_socket;
pub mod reboot;
pub mod seccomp;
pub mod seccomp_tree;
pub mod snapshot;
pub mod start;
pub mod startup;
pub mod stats;
mod suspend;
pub mod timeline;
mod timers;
pub mod trace;
mod vcpu_threads;
pub mod virtio;
pub mod vm;

pub use builder::VmBuilder;
pub use config::{HostOptions, KernelImage, VmConfig, DEFAULT_MEMORY_MIB};
pub use error::{ErrorClass, VmmError};
pub use handle::VmHandle;
pub use outcome::VmOutcome;
pub use platform::Platform;
pub use reboot::{run_rebooting, NextBoot, OnReset};
pub use snapshot::{SnapshotError, SnapshotInfo, SnapshotKind, SnapshotRequest};
pub use stats::VmStats;
pub use vm::{MetricsSink, RunReport, Vm};

/// Re-exported so front ends and tests need no direct dependency.
pub use vmm_cpu as cpu;
pub use vmm_devices as devices;
pub use vmm_loader as loader;
pub use vmm_memory as memory;

/// Locks a mutex, recovering the data if a thread panicked while holding
/// it: a device must keep answering the guest, and teardown must finish.
pub(crate) fn lock<T: ?Sized>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
