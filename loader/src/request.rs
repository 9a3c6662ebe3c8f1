//! What the user asks a loader to pass to the kernel besides the image.

/// A file handed to the kernel: an initrd or a Multiboot/PVH module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleImage {
    /// The module's string (Multiboot) or name: by default its file path.
    pub name: String,
    /// Its bytes.
    pub data: Vec<u8>,
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
    /// Where the VMM puts the ACPI RSDP, if the platform has ACPI tables:
    /// protocols with a field for it (Linux `acpi_rsdp_addr`, PVH
    /// `rsdp_paddr`) pass it on; Multiboot guests scan for it.
    pub acpi_rsdp: Option<u64>,
}
