//! Helpers for the KVM integration tests: building test guests with the
//! iced-x86 assembler, writing them to temporary files, and running the
//! `vmm-bin` binary with a watchdog.
//!
//! Every test that runs a guest needs `/dev/kvm`; [`require_kvm`] fails the
//! test loudly (never skips it) when it is missing.

pub mod dump;
pub mod guest_asm;
pub mod run;
pub mod temp_file;

pub use dump::Dump;
pub use guest_asm::assemble;
pub use iced_x86::code_asm;
pub use run::{
    require_kvm, run_raw, run_vmm, run_vmm_until, target_dir, vmm_bin, vmm_command, workspace_root,
    Output, RawRun, StreamedRun, PROCESS_WATCHDOG,
};
pub use temp_file::TempFile;

/// The documented exit statuses (see `vmm-bin --help`).
pub mod status {
    /// Guest halted.
    pub const HALTED: i32 = 0;
    /// Bad usage or input.
    pub const BAD_INPUT: i32 = 2;
    /// Triple fault.
    pub const TRIPLE_FAULT: i32 = 4;
    /// `--max-exits` or `--timeout` reached.
    pub const LIMIT_REACHED: i32 = 6;
    /// KVM unavailable.
    pub const KVM_UNAVAILABLE: i32 = 8;
    /// vCPU fault.
    pub const VCPU_FAULT: i32 = 10;
}
