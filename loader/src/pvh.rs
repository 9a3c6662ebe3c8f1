//! PVH kernels (Xen PVH boot ABI, hvm_start_info). Being written; see issue 3.

use vm_memory::GuestMemoryBackend;
use vmm_memory::MemoryLayout;

use crate::boot_spec::BootSpec;
use crate::request::LoadRequest;

/// Errors loading a PVH kernel.
#[derive(Debug, thiserror::Error)]
pub enum PvhError {
    /// Not implemented yet.
    #[error("PVH loading is not implemented yet")]
    Unsupported,
}

/// Loads a PVH kernel.
pub fn load_pvh<M: GuestMemoryBackend>(
    _mem: &M,
    _layout: &MemoryLayout,
    _image: &[u8],
    _req: &LoadRequest,
) -> Result<BootSpec, PvhError> {
    Err(PvhError::Unsupported)
}
