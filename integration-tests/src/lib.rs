//! Helpers for the KVM integration tests: building test guests with the
//! iced-x86 assembler (or with the host's GNU as and ld, [`gnu_guest`]),
//! writing them to temporary files, and running the
//! `vmm-bin` binary with a watchdog, and talking to its API socket
//! ([`api_client`]).
//!
//! Every test that runs a guest needs `/dev/kvm`; [`require_kvm`] fails the
//! test loudly (never skips it) when it is missing. Exit statuses come from
//! `vmm_bin::exit_status`, where `vmm-bin` declares them.

pub mod api_client;
pub mod boot_protocol;
pub mod dump;
pub mod expect;
pub mod gdb_guest;
pub mod gnu_guest;
pub mod guest_asm;
pub mod loop_device;
pub mod netns;
pub mod pattern;
pub mod reboot_guest;
pub mod run;
pub mod temp_file;
mod virtio_guest;

pub use dump::{le_u32, le_u64, Dump};
pub use expect::{assert_no_panic, expect_bad_input, expect_error, run_self_checked, tail};
pub use gdb_guest::{gdb_guest, require_gdb};
pub use guest_asm::assemble;
pub use iced_x86::code_asm;
pub use loop_device::LoopDevice;
pub use netns::NetNs;
pub use run::{
    require_kvm, run_raw, run_vmm, run_vmm_until, run_vmm_wrapped, spawn_vmm, target_dir, vmm_bin,
    vmm_command, workspace_root, Background, Output, RawRun, StreamedRun, PROCESS_WATCHDOG,
};
pub use temp_file::TempFile;
pub use virtio_guest::{virtio_guest, virtio_guest_pvh};
