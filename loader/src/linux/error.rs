//! What can go wrong loading a Linux kernel.

use super::payload::PayloadError;
use super::setup_header::version_str;
use crate::elf::ElfError;

/// Errors loading a Linux kernel.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// Neither a bzImage nor an ELF.
    #[error("not a Linux kernel: neither a bzImage (\"HdrS\" at 0x202) nor an ELF vmlinux; it starts with {0}")]
    NotLinux(String),
    /// The image ends before something it must contain.
    #[error("the {len}-byte image is too short for {what} (needs {needed} bytes)")]
    Truncated {
        /// What is cut off.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// The image's size.
        len: usize,
    },
    /// The header's length byte (0x201) is a backwards jump.
    #[error("setup header length byte {0:#04x} at 0x201 is negative: corrupt bzImage header")]
    BadHeaderLength(u8),
    /// Not a bzImage this loader can start.
    #[error("not a loadable bzImage: {0}")]
    NotBzImage(String),
    /// The boot protocol is older than a feature needs.
    #[error("bzImage boot protocol {} is too old: this needs {} or later ({why})", version_str(*.version), version_str(*.required))]
    ProtocolTooOld {
        /// The header's version.
        version: u16,
        /// The version needed.
        required: u16,
        /// What the newer version provides.
        why: &'static str,
    },
    /// xloadflags says this is no 64-bit kernel.
    #[error("bzImage xloadflags {0:#06x} lack XLF_KERNEL_64: not a 64-bit kernel, and only the 64-bit boot protocol is supported")]
    Not64Bit(u16),
    /// payload_offset or payload_length is zero.
    #[error("bzImage has no payload to decompress (payload_offset {offset:#x}, payload_length {length:#x}); start the bzImage through its own entry instead")]
    NoPayload {
        /// payload_offset.
        offset: u32,
        /// payload_length.
        length: u32,
    },
    /// The payload does not lie inside the file.
    #[error("bzImage payload (payload_offset {offset:#x} + payload_length {length:#x} after the protected-mode start at {pm_start:#x}) lies outside the {file_len}-byte file")]
    PayloadOutsideFile {
        /// payload_offset.
        offset: u32,
        /// payload_length.
        length: u32,
        /// Start of the protected-mode code in the file.
        pm_start: usize,
        /// The file's size.
        file_len: usize,
    },
    /// Decompression failed.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The (decompressed) kernel is not an ELF.
    #[error("the {what} is not an ELF vmlinux: it starts with {first}")]
    NotElf {
        /// What was examined.
        what: String,
        /// Its first bytes.
        first: String,
    },
    /// The vmlinux ELF is invalid.
    #[error("vmlinux: {0}")]
    Vmlinux(#[from] ElfError),
    /// The vmlinux is not ELF64 x86-64.
    #[error("vmlinux is ELF{class} for machine {machine}: the 64-bit boot protocol needs an ELF64 x86-64 (EM_X86_64 = 62) kernel")]
    NotX86_64 {
        /// 32 or 64.
        class: u32,
        /// e_machine.
        machine: u16,
    },
    /// linux-loader failed to copy the kernel.
    #[error("loading the kernel into guest memory failed: {0}")]
    KernelLoad(#[source] linux_loader::loader::Error),
    /// Copying the kernel into guest memory failed.
    #[error("writing the kernel into guest memory failed: {0}")]
    KernelWrite(#[source] vm_memory::GuestMemoryError),
    /// The vmlinux entry point is below 1 MiB.
    #[error("vmlinux entry point {0:#x} is below 1 MiB, in the real-mode area: the 64-bit boot protocol starts the protected-mode kernel at 1 MiB or above")]
    EntryBelowHighMemory(u64),
    /// The kernel (with the room it needs to start) is not in RAM below
    /// 4 GiB.
    #[error("the kernel needs [{start:#x}, {end:#x}) (its image, and init_size from its runtime address when the bzImage's own entry runs), which is not all guest RAM below {ram_end:#x}")]
    KernelOutsideRam {
        /// Load address.
        start: u64,
        /// End of the room it needs.
        end: u64,
        /// End of RAM below 4 GiB.
        ram_end: u64,
    },
    /// The command line exceeds the kernel's limit.
    #[error("kernel command line is {len} bytes but this kernel accepts at most {max} (its setup header's cmdline_size, bounded by the VMM's 64 KiB area)")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: u64,
    },
    /// linux-loader rejected the command line.
    #[error("invalid kernel command line: {0}")]
    Cmdline(String),
    /// Writing the command line failed.
    #[error("writing the kernel command line to guest memory failed: {0}")]
    CmdlineWrite(#[source] linux_loader::loader::Error),
    /// The initrd does not fit.
    #[error("initrd of {size} bytes does not fit in guest RAM between the kernel's end {kernel_end:#x} and {top:#x} (the lowest of initrd_addr_max + 1, the end of RAM below 4 GiB and mem=)")]
    InitrdTooLarge {
        /// Its size.
        size: u64,
        /// End of the kernel.
        kernel_end: u64,
        /// The highest end allowed.
        top: u64,
    },
    /// More map entries than the zero page holds.
    #[error("the memory map has {0} entries but the zero page holds at most 128")]
    TooManyE820Entries(usize),
    /// Writing the initrd failed.
    #[error("writing the initrd to guest memory failed: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
    /// `--module` was given: the Linux protocol has only the initrd.
    #[error("the Linux boot protocol takes no modules, but {0} module(s) were given (pass one initrd instead)")]
    ModulesUnsupported(usize),
    /// Reading a vmlinux file (a kernel cache entry) failed.
    #[error("reading the {what} failed: {source}")]
    FileRead {
        /// What was read.
        what: String,
        /// The host's error.
        source: std::io::Error,
    },
    /// Writing boot_params failed.
    #[error("writing the zero page failed: {0}")]
    BootParams(#[source] linux_loader::configurator::Error),
    /// A boot structure has no room around the kernel.
    #[error(transparent)]
    Plan(#[from] vmm_memory::PlanError),
}
