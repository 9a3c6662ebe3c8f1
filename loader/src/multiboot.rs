//! Multiboot v1 kernels (specification 0.6.96). Being written; see issue 3.

use vm_memory::GuestMemoryBackend;
use vmm_memory::MemoryLayout;

use crate::boot_spec::BootSpec;
use crate::request::LoadRequest;

/// Errors loading a Multiboot kernel.
#[derive(Debug, thiserror::Error)]
pub enum MultibootError {
    /// Not implemented yet.
    #[error("Multiboot loading is not implemented yet")]
    Unsupported,
}

/// Loads a Multiboot v1 kernel.
pub fn load_multiboot<M: GuestMemoryBackend>(
    _mem: &M,
    _layout: &MemoryLayout,
    _image: &[u8],
    _req: &LoadRequest,
) -> Result<BootSpec, MultibootError> {
    Err(MultibootError::Unsupported)
}
