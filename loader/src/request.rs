//! What the user asks a loader to pass to the kernel besides the image.

#[cfg(feature = "bzimage-payloads")]
use crate::linux::cache::{CachedVmlinux, ImageKey, VmlinuxCache};
use vmm_memory::FirmwareSizes;

/// A file handed to the kernel: an initrd or a Multiboot/PVH module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleImage {
    /// The module's string (Multiboot) or name: by default its file path.
    pub name: String,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// How a bzImage's host-decompressed payload uses the kernel cache
/// (`linux::cache`, with the `bzimage-payloads` feature; without it there
/// is only [`KernelCacheUse::Off`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KernelCacheUse {
    /// No cache: decompress straight into guest memory.
    #[default]
    Off,
    /// Decompress into a new entry under this key, then load from it.
    #[cfg(feature = "bzimage-payloads")]
    Fill {
        /// The cache.
        cache: VmlinuxCache,
        /// The bzImage's key.
        key: ImageKey,
    },
    /// The payload is already decompressed here. The image handed to the
    /// loader may then be just the bzImage's setup part (its first
    /// `(setup_sects + 1) * 512` bytes): the payload is not read. Ignored
    /// with `bzimage_own_entry`, which needs the whole image. The caller
    /// checks that the entry is no larger than decompression would allow
    /// ([`crate::linux::max_vmlinux_len`]).
    #[cfg(feature = "bzimage-payloads")]
    Hit(CachedVmlinux),
}

/// Inputs common to the boot protocols.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadRequest {
    /// Path of the kernel image as given (Multiboot puts it first on the
    /// command line, as GRUB and QEMU do).
    pub kernel_path: String,
    /// `--cmdline`, if given; each protocol applies its own default.
    pub cmdline: Option<String>,
    /// `--initrd`: Linux's initrd, Multiboot's module 0, PVH's first module.
    pub initrd: Option<ModuleImage>,
    /// `--module PATH[,STRING]`: further Multiboot/PVH modules, in order.
    pub modules: Vec<ModuleImage>,
    /// `--bzimage-entry`: run a bzImage's own 64-bit entry (and its
    /// decompressor in the guest) instead of decompressing on the host.
    pub bzimage_own_entry: bool,
    /// The PC platform's firmware the VMM writes after loading (BDA, EBDA,
    /// ACPI and MP tables, and for a real-mode entry the IVT and its
    /// stubs), with the tables' sizes; `None` on a platform without it.
    /// The loader places these with its own structures
    /// ([`crate::BootSpec::plan`]), reserves them in the memory map, and
    /// passes the RSDP's address to protocols with a field for it (Linux
    /// `acpi_rsdp_addr`, PVH `rsdp_paddr`); Multiboot guests scan for it.
    pub firmware: Option<FirmwareSizes>,
    /// Whether a bzImage's payload comes from, or goes into, the kernel
    /// cache (host decompression only).
    pub kernel_cache: KernelCacheUse,
}
