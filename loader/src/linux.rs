//! Linux bzImage and vmlinux (x86 boot protocol). Being written; see issue 3.

use vm_memory::GuestMemoryBackend;
use vmm_memory::MemoryLayout;

use crate::boot_spec::BootSpec;
use crate::request::LoadRequest;

/// Errors loading a Linux kernel.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// Not implemented yet.
    #[error("Linux loading is not implemented yet")]
    Unsupported,
}

/// Loads a Linux kernel.
pub fn load_linux<M: GuestMemoryBackend>(
    _mem: &M,
    _layout: &MemoryLayout,
    _image: &[u8],
    _req: &LoadRequest,
) -> Result<BootSpec, LinuxError> {
    Err(LinuxError::Unsupported)
}
